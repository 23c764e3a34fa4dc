#!/usr/bin/env python3
"""Runs engine_bench and the PyTorch peers in one run on one device and writes a comparison.

Usage (see bench/README.md):
  bench/compare.sh [--device cpu|cuda|auto] [--profile reference|quick|cpu]
                   [--precisions fp32,bf16] [--modes eager,amp,compile,compile-amp]
                   [--benchmarks forward,step,volume] [--repeat N] [--out-dir bench/results]
                   [--engine-bench PATH] [--python PATH] [--tag TEXT]

Contenders: cuseg in each precision (cuseg-fp32, cuseg-bf16: engine_bench --precision) and
PyTorch in each mode (pytorch-eager fp32, pytorch-amp = autocast bf16 + channels-last,
pytorch-compile = torch.compile fp32, pytorch-compile-amp = torch.compile of the amp setup).
For step and forward every row also gets its rate as a fraction of the device's dense bf16
tensor-core peak ("% bf16 peak"): useful convolution FLOPs of the reference U-Net (unet_flops
below: 2 * Cin * Cout * k^3 per output voxel per conv; a training step is forward + backward-data
+ backward-filter, the first conv needing no backward-data) over the median time; the peak comes
from engine_bench's device description. The headline block compares cuseg-bf16 with the AMP and
torch.compile peers against the targets of the bf16 work (train step >= 2.0x AMP eager and
>= 1.3x compile-amp, >= 40 % of bf16 peak, peak memory <= 0.5x AMP, whole 256x256x200 volume
<= 50 ms).

Each benchmark runs as separate processes, ours and each peer in turn (A B C A B C ... for
--repeat N), so drift of a shared machine hits every contender alike. Per process we take the
median of its timed iterations; across repeats we report the median and the minimum of those
medians. Ratios are ours / peer (time: < 1 means we are faster; memory: < 1 means we use less).
Memory: on CUDA the engine pool's peak live bytes vs torch.cuda.max_memory_allocated; on the
CPU the process peak RSS of each (the PyTorch figure includes the interpreter and torch's
libraries, ~0.3-0.5 GiB before any tensor).
Writes <out-dir>/<date>_<device>_<profile>[_<tag>].json (everything, every raw result) and .md.
Exit status: 0 when every run succeeded, 1 when one failed (the others are still reported).
"""
import argparse
import datetime as dt
import json
import os
import re
import shlex
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# What each profile runs. `ours`/`peer` are the argument lists of engine_bench / unet_torch.py.
PROFILES = {
    # The reference recipe on a GPU.
    "reference": {
        "forward": dict(args=["--filters", "32,64,128,256", "--batch", "4", "--patch", "96",
                              "--warmup", "5", "--iters", "20"]),
        "step": dict(args=["--filters", "32,64,128,256", "--batch", "2", "--patch", "96",
                           "--warmup", "5", "--iters", "20"]),
        "volume": dict(args=["--filters", "32,64,128,256", "--size", "256", "256", "200",
                             "--patch", "96", "--overlap", "8", "--batch", "4", "--warmup", "1",
                             "--iters", "3"]),
    },
    # The reference shapes with fewer iterations: the GPU kit's time-boxed run.
    "quick": {
        "forward": dict(args=["--filters", "32,64,128,256", "--batch", "4", "--patch", "96",
                              "--warmup", "3", "--iters", "10"]),
        "step": dict(args=["--filters", "32,64,128,256", "--batch", "2", "--patch", "96",
                           "--warmup", "3", "--iters", "10"]),
        "volume": dict(args=["--filters", "32,64,128,256", "--size", "256", "256", "200",
                             "--patch", "96", "--overlap", "8", "--batch", "4", "--warmup", "1",
                             "--iters", "2"]),
    },
    # Bounded for a small CPU: the reference network's forward on one 96^3 patch, a training
    # step of the demo network (filters 8,16,32,64) at batch 2 on 64^3, and grid inference of
    # a 128x128x64 volume by the demo network (patch 64, overlap 8, batch 2).
    "cpu": {
        "forward": dict(args=["--filters", "32,64,128,256", "--batch", "1", "--patch", "96",
                              "--warmup", "1", "--iters", "3"]),
        "step": dict(args=["--filters", "8,16,32,64", "--batch", "2", "--patch", "64",
                           "--warmup", "2", "--iters", "5"]),
        "volume": dict(args=["--filters", "8,16,32,64", "--size", "128", "128", "64",
                             "--patch", "64", "--overlap", "8", "--batch", "2", "--warmup", "1",
                             "--iters", "2"]),
    },
}
METRIC = {"forward": "forward_s", "step": "step_s", "volume": "volume_s"}


