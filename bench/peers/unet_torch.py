#!/usr/bin/env python3
"""PyTorch peers of engine_bench (not part of the product; see bench/README.md).

The same 3-D U-Net as the reference recipe (tests/reference/make_golden.py holds the same
module), timed with the same rules as engine_bench:
  step     one training step: forward, CrossEntropyLoss(weight=(1,1,3)), backward, Adam(lr 1e-4)
  forward  forward pass of one batch of patches (torch.no_grad: what a user runs to infer)
  volume   torchio-style grid inference of a synthetic volume: GridSampler(patch, overlap)
           -> batches -> forward -> GridAggregator -> argmax; plus the whole volume in one
           pass when it fits. torchio itself when importable, else `tio_grid` below, a
           re-implementation of its GridSampler/GridAggregator semantics (docs/ARCHITECTURE.md).

Modes: eager (fp32), amp (autocast bf16 + channels_last_3d + cudnn.benchmark), compile
(torch.compile of the eager fp32 model, default mode), compile-amp (torch.compile of the amp
setup: autocast bf16 + channels_last_3d + cudnn.benchmark; what a performance-minded PyTorch user
runs, and the peer of cuseg's bf16 path). Timing: `--warmup` untimed iterations
(compilation and cuDNN autotuning happen there), then `--iters` timed ones; on CUDA each is
timed with torch.cuda.Event pairs and ends with a synchronisation, on CPU with
time.perf_counter. Peak memory: torch.cuda.max_memory_allocated after
reset_peak_memory_stats at the end of warm-up (CUDA), process peak RSS (CPU; includes the
Python interpreter and the torch libraries). Inputs are seeded random tensors.
"""
import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


# ----------------------------------------------------------------------------- model
# The reference module, shared with the golden-reference generator.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests",
                                "reference"))
from unet_reference import DoubleConv, UNet  # noqa: E402,F401


# ----------------------------------------------------------------------------- helpers
def summarize(v):
    return {"min": min(v), "median": statistics.median(v), "mean": statistics.fmean(v),
            "max": max(v)} if v else {}


def device_info(dev):
    info = {"device": dev.type, "torch": torch.__version__,
            "python": platform.python_version()}
    if dev.type == "cuda":
        p = torch.cuda.get_device_properties(dev)
        info.update(name=p.name, total_memory_bytes=p.total_memory,
                    cuda_runtime=torch.version.cuda,
                    cudnn_runtime=str(torch.backends.cudnn.version()))
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=20)
            info["driver"] = out.stdout.strip().splitlines()[0] if out.returncode == 0 else ""
        except Exception:  # noqa: BLE001 - nvidia-smi missing is fine
            info["driver"] = ""
    else:
        name = platform.processor()
        try:
            with open("/proc/cpuinfo") as f:
                for line in f:
                    if line.startswith("model name"):
                        name = line.split(":", 1)[1].strip()
                        break
        except OSError:
            pass
        info.update(name=name, threads=torch.get_num_threads())
    return info


class Timer:
    """Times one region: CUDA events on a GPU, perf_counter on the CPU; ends synchronised."""

    def __init__(self, dev):
        self.cuda = dev.type == "cuda"

    def __enter__(self):
        if self.cuda:
            self.e0 = torch.cuda.Event(enable_timing=True)
            self.e1 = torch.cuda.Event(enable_timing=True)
            self.e0.record()
        else:
            self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.cuda:
            self.e1.record()
            self.e1.synchronize()
            self.seconds = self.e0.elapsed_time(self.e1) / 1e3
        else:
            self.seconds = time.perf_counter() - self.t0


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def reset_peak(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)


def memory(dev):
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    m = {"process_peak_rss_bytes": rss, "process_peak_rss_mib": rss / 2**20}
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated(dev)
        m.update(peak_allocated_bytes=peak, peak_allocated_mib=peak / 2**20,
                 peak_reserved_mib=torch.cuda.max_memory_reserved(dev) / 2**20)
    return m


