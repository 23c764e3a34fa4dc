#!/usr/bin/env python3
"""End-to-end check of scripts/import_seed_checkpoint.py (not run in CI: needs torch,
lightning, safetensors, nibabel, numpy; exit status 77 = skipped when one is missing).

1. Trains the reference recipe's LightningModule (seed_module.Segmenter: the reference U-Net,
   5,836,099 parameters, as `self.model`) for a few steps with a real `lightning` Trainer on a
   toy phantom (a bright ball = liver with a brighter core = tumour), and lets Lightning write
   its checkpoint (ModelCheckpoint, `epoch=...-step=....ckpt`).
2. Imports it: `import_seed_checkpoint.py CKPT RUN_DIR --config <whole-volume inference>`.
3. Weights: every tensor of RUN_DIR/best.safetensors equals the Lightning module's parameter
   bit for bit, and the reference U-Net loaded from it (strict) gives logits identical
   (torch.equal) to the Lightning module's own.
4. The engine: `engine_infer -m RUN_DIR` on a NIfTI CT (RAS, 48 x 40 x 32, one whole-volume pass)
   writes the mask. PyTorch computes the logits from the same file (min/max rescale to [-1, 1]
   in float32, as cuseg and torchio do). The masks must agree at every voxel whose two largest
   logits differ by more than 1e-4 (float32 summation order differs between the engine and
   PyTorch: ~1e-6 relative on these logits; the CPU golden test of the tiny U-Net bounds it).

    python tests/reference/check_seed_import.py --bin build/apps [--work DIR] [--steps N]
"""
import argparse
import glob
import os
import subprocess
import sys
import tempfile

try:
    import nibabel as nib
    import numpy as np
    import torch
    from safetensors.torch import load_file
    from torch.utils.data import DataLoader, TensorDataset

    HERE = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, HERE)
    from seed_module import Segmenter, pl
    from unet_reference import UNet
except ImportError as e:  # pragma: no cover - depends on the environment
    print(f"check_seed_import: skipped, missing Python package: {e.name}")
    sys.exit(77)

REPO = os.path.dirname(os.path.dirname(HERE))
SHAPE = (48, 40, 32)  # I, J, K: multiples of 8 (three poolings), one whole-volume pass

INFER_CONFIG = f"""# whole-volume inference on an already RAS, already sized CT: no resample / crop,
# min/max rescale to [-1, 1] (the recipe's RescaleIntensity)
preprocess:
  orientation: RAS
  resample_inplane: null
  crop_or_pad: null
  clip: null
  rescale: [-1.0, 1.0]
  percentiles: [0.0, 100.0]
inference:
  patch: [{SHAPE[0]}, {SHAPE[1]}, {SHAPE[2]}]
  overlap: 0
  batch: 1
  mode: average
"""


def phantom(shape, seed):
    """HU-like volume (I, J, K) and labels: soft tissue, a liver ball (1), a tumour core (2)."""
    g = torch.Generator().manual_seed(seed)
    i, j, k = torch.meshgrid(*[torch.arange(n, dtype=torch.float32) for n in shape],
                             indexing="ij")
    c = [n / 2 + (torch.rand(1, generator=g).item() - 0.5) * n / 4 for n in shape]
    r = ((i - c[0]) ** 2 + (j - c[1]) ** 2 + (k - c[2]) ** 2).sqrt()
    label = torch.zeros(shape, dtype=torch.int64)
    label[r < min(shape) * 0.35] = 1
    label[r < min(shape) * 0.12] = 2
    hu = torch.full(shape, -80.0) + 60.0 * label.float() + 25.0 * torch.randn(shape, generator=g)
    return hu, label