def sh(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30, cwd=ROOT).stdout.strip()
    except Exception:  # noqa: BLE001
        return ""


def run_json(cmd, log):
    """Runs one benchmark process; returns its JSON (None on failure) and records the run."""
    print("+ " + " ".join(shlex.quote(c) for c in cmd), file=sys.stderr, flush=True)
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    entry = {"command": cmd, "returncode": p.returncode, "stderr_tail": p.stderr[-4000:]}
    log.append(entry)
    if p.returncode != 0:
        print(p.stderr[-2000:], file=sys.stderr)
        return None
    try:
        j = json.loads(p.stdout)
    except json.JSONDecodeError:
        entry["stdout_tail"] = p.stdout[-4000:]
        return None
    entry["result"] = j
    return j


def unet_flops(filters, batch, patch, kind, in_channels=1, classes=3):
    """Useful FLOPs of the reference U-Net's convolutions (no padding channels counted)."""
    f = [int(x) for x in str(filters).split(",")]
    L = len(f)
    fwd, first = 0.0, 0.0
    for l in range(L):
        vox = batch * (patch >> l) ** 3
        cin = in_channels if l == 0 else f[l - 1]
        a = 2.0 * cin * f[l] * 27 * vox
        if l == 0:
            first = a
        fwd += a + 2.0 * f[l] * f[l] * 27 * vox
        if l < L - 1:
            fwd += 2.0 * (f[l + 1] + f[l]) * f[l] * 27 * vox + 2.0 * f[l] * f[l] * 27 * vox
    fwd += 2.0 * f[0] * classes * batch * patch ** 3
    if kind == "forward":
        return fwd
    return 3 * fwd - first  # + backward-data (not for the first conv) + backward-filter