def is_amp(args):
    return args.mode in ("amp", "compile-amp")


def build(args, dev):
    torch.manual_seed(args.seed)
    filters = tuple(int(f) for f in args.filters.split(","))
    model = UNet(filters).to(dev)
    nparams = sum(p.numel() for p in model.parameters())
    if is_amp(args):
        torch.backends.cudnn.benchmark = True
        model = model.to(memory_format=torch.channels_last_3d)
    run = torch.compile(model) if args.mode in ("compile", "compile-amp") else model
    return model, run, nparams


def autocast(args, dev):
    if is_amp(args):
        return torch.autocast(device_type=dev.type, dtype=torch.bfloat16)
    return torch.autocast(device_type=dev.type, enabled=False)


def to_input(args, x):
    return x.contiguous(memory_format=torch.channels_last_3d) if is_amp(args) else x


def header(args, dev, what):
    return {"tool": "peers/unet_torch.py", "benchmark": what,
            "impl": f"pytorch-{args.mode}", "device": device_info(dev),
            "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
            "timing_rule": "warmup untimed, then iters timed; CUDA events / perf_counter; ends synchronised"}


def emit(args, j):
    s = json.dumps(j, indent=2)
    print(s)
    if args.json:
        with open(args.json, "w") as f:
            f.write(s + "\n")