def rescale(x):
    """RescaleIntensity((-1, 1)) with percentiles (0, 100), float32 in torchio's order."""
    x = x.astype(np.float32)
    lo, hi = np.float32(x.min()), np.float32(x.max())
    return (x - lo) / (hi - lo) * np.float32(2.0) + np.float32(-1.0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(REPO, "build", "apps"))
    ap.add_argument("--work", default=None)
    ap.add_argument("--steps", type=int, default=12)
    a = ap.parse_args()
    work = a.work or tempfile.mkdtemp(prefix="cuseg_seed_import_")
    os.makedirs(work, exist_ok=True)
    torch.manual_seed(0)
    torch.set_num_threads(2)

    # 1. The recipe's module, trained briefly by Lightning, which writes the checkpoint.
    xs, ys = [], []
    for s in range(4):
        hu, lab = phantom((32, 32, 32), s)
        xs.append(torch.from_numpy(rescale(hu.numpy()))[None])
        ys.append(lab)
    loader = DataLoader(TensorDataset(torch.stack(xs), torch.stack(ys)), batch_size=2)
    module = Segmenter()
    module.optimizer = torch.optim.Adam(module.model.parameters(), lr=1e-3)  # few steps
    trainer = pl.Trainer(max_steps=a.steps, accelerator="cpu", devices=1, logger=False,
                         default_root_dir=work, enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.fit(module, loader)
    ckpts = sorted(glob.glob(os.path.join(work, "checkpoints", "*.ckpt")))
    assert ckpts, f"Lightning wrote no checkpoint under {work}/checkpoints"
    ckpt = ckpts[-1]
    print(f"Lightning {pl.__version__} checkpoint: {ckpt}")

    # 2. Import.
    cfg = os.path.join(work, "infer.yaml")
    with open(cfg, "w") as f:
        f.write(INFER_CONFIG)
    run_dir = os.path.join(work, "run")
    subprocess.run([sys.executable, os.path.join(REPO, "scripts", "import_seed_checkpoint.py"),
                    ckpt, run_dir, "--config", cfg, "--overwrite"], check=True)

    # 3. Weights bit for bit, and identical PyTorch logits.
    module.eval()
    imported = load_file(os.path.join(run_dir, "best.safetensors"))
    own = dict(module.model.state_dict())
    assert set(imported) == set(own), "tensor names differ"
    for k, v in own.items():
        assert torch.equal(imported[k], v), f"{k} differs after import"
    net = UNet()
    net.load_state_dict(imported, strict=True)
    net.eval()

    hu, _ = phantom(SHAPE, 99)
    ct_path = os.path.join(work, "ct.nii.gz")
    affine = np.diag([1.5, 1.5, 2.5, 1.0])  # RAS, 1.5 x 1.5 x 2.5 mm
    nib.save(nib.Nifti1Image(hu.numpy().astype(np.int16), affine), ct_path)
    x = torch.from_numpy(rescale(np.asarray(nib.load(ct_path).dataobj)))[None, None]
    with torch.no_grad():
        logits = net(x)[0]
        assert torch.equal(logits, module(x)[0]), "imported net's logits differ from Lightning's"
    top2 = torch.topk(logits, 2, dim=0).values
    clear = (top2[0] - top2[1]).numpy() > 1e-4
    want = logits.argmax(0).numpy()
    print(f"PyTorch: logits identical after import; labels "
          f"{dict(zip(*np.unique(want, return_counts=True)))}")

    # 4. The engine on the same file.
    mask_path = os.path.join(work, "mask.nii.gz")
    cmd = [os.path.join(a.bin, "engine_infer"), "-m", run_dir, "-i", ct_path, "-o", mask_path,
           "--device", "cpu"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    print(r.stdout + r.stderr)
    if r.returncode != 0:
        return 1
    got = np.asarray(nib.load(mask_path).dataobj)
    bad = int(((got != want) & clear).sum())
    print(f"masks: {int(clear.sum())} voxels with a clear winner compared, {bad} differ; "
          f"{int((~clear).sum())} near-ties (top-2 logit gap <= 1e-4) skipped")
    ok = bad == 0
    print("check_seed_import:", "passed" if ok else "FAILED", f"(work folder {work})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
