#!/usr/bin/env python3
"""torchio peer of `engine_bench data`: the reference recipe's patch pipeline as users run it.

SubjectsDataset(transform=RandomAffine(scales=(0.9, 1.1), degrees=10)) -> Queue(max_length 40,
samples_per_volume 5, LabelSampler(96, {0: 0.2, 1: 0.3, 2: 0.5}), num_workers 2) -> DataLoader
(batch 2, num_workers 0, as torchio's documentation pairs it with a Queue). The subjects are the
ones engine_bench uses, written by `engine_bench data --dump-subjects DIR` (phantoms, already
preprocessed: CropOrPad(256, 256, 200) + RescaleIntensity(-1, 1)), so both sides sample the same
volumes and only the per-visit work (RandomAffine + LabelSampler + Queue) is timed.

Timing: the first --warmup-patches patches are untimed (worker start-up, first fills), then
at least --patches patches; patches/s = timed patches / elapsed. The Queue's epochs (subjects x
samples_per_volume patches each) run back to back, as in a training loop. Needs torch, torchio and numpy
(not part of the product).

  python bench/peers/data_torchio.py --subjects DIR [--patches 40] [--warmup-patches 10]
         [--workers 2] [--patch 96] [--batch 2] [--seed 0] [--json FILE]
"""
import argparse
import json
import os
import resource
import sys
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--subjects", required=True, help="folder written by engine_bench data --dump-subjects")
    ap.add_argument("--patches", type=int, default=40)
    ap.add_argument("--warmup-patches", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--patch", type=int, default=96)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--max-length", type=int, default=40)
    ap.add_argument("--samples-per-volume", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    if args.patches % args.batch or args.warmup_patches % args.batch:
        sys.exit("--patches and --warmup-patches must be multiples of --batch")

    import numpy as np
    import torch
    import torchio as tio

    torch.manual_seed(args.seed)
    meta_path = os.path.join(args.subjects, "subjects.json")
    try:
        with open(meta_path) as f:
            meta = json.load(f)
    except OSError as e:
        sys.exit(f"{meta_path}: {e.strerror} (write it with engine_bench data --dump-subjects DIR)")

    subjects = []
    for s in meta["subjects"]:
        ni, nj, nk = s["size_ijk"]
        # Buffers are i fastest: a C-order (k, j, i) array, transposed to torchio's (i, j, k).
        img = np.fromfile(os.path.join(args.subjects, s["image"]), dtype=np.float32)
        lab = np.fromfile(os.path.join(args.subjects, s["label"]), dtype=np.uint8)
        img = img.reshape(nk, nj, ni).transpose(2, 1, 0)
        lab = lab.reshape(nk, nj, ni).transpose(2, 1, 0)
        # ITK (LPS) index -> world, then to torchio's RAS affine: negate the first two rows.
        d = np.array(s["direction_lps_rowmajor"], dtype=np.float64).reshape(3, 3)
        a = np.eye(4)
        a[:3, :3] = d * np.array(s["spacing"])[None, :]
        a[:3, 3] = s["origin_lps"]
        a[:2, :] *= -1
        subjects.append(tio.Subject(
            image=tio.ScalarImage(tensor=torch.from_numpy(np.ascontiguousarray(img))[None], affine=a),
            label=tio.LabelMap(tensor=torch.from_numpy(np.ascontiguousarray(lab).astype(np.int64))[None],
                               affine=a)))

    transform = tio.RandomAffine(scales=(0.9, 1.1), degrees=10)
    dataset = tio.SubjectsDataset(subjects, transform=transform)
    sampler = tio.LabelSampler(args.patch, label_name="label",
                               label_probabilities={0: 0.2, 1: 0.3, 2: 0.5})
    queue = tio.Queue(dataset, max_length=args.max_length, samples_per_volume=args.samples_per_volume,
                      sampler=sampler, num_workers=args.workers)
    loader = torch.utils.data.DataLoader(queue, batch_size=args.batch, num_workers=0)

    # The Queue's length is one epoch (subjects x samples_per_volume patches): iterate epochs
    # back to back, as a training loop does, and count patches (an epoch's last batch may be
    # smaller).
    def batches():
        while True:
            for b in loader:
                yield b["image"][tio.DATA].shape[0]

    it = batches()
    got = 0
    while got < args.warmup_patches:
        got += next(it)
    times = []
    got = 0
    t_all = time.perf_counter()
    while got < args.patches:
        t0 = time.perf_counter()
        got += next(it)
        times.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - t_all
    times.sort()
    out = {
        "tool": "data_torchio.py",
        "benchmark": "data",
        "impl": "torchio",
        "versions": {"torch": torch.__version__, "torchio": tio.__version__, "numpy": np.__version__,
                     "python": sys.version.split()[0]},
        "config": {"subjects": len(subjects), "workers": args.workers, "patch": args.patch,
                   "batch": args.batch, "patches_timed": args.patches,
                   "warmup_patches": args.warmup_patches,
                   "queue": f"max_length {args.max_length}, samples_per_volume {args.samples_per_volume}",
                   "per_visit": "RandomAffine(scales=(0.9, 1.1), degrees=10) + LabelSampler"
                                "{0:.2,1:.3,2:.5}", "torch_threads": torch.get_num_threads()},
        "patches_delivered": got,
        "patches_per_s": got / elapsed,
        "elapsed_s": elapsed,
        "batch_s": {"min": times[0], "median": times[len(times) // 2], "max": times[-1]},
        # ru_maxrss is KiB on Linux; the queue's workers are separate processes (not included).
        "memory": {"process_peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0},
    }
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