# ----------------------------------------------------------------------------- step
def run_step(args, dev):
    model, run, nparams = build(args, dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    loss_fn = nn.CrossEntropyLoss(weight=torch.tensor([1.0, 1.0, 3.0], device=dev))
    g = torch.Generator().manual_seed(args.seed + 1)
    P = args.patch
    x = to_input(args, (torch.rand(args.batch, 1, P, P, P, generator=g) * 2 - 1).to(dev))
    y = torch.randint(0, 3, (args.batch, P, P, P), generator=g).to(dev)

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast(args, dev):
            loss = loss_fn(run(x), y)
        loss.backward()
        opt.step()
        return loss

    first = None
    for i in range(args.warmup):
        with Timer(dev) as t:
            step()
        if i == 0:
            first = t.seconds  # includes compilation / autotuning
    reset_peak(dev)
    times, losses = [], []
    for _ in range(args.iters):
        with Timer(dev) as t:
            loss = step()
        times.append(t.seconds)
        losses.append(loss.item())
    s = summarize(times)
    j = header(args, dev, "step")
    j["config"] = {"batch": args.batch, "patch": P, "filters": args.filters, "classes": 3,
                   "params": nparams, "class_weights": [1, 1, 3], "optimizer": "Adam lr 1e-4",
                   "warmup": args.warmup, "iters": args.iters,
                   "precision": "bf16 autocast" if is_amp(args) else "fp32",
                   "tf32": torch.backends.cuda.matmul.allow_tf32 if dev.type == "cuda" else None,
                   "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32}
    j.update(step_s=s, times_s=times, steps_per_s=1 / s["median"],
             patches_per_s=args.batch / s["median"], first_warmup_step_s=first,
             loss_first=losses[0], loss_last=losses[-1], memory=memory(dev))
    emit(args, j)


# ----------------------------------------------------------------------------- forward
def run_forward(args, dev):
    model, run, nparams = build(args, dev)
    model.eval()
    g = torch.Generator().manual_seed(args.seed + 1)
    P = args.patch
    x = to_input(args, (torch.rand(args.batch, 1, P, P, P, generator=g) * 2 - 1).to(dev))
    times = []
    with torch.no_grad():
        for i in range(args.warmup + args.iters):
            if i == args.warmup:
                reset_peak(dev)
            with Timer(dev) as t, autocast(args, dev):
                run(x)
            if i >= args.warmup:
                times.append(t.seconds)
    s = summarize(times)
    j = header(args, dev, "forward")
    j["config"] = {"batch": args.batch, "patch": P, "filters": args.filters, "params": nparams,
                   "warmup": args.warmup, "iters": args.iters, "grad": "torch.no_grad",
                   "precision": "bf16 autocast" if is_amp(args) else "fp32"}
    j.update(forward_s=s, times_s=times, patches_per_s=args.batch / s["median"], memory=memory(dev))
    emit(args, j)


# ----------------------------------------------------------------------------- grid inference
def grid_starts(size, patch, overlap):
    """torchio GridSampler per axis: range(0, size - patch + 1, patch - overlap) + [size - patch]."""
    s = list(range(0, size - patch + 1, patch - overlap))
    if s[-1] != size - patch:
        s.append(size - patch)
    return s


def grid_locations(size, patch, overlap):
    si, sj, sk = (grid_starts(size[a], patch, overlap) for a in range(3))
    return [(i, j, k) for i in si for j in sj for k in sk]  # np.unique order: i slowest


def hann_window(n):
    return torch.hann_window(n + 2, periodic=False)[1:-1]


class TioGridAggregator:
    """torchio GridAggregator semantics (crop, average, hann) on CPU tensors (C, I, J, K)."""

    def __init__(self, size, channels, patch, overlap, mode):
        self.patch, self.overlap, self.mode, self.size = patch, overlap, mode, size
        self.out = torch.zeros(channels, *size)
        self.weight = torch.zeros(*size) if mode != "crop" else None
        if mode == "hann":
            w = hann_window(patch)
            self.hann = w[:, None, None] * w[None, :, None] * w[None, None, :]

    def add_batch(self, batch, locations):
        batch = batch.cpu().float()  # torchio moves outputs to the CPU
        p, o = self.patch, self.overlap
        for b, (i, j, k) in enumerate(locations):
            t = batch[b]
            if self.mode == "crop":
                ini = [0 if s == 0 else o // 2 for s in (i, j, k)]
                fin = [0 if s + p == n else o // 2 for s, n in zip((i, j, k), self.size)]
                self.out[:, i + ini[0]:i + p - fin[0], j + ini[1]:j + p - fin[1],
                         k + ini[2]:k + p - fin[2]] = \
                    t[:, ini[0]:p - fin[0], ini[1]:p - fin[1], ini[2]:p - fin[2]]
            elif self.mode == "average":
                self.out[:, i:i + p, j:j + p, k:k + p] += t
                self.weight[i:i + p, j:j + p, k:k + p] += 1
            else:
                self.out[:, i:i + p, j:j + p, k:k + p] += t * self.hann
                self.weight[i:i + p, j:j + p, k:k + p] += self.hann

    def get_output_tensor(self):
        if self.mode == "crop":
            return self.out
        return self.out / self.weight.clamp_min(1e-12)


def run_volume(args, dev):
    model, run, nparams = build(args, dev)
    model.eval()
    I, J, K = args.size
    P, O = args.patch, args.overlap
    g = torch.Generator().manual_seed(args.seed + 3)
    image = torch.rand(1, I, J, K, generator=g) * 2 - 1  # torchio layout (C, I, J, K), on CPU
    try:
        import torchio as tio  # noqa: F401
        have_tio = not args.no_torchio
    except ImportError:
        have_tio = False
    locs = grid_locations((I, J, K), P, O)

    def one_volume(acc):
        def lap(name, t0):
            sync(dev)
            acc[name] = acc.get(name, 0.0) + time.perf_counter() - t0
            return time.perf_counter()

        t = time.perf_counter()
        if have_tio:
            subject = tio.Subject(ct=tio.ScalarImage(tensor=image))
            sampler = tio.inference.GridSampler(subject, P, O)
            loader = torch.utils.data.DataLoader(sampler, batch_size=args.batch)
            agg = tio.inference.GridAggregator(sampler, overlap_mode=args.agg_mode)
            batches = ((b["ct"][tio.DATA], b[tio.LOCATION]) for b in loader)
        else:
            agg = TioGridAggregator((I, J, K), 3, P, O, args.agg_mode)
            batches = ((torch.stack([image[:, i:i + P, j:j + P, k:k + P]
                                     for (i, j, k) in locs[b0:b0 + args.batch]]),
                        locs[b0:b0 + args.batch]) for b0 in range(0, len(locs), args.batch))
        it = iter(batches)
        while True:
            try:
                xb, loc = next(it)
            except StopIteration:
                break
            t = lap("sample", t)
            xb = to_input(args, xb.to(dev, non_blocking=False))
            t = lap("upload", t)
            with torch.no_grad(), autocast(args, dev):
                out = run(xb)
            t = lap("forward", t)
            agg.add_batch(out.float(), loc)
            t = lap("aggregate", t)
        mask = agg.get_output_tensor().argmax(dim=0)
        t = lap("argmax", t)
        return mask

    for _ in range(args.warmup):
        one_volume({})
    reset_peak(dev)
    totals, stages = [], {}
    for _ in range(args.iters):
        acc = {}
        t0 = time.perf_counter()
        one_volume(acc)
        totals.append(time.perf_counter() - t0)
        for k, v in acc.items():
            stages.setdefault(k, []).append(v)
    j = header(args, dev, "volume")
    j["config"] = {"size_ijk": [I, J, K], "patch": P, "overlap": O, "batch": args.batch,
                   "mode": args.agg_mode, "patches": len(locs), "filters": args.filters,
                   "params": nparams, "warmup": args.warmup, "iters": args.iters,
                   "grid": "torchio" if have_tio else "torchio semantics re-implemented (tio_grid)",
                   "data_path": "volume on the CPU; patches cropped on the CPU, uploaded per batch; "
                                "outputs downloaded and aggregated on the CPU (as torchio)",
                   "precision": "bf16 autocast" if is_amp(args) else "fp32"}
    j["volume_s"] = summarize(totals)
    j["times_s"] = totals
    j["stage_median_s"] = {k: statistics.median(v) for k, v in stages.items()}
    j["memory"] = memory(dev)

    # Whole volume in one pass (1, 1, I, J, K), when it fits.
    wj = {}
    if args.whole == "off" or (args.whole == "auto" and dev.type == "cpu"):
        wj["skipped"] = "--whole off" if args.whole == "off" else "CPU: off unless --whole on"
    else:
        try:
            x = to_input(args, image[None].to(dev))
            wt = []
            for i in range(1 + args.iters):
                if i == 1:
                    reset_peak(dev)
                with Timer(dev) as t, torch.no_grad(), autocast(args, dev):
                    run(x).argmax(dim=1).cpu()
                if i >= 1:
                    wt.append(t.seconds)
            wj.update(volume_s=summarize(wt), times_s=wt, memory=memory(dev))
        except torch.cuda.OutOfMemoryError as e:  # the budget is the device's memory
            wj["skipped"] = "out of memory: " + str(e).splitlines()[0]
            torch.cuda.empty_cache()
    j["whole_volume"] = wj
    emit(args, j)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("benchmark", choices=["step", "forward", "volume"])
    ap.add_argument("--device", default="auto", help="auto | cuda | cpu")
    ap.add_argument("--mode", default="eager", choices=["eager", "amp", "compile", "compile-amp"])
    ap.add_argument("--filters", default="32,64,128,256")
    ap.add_argument("--batch", type=int, default=None, help="step 2, forward 1, volume 4")
    ap.add_argument("--patch", type=int, default=96)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: default)")
    ap.add_argument("--size", type=int, nargs=3, default=[256, 256, 200], help="volume i j k")
    ap.add_argument("--overlap", type=int, default=8)
    ap.add_argument("--agg-mode", default="crop", choices=["crop", "average", "hann"])
    ap.add_argument("--whole", default="auto", choices=["auto", "on", "off"])
    ap.add_argument("--no-torchio", action="store_true", help="use the re-implementation")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    if args.batch is None:
        args.batch = {"step": 2, "forward": 1, "volume": 4}[args.benchmark]
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    name = args.device
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(name)
    {"step": run_step, "forward": run_forward, "volume": run_volume}[args.benchmark](args, dev)


if __name__ == "__main__":
    main()
