#!/usr/bin/env python3
"""Training-patch throughput, ours against torchio's Queue, in one run on one machine.

Usage (see bench/README.md):
  python bench/data_compare.py [--pipelines host,queue] [--repeat 2] [--patches 60]
         [--warmup-patches 10] [--workers 2] [--subjects 3] [--out-dir bench/results]
         [--engine-bench PATH] [--python PATH] [--tag TEXT]

Contenders (each a separate process, run in turn A B C A B C ... for --repeat N so that drift of
a shared machine hits all alike):
  cuseg-host    engine_bench data --pipeline host   (fused gather on worker threads)
  cuseg-queue   engine_bench data --pipeline queue  (today's chain: whole-volume RandomAffine,
                                                     LabelSampler, PatchQueue)
  cuseg-device  engine_bench data --pipeline device (CUDA; only where a device answers)
  torchio       bench/peers/data_torchio.py         (SubjectsDataset + RandomAffine + LabelSampler
                                                     + Queue, DataLoader batch 2)
All on the same preprocessed phantom subjects (256 x 256 x 200, written once with
engine_bench data --dump-subjects), patch 96^3, queue 40 / 5, --workers threads or processes.
Per contender we report the median and the best of the per-process patches/s, and the ratio of
each cuseg pipeline's median to torchio's (above 1: we are faster).
Writes <out-dir>/<date>_cpu-<cpu name>_data[_tag].{json,md} with the date, machine, commit,
command, load average before and after, and every raw result.
The Python given by --python needs numpy, torch and torchio (the peer only).
"""
import argparse
import datetime as dt
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def sh(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30, cwd=ROOT).stdout.strip()
    except Exception:  # noqa: BLE001
        return ""