def mem_mib(j, device):
    m = j.get("memory", {})
    if device == "cuda":
        return m.get("pool_peak_mib", m.get("peak_allocated_mib"))
    return m.get("process_peak_rss_mib")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--profile", default=None, choices=list(PROFILES), help="default: reference on cuda, cpu on cpu")
    ap.add_argument("--modes", default=None,
                    help="peer modes (default: cuda eager,amp,compile,compile-amp; cpu eager)")
    ap.add_argument("--precisions", default=None,
                    help="cuseg precisions (default: cuda fp32,bf16; cpu fp32)")
    ap.add_argument("--benchmarks", default="forward,step,volume")
    ap.add_argument("--repeat", type=int, default=1, help="processes per contender (A B A B ...)")
    ap.add_argument("--out-dir", default=os.path.join(HERE, "results"))
    ap.add_argument("--engine-bench", default=os.environ.get("CUSEG_ENGINE_BENCH", ""))
    ap.add_argument("--python", default=sys.executable, help="Python with torch for the peers")
    ap.add_argument("--tag", default="")
    ap.add_argument("--no-peers", action="store_true")
    args = ap.parse_args()

    eb = args.engine_bench
    if not eb:
        for d in ("build-bench", "build", "build-bench-cpu"):
            cand = os.path.join(ROOT, d, "bench", "engine_bench")
            if os.path.exists(cand):
                eb = cand
                break
    if not eb or not os.path.exists(eb):
        sys.exit("compare: engine_bench not found (build it or pass --engine-bench)")

    device = args.device
    if device == "auto":
        probe = subprocess.run([args.python, "-c", "import torch; print(torch.cuda.is_available())"],
                               capture_output=True, text=True)
        device = "cuda" if probe.stdout.strip() == "True" else "cpu"
    profile = args.profile or ("reference" if device == "cuda" else "cpu")
    modes = (args.modes or ("eager,amp,compile,compile-amp" if device == "cuda" else "eager")).split(",")
    precisions = (args.precisions or ("fp32,bf16" if device == "cuda" else "fp32")).split(",")
    benches = [b for b in args.benchmarks.split(",") if b]
    peer = os.path.join(HERE, "peers", "unet_torch.py")

    now = dt.datetime.now(dt.timezone.utc)
    meta = {
        "date_utc": now.isoformat(timespec="seconds"),
        "command": " ".join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:]),
        "device": device, "profile": profile, "peer_modes": modes, "precisions": precisions,
        "repeat": args.repeat,
        "git_commit": sh(["git", "rev-parse", "HEAD"]),
        "git_dirty": bool(sh(["git", "status", "--porcelain", "--untracked-files=no"])),
        "host_load_average_at_start": open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else None,
        "engine_bench": os.path.relpath(eb, ROOT),
        "python": args.python,
    }
    if device == "cuda":
        meta["nvidia_smi"] = sh(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem",
                                 "--format=csv,noheader"])

    # Results are written after every benchmark process (partial=True), so a run cut by a time
    # limit (the GPU kit's stage) still leaves what finished; the final write replaces them.
    def report(partial):
        # ------------------------------------------------------------------ table
        peak_bf16 = None
        for e in log:
            r = e.get("result") or {}
            if r.get("impl") == "cuseg" and r.get("device", {}).get("peak_bf16_flop_per_s"):
                peak_bf16 = r["device"]["peak_bf16_flop_per_s"]
                break
        rows, summary, failed = [], {}, False
        for b in benches:
            summary[b] = {}
            for name, runs in results.get(b, {}).items():
                ok = [r for r in runs if r]
                failed |= len(ok) != len(runs)
                if not ok:
                    summary[b][name] = {"error": "every run failed"}
                    continue
                med = [r[METRIC[b]]["median"] for r in ok]
                mem = [mem_mib(r, device) for r in ok]
                s = {"median_s": statistics.median(med), "min_s": min(r[METRIC[b]]["min"] for r in ok),
                     "peak_mib": max(m for m in mem if m is not None) if any(m is not None for m in mem) else None,
                     "runs": len(ok)}
                cfg = ok[0].get("config", {})
                if b in ("step", "forward") and peak_bf16 and "batch" in cfg:
                    fl = unet_flops(cfg.get("filters", "32,64,128,256"), cfg["batch"], cfg["patch"], b)
                    s["flops"] = fl
                    s["pct_bf16_peak"] = 100.0 * fl / s["median_s"] / peak_bf16
                if b == "volume":
                    w = [r.get("whole_volume", {}).get("volume_s", {}).get("median") for r in ok]
                    w = [x for x in w if x is not None]
                    s["whole_volume_median_s"] = statistics.median(w) if w else None
                if device == "cpu" and name.startswith("cuseg"):
                    s["pool_peak_mib"] = max(r["memory"].get("pool_peak_mib", 0) for r in ok)
                summary[b][name] = s
            ours_names = [n for n in summary[b] if n.startswith("cuseg") and "error" not in summary[b][n]]
            for name, s in summary[b].items():
                if "error" in s:
                    rows.append((b, name, "failed", "", "", "", "", ""))
                    continue
                ratios = []
                for on in ours_names:
                    o = summary[b][on]
                    rt = o["median_s"] / s["median_s"]
                    rm = (o["peak_mib"] / s["peak_mib"]) if o.get("peak_mib") and s.get("peak_mib") else None
                    s.setdefault("ratio_time_ours_over_peer", {})[on] = rt
                    s.setdefault("ratio_mem_ours_over_peer", {})[on] = rm
                    if not name.startswith("cuseg"):
                        ratios.append(f"{on[6:]} {rt:.2f}" + ("" if rm is None else f" / {rm:.2f}"))
                rows.append((b, name, f"{s['median_s'] * 1e3:.1f}", f"{s['min_s'] * 1e3:.1f}",
                             "" if s.get("peak_mib") is None else f"{s['peak_mib']:.0f}",
                             "" if s.get("pct_bf16_peak") is None else f"{s['pct_bf16_peak']:.1f}",
                             "; ".join(ratios),
                             "" if s.get("whole_volume_median_s") is None else f"{s['whole_volume_median_s'] * 1e3:.0f}"))

        # Headline: cuseg-bf16 against the AMP and torch.compile peers, with the targets.
        headline = []
        def get(b, name, key):
            return summary.get(b, {}).get(name, {}).get(key)
        ob = "cuseg-bf16"
        if get("step", ob, "median_s"):
            for peer, target in (("pytorch-amp", 2.0), ("pytorch-compile-amp", 1.3), ("pytorch-compile", 1.3)):
                t = get("step", peer, "median_s")
                if t:
                    headline.append(f"train step: {t / get('step', ob, 'median_s'):.2f}x faster than {peer} "
                                    f"(target >= {target}x)")
            if get("step", ob, "pct_bf16_peak") is not None:
                headline.append(f"train step: {get('step', ob, 'pct_bf16_peak'):.1f} % of the bf16 peak "
                                f"({peak_bf16 / 1e12:.0f} TFLOP/s; target >= 40 %)")
            m_ours, m_amp = get("step", ob, "peak_mib"), get("step", "pytorch-amp", "peak_mib")
            if m_ours and m_amp:
                headline.append(f"train step peak memory: {m_ours / m_amp:.2f}x pytorch-amp (target <= 0.5x)")
        if get("volume", ob, "median_s"):
            headline.append(f"volume (grid, patch batches): {get('volume', ob, 'median_s') * 1e3:.0f} ms; whole "
                            f"volume in one pass: "
                            + ("n/a" if get("volume", ob, "whole_volume_median_s") is None
                               else f"{get('volume', ob, 'whole_volume_median_s') * 1e3:.0f} ms")
                            + " (target <= 50 ms)")
        if not partial:
            for h in headline:
                print("headline: " + h)

        mem_label = "peak MiB (pool / max_allocated)" if device == "cuda" else "peak RSS MiB"
        hdr = ("benchmark", "impl", "median ms", "min ms", mem_label, "% bf16 peak",
               "ours/peer: time / mem", "whole-vol ms")
        widths = [max(len(str(r[i])) for r in rows + [hdr]) for i in range(len(hdr))]
        line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
        table = [line(hdr), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in rows]
        if not partial:
            print("\n".join(table))

        devname = device
        first = next((e["result"] for e in log if e.get("result")), None)
        if first:
            devname = first["device"].get("name", device)
            meta["device_info_ours"] = next((e["result"]["device"] for e in log
                                              if (e.get("result") or {}).get("impl") == "cuseg"), None)
            meta["device_info_torch"] = next((e["result"]["device"] for e in log
                                               if (e.get("result") or {}).get("impl", "").startswith("pytorch")), None)
        slug = re.sub(r"[^A-Za-z0-9]+", "-", devname).strip("-").lower()[:40]
        stem = f"{now:%Y-%m-%d}_{device}-{slug}_{profile}" + (f"_{args.tag}" if args.tag else "")
        os.makedirs(args.out_dir, exist_ok=True)
        out = {"meta": dict(meta, partial=partial), "profile_args": {b: PROFILES[profile][b]["args"] for b in benches},
               "summary": summary, "headline": headline, "peak_bf16_flops": peak_bf16, "runs": log}
        # Results are committed: record paths relative to the repository, not the machine's.
        out = json.loads(json.dumps(out).replace(ROOT + os.sep, ""))
        m_out = out["meta"]
        with open(os.path.join(args.out_dir, stem + ".json"), "w") as f:
            json.dump(out, f, indent=2)
        with open(os.path.join(args.out_dir, stem + ".md"), "w") as f:
            f.write(f"# cuseg vs PyTorch: {device} ({devname}), profile {profile}\n\n")
            if partial:
                f.write("**Partial: written after each benchmark process; the run did not finish "
                        "(cut by a time limit?). Only the rows below ran.**\n\n")
            f.write(f"- date (UTC): {m_out['date_utc']}\n- git commit: {m_out['git_commit']}"
                    f"{' (dirty tree)' if m_out['git_dirty'] else ''}\n- command: `{m_out['command']}`\n")
            for k in ("device_info_ours", "device_info_torch"):
                if m_out.get(k):
                    f.write(f"- {k}: `{json.dumps(m_out[k])}`\n")
            if m_out.get("nvidia_smi"):
                f.write(f"- nvidia-smi: {m_out['nvidia_smi']}\n")
            f.write(f"- load average at start: {m_out['host_load_average_at_start']}\n")
            f.write(f"- repeats per contender: {args.repeat} (median / min over per-process medians)\n\n")
            for b in benches:
                f.write(f"- {b}: `{' '.join(PROFILES[profile][b]['args'])}`\n")
            f.write("\nRatios are ours / peer (time / peak memory) for each cuseg precision: below 1 means "
                    "cuseg is faster or uses less memory. % bf16 peak: useful convolution FLOPs / median "
                    "time / the dense bf16 tensor-core peak.\n\n")
            f.write("\n".join(table) + "\n")
            if headline:
                f.write("\n" + "\n".join("- " + h for h in headline) + "\n")
        if not partial:
            print(f"wrote {os.path.join(args.out_dir, stem)}.{{json,md}}", file=sys.stderr)
        return failed

    log, results = [], {}
    for b in benches:
        spec = PROFILES[profile][b]
        contenders = [(f"cuseg-{p}", [eb, b, "--device", device, "--precision", p] + spec["args"])
                      for p in precisions]
        if not args.no_peers:
            for m in modes:
                contenders.append((f"pytorch-{m}", [args.python, peer, b, "--device", device, "--mode", m]
                                   + spec["args"] + (["--whole", "auto"] if b == "volume" else [])))
        for _ in range(args.repeat):
            for name, cmd in contenders:
                j = run_json(cmd, log)
                results.setdefault(b, {}).setdefault(name, []).append(j)
                report(partial=True)

    return 1 if report(partial=False) else 0


if __name__ == "__main__":
    sys.exit(main())
