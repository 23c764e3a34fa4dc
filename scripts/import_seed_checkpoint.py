#!/usr/bin/env python3
"""Import a model trained with the reference recipe (PyTorch Lightning + torchio) into a cuseg
run folder that `engine_infer -m RUN_DIR` runs.

    python scripts/import_seed_checkpoint.py CKPT RUN_DIR [--config FILE] [--trust-pickle]

CKPT is a PyTorch Lightning checkpoint (`epoch=..-step=...ckpt`, written by
`Trainer.save_checkpoint` / `ModelCheckpoint`): a torch.save'd dict whose "state_dict" holds the
LightningModule's parameters. The recipe's module keeps its U-Net in an attribute (`self.model`),
so the names are "model.layer1.step.0.weight", ...; the prefix is found, not assumed (a plain
state_dict of the U-Net itself is accepted too). The network's widths, input channels and
classes are read from the weights' shapes and checked against the reference network
(tests/reference/unet_reference.py, which must accept the state_dict with strict=True).

RUN_DIR receives
  best.safetensors  the weights under the same names (prefix removed), float32, exactly the
                    checkpoint's values, with the metadata engine_infer needs: "cuseg.config"
                    (the run config) and "cuseg.kernel_axes". cuseg checkpoints store conv
                    kernels in PyTorch's own axis order (engine/checkpoint.h), so no tensor is
                    transposed: the import is a copy.
  config.yaml       the same run config: the reference recipe (configs/liver.yaml, or --config)
                    with its model section replaced by the checkpoint's architecture.

Not part of the product (cuseg never runs Python): needs torch and safetensors (the config is
edited as text, no PyYAML). The checkpoint is unpickled with
torch.load(weights_only=True); a checkpoint holding other Python objects needs
--trust-pickle (weights_only=False), which executes code from the file: only for files you
trust.
"""
import argparse
import os
import re
import sys

try:
    import torch
    from safetensors.torch import save_file
except ImportError as e:  # pragma: no cover - depends on the environment
    sys.exit(f"import_seed_checkpoint: needs torch and safetensors ({e})")

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "reference"))
from unet_reference import UNet  # noqa: E402  (our PyTorch copy of the reference network)

ANCHOR = "layer1.step.0.weight"


def load_state_dict(path, trust_pickle):
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except Exception as e:  # noqa: BLE001 - torch raises several types here
        hint = "" if trust_pickle else (" (if the file holds other Python objects and you "
                                        "trust it, rerun with --trust-pickle)")
        sys.exit(f"import_seed_checkpoint: {path}: cannot load the checkpoint: {e}{hint}")
    if isinstance(ckpt, dict) and "state_dict" in ckpt:
        return ckpt["state_dict"], ckpt
    if isinstance(ckpt, dict) and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        return ckpt, {}
    sys.exit(f"import_seed_checkpoint: {path}: neither a Lightning checkpoint (no 'state_dict') "
             "nor a plain state_dict")


def strip_prefix(state, path):
    prefixes = [k[: -len(ANCHOR)] for k in state if k.endswith(ANCHOR)]
    if len(prefixes) != 1:
        sys.exit(f"import_seed_checkpoint: {path}: expected exactly one '...{ANCHOR}' in the "
                 f"state_dict, found {len(prefixes)} (is this the reference U-Net?)")
    p = prefixes[0]
    net = {k[len(p):]: v for k, v in state.items() if k.startswith(p)}
    rest = [k for k in state if not k.startswith(p)]
    return p, net, rest


def architecture(net, path):
    try:
        filters = [int(net[f"layer{l}.step.0.weight"].shape[0]) for l in (1, 2, 3, 4)]
        in_channels = int(net["layer1.step.0.weight"].shape[1])
        classes = int(net["layer8.weight"].shape[0])
    except KeyError as e:
        sys.exit(f"import_seed_checkpoint: {path}: missing {e} (not the reference U-Net)")
    ref = UNet(filters=filters, in_channels=in_channels, classes=classes)
    missing, unexpected = ref.load_state_dict(net, strict=False)
    if missing or unexpected:
        sys.exit(f"import_seed_checkpoint: {path}: the weights do not fit the reference U-Net "
                 f"(missing {list(missing)}, unexpected {list(unexpected)})")
    ref.load_state_dict(net, strict=True)  # shapes too
    return filters, in_channels, classes


def run_config(base_path, filters, in_channels, classes):
    """The base config with its top-level `model:` block replaced (text edit, keeps comments)."""
    with open(base_path) as f:
        lines = f.read().splitlines()
    out, skipping = [], False
    for line in lines:
        if re.match(r"^model:\s*(#.*)?$", line):
            skipping = True
            continue
        if skipping and re.match(r"^\S", line):
            skipping = False
        if not skipping:
            out.append(line)
    out += ["model:",
            f"  in_channels: {in_channels}",
            f"  classes: {classes}",
            f"  filters: [{', '.join(str(f) for f in filters)}]"]
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("ckpt")
    ap.add_argument("run_dir")
    ap.add_argument("--config", default=os.path.join(REPO, "configs", "liver.yaml"),
                    help="run config the model was trained with (default: the reference "
                         "recipe, configs/liver.yaml); its model section is replaced")
    ap.add_argument("--trust-pickle", action="store_true",
                    help="torch.load(weights_only=False): executes code from the file")
    ap.add_argument("--overwrite", action="store_true", help="replace RUN_DIR/best.safetensors")
    a = ap.parse_args()

    state, ckpt = load_state_dict(a.ckpt, a.trust_pickle)
    prefix, net, rest = strip_prefix(state, a.ckpt)
    filters, in_channels, classes = architecture(net, a.ckpt)
    tensors = {k: v.detach().to(torch.float32).contiguous().clone() for k, v in net.items()}
    for k, v in net.items():
        if v.dtype != torch.float32:
            print(f"note: {k} is {v.dtype}, stored as float32")
    cfg = run_config(a.config, filters, in_channels, classes)
    best = os.path.join(a.run_dir, "best.safetensors")
    if os.path.exists(best) and not a.overwrite:
        sys.exit(f"import_seed_checkpoint: {best} exists (use --overwrite)")
    os.makedirs(a.run_dir, exist_ok=True)
    meta = {
        "cuseg.config": "# imported by scripts/import_seed_checkpoint.py from "
                        f"{os.path.basename(a.ckpt)}\n" + cfg,
        "cuseg.kernel_axes": "IJK (torchio order; engine tensors are DHW = KJI)",
        "cuseg.imported_from": os.path.basename(a.ckpt),
        "cuseg.imported_prefix": prefix,
    }
    for key in ("epoch", "global_step", "pytorch-lightning_version"):
        if key in ckpt:
            meta["cuseg.lightning_" + key.replace("-", "_")] = str(ckpt[key])
    tmp = best + ".tmp"
    save_file(tensors, tmp, metadata=meta)
    os.replace(tmp, best)
    with open(os.path.join(a.run_dir, "config.yaml"), "w") as f:
        f.write(meta["cuseg.config"])
    n = sum(t.numel() for t in tensors.values())
    print(f"imported {len(tensors)} tensors ({n:,} parameters, filters {filters}, "
          f"{in_channels} -> {classes} classes; prefix '{prefix}'"
          + (f", {len(rest)} other entries ignored" if rest else "") + f") -> {best}")


if __name__ == "__main__":
    main()