def loadavg():
    try:
        return open("/proc/loadavg").read().split()[:3]
    except OSError:
        return None


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def run_json(cmd, log):
    print("+ " + " ".join(shlex.quote(c) for c in cmd), file=sys.stderr, flush=True)
    la = loadavg()
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    entry = {"command": cmd, "returncode": p.returncode, "stderr_tail": p.stderr[-2000:],
             "load_average_before": la, "load_average_after": loadavg()}
    result = None
    if p.returncode == 0:
        try:
            start = p.stdout.index("{")
            result = json.loads(p.stdout[start:])
        except ValueError:
            entry["stdout_tail"] = p.stdout[-2000:]
    else:
        entry["stdout_tail"] = p.stdout[-2000:]
    entry["result"] = result
    log.append(entry)
    if result is None:
        print(f"  failed (rc {p.returncode}): {p.stderr[-500:]}", file=sys.stderr)
    else:
        print(f"  {result.get('patches_per_s', float('nan')):.2f} patches/s", file=sys.stderr)
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pipelines", default="host,queue", help="cuseg pipelines: host,queue,device")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--patches", type=int, default=60)
    ap.add_argument("--warmup-patches", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--subjects", type=int, default=3)
    ap.add_argument("--out-dir", default=os.path.join(HERE, "results"))
    ap.add_argument("--engine-bench", default=os.environ.get("CUSEG_ENGINE_BENCH", ""))
    ap.add_argument("--python", default=os.environ.get("CUSEG_BENCH_PYTHON", sys.executable),
                    help="Python with numpy, torch and torchio for the peer")
    ap.add_argument("--tag", default="")
    ap.add_argument("--no-peer", action="store_true")
    args = ap.parse_args()

    eb = args.engine_bench
    if not eb:
        for d in ("build", "build-bench", "build-bench-cpu"):
            cand = os.path.join(ROOT, d, "bench", "engine_bench")
            if os.path.exists(cand):
                eb = cand
                break
    if not eb or not os.path.exists(eb):
        sys.exit("data_compare: engine_bench not found (build it or pass --engine-bench)")
    pipelines = [p for p in args.pipelines.split(",") if p]
    common = ["--patches", str(args.patches), "--warmup-patches", str(args.warmup_patches),
              "--workers", str(args.workers), "--subjects", str(args.subjects)]

    now = dt.datetime.now(dt.timezone.utc)
    meta = {
        "date_utc": now.isoformat(timespec="seconds"),
        "command": " ".join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:]),
        "machine": {"cpu": cpu_name(), "logical_cpus": os.cpu_count(), "kernel": platform.release()},
        "git_commit": sh(["git", "rev-parse", "HEAD"]),
        "git_dirty": bool(sh(["git", "status", "--porcelain", "--untracked-files=no"])),
        "load_average_at_start": loadavg(),
        "engine_bench": os.path.relpath(eb, ROOT),
        "python": "$PYTHON (" + sh([args.python, "-c", "import sys; print(sys.version.split()[0])"]) + ")",
        "niceness": os.nice(0),
        "settings": {"subjects": args.subjects, "size": [256, 256, 200], "patch": 96,
                     "queue": "max_length 40, samples_per_volume 5", "workers": args.workers,
                     "batch": 2, "patches_timed": args.patches, "warmup_patches": args.warmup_patches},
    }
    log, runs = [], {}
    with tempfile.TemporaryDirectory(prefix="cuseg-data-") as tmp:
        subj = os.path.join(tmp, "subjects")
        dump = subprocess.run([eb, "data", "--subjects", str(args.subjects), "--dump-subjects", subj],
                              capture_output=True, text=True)
        if dump.returncode != 0:
            sys.exit(f"data_compare: engine_bench --dump-subjects failed: {dump.stderr[-500:]}")
        contenders = [(f"cuseg-{p}", [eb, "data", "--pipeline", p] + common) for p in pipelines]
        if not args.no_peer:
            contenders.append(("torchio", [args.python, os.path.join(HERE, "peers", "data_torchio.py"),
                                           "--subjects", subj, "--patches", str(args.patches),
                                           "--warmup-patches", str(args.warmup_patches),
                                           "--workers", str(args.workers)]))
        for _ in range(args.repeat):
            for name, cmd in contenders:
                runs.setdefault(name, []).append(run_json(cmd, log))
    meta["load_average_at_end"] = loadavg()

    summary, failed = {}, False
    for name, rs in runs.items():
        ok = [r for r in rs if r]
        failed |= len(ok) != len(rs)
        if not ok:
            summary[name] = {"error": "every run failed"}
            continue
        pps = [r["patches_per_s"] for r in ok]
        summary[name] = {"median_patches_per_s": statistics.median(pps), "best_patches_per_s": max(pps),
                         "runs": len(ok), "per_run": pps,
                         "peak_rss_mib": max(r.get("memory", {}).get("process_peak_rss_mib", 0) for r in ok)}
        dd = [r.get("device_data", {}).get("device_bytes") for r in ok if r.get("device_data")]
        if dd:
            summary[name]["device_bytes"] = max(dd)
    peer = summary.get("torchio", {}).get("median_patches_per_s")
    rows = []
    for name, s in summary.items():
        if "error" in s:
            rows.append((name, "failed", "", "", "", ""))
            continue
        ratio = s["median_patches_per_s"] / peer if peer else None
        s["ratio_over_torchio"] = ratio
        rows.append((name, f"{s['median_patches_per_s']:.2f}", f"{s['best_patches_per_s']:.2f}",
                     f"{s['peak_rss_mib']:.0f}", "" if ratio is None else f"{ratio:.1f}",
                     "" if s.get("device_bytes") is None else f"{s['device_bytes'] / 2**20:.0f}"))
    hdr = ("contender", "median patches/s", "best patches/s", "peak RSS MiB (main process)",
           "x torchio (median)", "device MiB")
    widths = [max(len(str(r[i])) for r in rows + [hdr]) for i in range(len(hdr))]
    line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    table = [line(hdr), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in rows]
    print("\n".join(table))

    slug = re.sub(r"[^A-Za-z0-9]+", "-", meta["machine"]["cpu"]).strip("-").lower()[:40]
    stem = f"{now:%Y-%m-%d}_cpu-{slug}_data" + (f"_{args.tag}" if args.tag else "")
    os.makedirs(args.out_dir, exist_ok=True)
    out = {"meta": meta, "summary": summary, "runs": log}
    # Results are committed: no machine paths (repository-relative, temporary folder named).
    text = json.dumps(out, indent=2).replace(ROOT + os.sep, "").replace(args.python, "$PYTHON")
    text = re.sub(r"/tmp[^\"\s]*cuseg-data-[^/\"\s]*", "$TMP", text)
    with open(os.path.join(args.out_dir, stem + ".json"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(args.out_dir, stem + ".md"), "w") as f:
        f.write(f"# Training patches/s: cuseg vs torchio Queue ({meta['machine']['cpu']}, "
                f"{meta['machine']['logical_cpus']} logical CPUs)\n\n")
        f.write(f"- date (UTC): {meta['date_utc']}\n- git commit: {meta['git_commit']}"
                f"{' (dirty tree)' if meta['git_dirty'] else ''}\n- command: `{meta['command']}`\n")
        f.write(f"- load average at start / end: {meta['load_average_at_start']} / "
                f"{meta['load_average_at_end']} (per-run values in the JSON)\n")
        f.write(f"- settings: {json.dumps(meta['settings'])}\n")
        f.write(f"- niceness of every process: {meta['niceness']}; peer Python: {meta['python']}\n")
        f.write(f"- repeats per contender: {args.repeat}, interleaved\n\n")
        f.write("\n".join(table) + "\n")
    print(f"wrote {os.path.join(args.out_dir, stem)}.{{json,md}}", file=sys.stderr)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
