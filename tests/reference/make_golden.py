#!/usr/bin/env python3
"""Write the PyTorch golden references that tests/cpu/test_golden.cpp compares against.

Conventions:
- Every tensor is NCDHW exactly as PyTorch holds it (W fastest); no axis is reversed.
- Everything is computed on the CPU in float32 (the dtype the engine trains in), with one
  thread and deterministic algorithms, so a rerun writes byte-identical files.
- The float32 results are also recomputed in float64 and the largest float32-vs-float64
  difference of each tensor is printed: that is the float32 rounding noise of PyTorch's own
  summation order, the yardstick the C++ tolerances are set against (see README.md).

File format "CUSEGREF v1" (little-endian):
  char magic[8] = "CUSEGREF"; uint32 version = 1; uint32 count;
  count records: uint32 name_len; char name[name_len]; uint32 dtype (0 float32, 1 int64,
  2 float64); uint32 ndim; int64 dims[ndim]; raw data (prod(dims) elements; ndim 0 -> 1).

Run from anywhere:  python tests/reference/make_golden.py [--out DIR]
Not run in CI: the .bin files it writes are committed.
"""
import argparse
import os
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

MAGIC = b"CUSEGREF"
VERSION = 1
DTYPES = {torch.float32: 0, torch.int64: 1, torch.float64: 2}
CLASS_WEIGHTS = (1.0, 1.0, 3.0)


# ----------------------------------------------------------------------------- file I/O
def write_golden(path, tensors):
    """tensors: list of (name, torch.Tensor) in the order they are written."""
    names = [n for n, _ in tensors]
    assert len(names) == len(set(names)), "duplicate tensor names in " + path
    with open(path, "wb") as f:
        f.write(MAGIC)
        f.write(struct.pack("<II", VERSION, len(tensors)))
        for name, t in tensors:
            t = t.detach().contiguous().cpu()
            if t.dtype not in DTYPES:
                raise TypeError(f"{name}: unsupported dtype {t.dtype}")
            nb = name.encode("utf-8")
            f.write(struct.pack("<I", len(nb)))
            f.write(nb)
            f.write(struct.pack("<II", DTYPES[t.dtype], t.dim()))
            f.write(struct.pack(f"<{t.dim()}q", *t.shape))
            arr = t.numpy()
            f.write(arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes(order="C"))
    print(f"wrote {path}: {len(tensors)} tensors, {os.path.getsize(path)} bytes")


def read_golden(path):
    """Reader used only to check the writer round-trips (the C++ reader is golden.h)."""
    np_dt = {0: "<f4", 1: "<i8", 2: "<f8"}
    out = {}
    with open(path, "rb") as f:
        assert f.read(8) == MAGIC
        version, count = struct.unpack("<II", f.read(8))
        assert version == VERSION
        for _ in range(count):
            (n,) = struct.unpack("<I", f.read(4))
            name = f.read(n).decode()
            dt, nd = struct.unpack("<II", f.read(8))
            dims = struct.unpack(f"<{nd}q", f.read(8 * nd))
            cnt = int(np.prod(dims)) if nd else 1
            out[name] = np.frombuffer(f.read(cnt * np.dtype(np_dt[dt]).itemsize),
                                      dtype=np_dt[dt]).reshape(dims)
        assert f.read(1) == b"", "trailing bytes"
    return out


def noise(name, f32, f64):
    """Print PyTorch's own float32 rounding noise for one tensor (vs the float64 result)."""
    a = f32.detach().double()
    b = f64.detach().double()
    d = (a - b).abs()
    rel = (d / b.abs().clamp_min(1e-30)).max().item() if d.numel() else 0.0
    print(f"  {name:<28} max|ref|={b.abs().max().item():.3e}  f32-f64 max abs={d.max().item():.3e}"
          f"  (max rel {rel:.1e})")


# ----------------------------------------------------------------------------- ops
def conv3d_case(g, prefix, k):
    x = torch.randn(2, 3, 5, 7, 6, generator=g)
    conv = nn.Conv3d(3, 4, k, padding=k // 2)  # PyTorch default init, from the global seed
    w = conv.weight.detach().clone()
    b = conv.bias.detach().clone()
    gy = torch.randn(2, 4, 5, 7, 6, generator=g)

    def run(dt):
        xx, ww, bb = (t.detach().clone().to(dt).requires_grad_() for t in (x, w, b))
        y = F.conv3d(xx, ww, bb, padding=k // 2)
        y.backward(gy.to(dt))
        return y, xx.grad, ww.grad, bb.grad

    y, gx, gw, gb = run(torch.float32)
    y64, gx64, gw64, gb64 = run(torch.float64)
    for n, a, r in (("y", y, y64), ("gx", gx, gx64), ("gw", gw, gw64), ("gb", gb, gb64)):
        noise(prefix + n, a, r)
    return [(prefix + "x", x), (prefix + "weight", w), (prefix + "bias", b), (prefix + "y", y),
            (prefix + "gy", gy), (prefix + "gx", gx), (prefix + "gw", gw), (prefix + "gb", gb)]


def make_conv3d(g):
    return conv3d_case(g, "k3.", 3) + conv3d_case(g, "k1.", 1)


def make_relu(g):
    x = torch.randn(2, 3, 5, 7, 6, generator=g)
    x.view(-1)[::17] = 0.0  # exact zeros: PyTorch's ReLU gradient at 0 is 0
    gy = torch.randn(2, 3, 5, 7, 6, generator=g)
    xx = x.clone().requires_grad_()
    y = torch.relu(xx)
    y.backward(gy)
    return [("x", x), ("y", y), ("gy", gy), ("gx", xx.grad)]


def maxpool_case(prefix, x, g):
    xx = x.clone().requires_grad_()
    y = F.max_pool3d(xx, 2)  # kernel 2, stride 2, floor for odd extents
    gy = torch.randn(y.shape, generator=g)
    y.backward(gy)
    return [(prefix + "x", x), (prefix + "y", y), (prefix + "gy", gy), (prefix + "gx", xx.grad)]


def make_maxpool3d(g):
    x = torch.randn(2, 3, 5, 7, 6, generator=g)
    # Ties: only 3 distinct values, so most 2x2x2 windows hold several equal maxima.
    # PyTorch's CPU kernel keeps the FIRST maximum in (d, h, w) scan order (strict >).
    xt = torch.randint(0, 3, (2, 3, 5, 7, 6), generator=g).float()
    out = maxpool_case("rand.", x, g) + maxpool_case("ties.", xt, g)
    # An input whose windows are all-equal: the gradient must go to the window's corner.
    xc = torch.zeros(1, 2, 4, 4, 4)
    out += maxpool_case("const.", xc, g)
    return out


def make_upsample(g):
    up = nn.Upsample(scale_factor=2, mode="trilinear", align_corners=False)
    x = torch.randn(2, 3, 5, 7, 6, generator=g)
    gy = torch.randn(2, 3, 10, 14, 12, generator=g)

    def run(dt):
        xx = x.detach().clone().to(dt).requires_grad_()
        y = up(xx)
        y.backward(gy.to(dt))
        return y, xx.grad

    y, gx = run(torch.float32)
    y64, gx64 = run(torch.float64)
    noise("y", y, y64)
    noise("gx", gx, gx64)
    return [("x", x), ("y", y), ("gy", gy), ("gx", gx)]


def ce_case(prefix, logits, labels):
    w = torch.tensor(CLASS_WEIGHTS)

    def run(dt):
        lg = logits.detach().clone().to(dt).requires_grad_()
        loss = F.cross_entropy(lg, labels, weight=w.to(dt), reduction="mean")
        loss.backward()
        return loss, lg.grad

    loss, grad = run(torch.float32)
    loss64, grad64 = run(torch.float64)
    noise(prefix + "loss", loss, loss64)
    noise(prefix + "grad", grad, grad64)
    return [(prefix + "logits", logits), (prefix + "labels", labels), (prefix + "loss", loss),
            (prefix + "grad", grad)]


def make_cross_entropy(g):
    logits = torch.randn(2, 3, 5, 7, 6, generator=g)
    labels = torch.randint(0, 3, (2, 5, 7, 6), generator=g)
    assert set(labels.unique().tolist()) == {0, 1, 2}
    out = [("weight", torch.tensor(CLASS_WEIGHTS))]
    out += ce_case("", logits, labels)
    # Large logits (|x| up to ~100): the log-softmax must subtract the max first.
    out += ce_case("big.", logits * 40.0, labels)
    return out


def make_adam(g):
    p0 = torch.randn(3, 7, 5, generator=g)
    grads = []
    for k in range(5):
        gk = torch.randn(3, 7, 5, generator=g) * (10.0 ** (k % 3 - 1))  # scales 0.1, 1, 10
        gk.view(-1)[::11] = 0.0  # zero gradients: m and v still decay
        grads.append(gk)

    def run(dt):
        p = nn.Parameter(p0.clone().to(dt))
        opt = torch.optim.Adam([p], lr=1e-3, foreach=False)
        after = []
        for gk in grads:
            p.grad = gk.to(dt).clone()
            opt.step()
            after.append(p.detach().clone())
        return after

    after = run(torch.float32)
    after64 = run(torch.float64)
    out = [("lr", torch.tensor([1e-3], dtype=torch.float64)), ("param0", p0)]
    for k in range(5):
        noise(f"param{k + 1}", after[k], after64[k])
        out += [(f"grad{k + 1}", grads[k]), (f"param{k + 1}", after[k])]
    return out


# ----------------------------------------------------------------------------- U-Net
# The reference module lives in unet_reference.py (shared with bench/peers/unet_torch.py).
from unet_reference import DoubleConv, UNet  # noqa: E402,F401


def phantom(g, n, size=16):
    """A liver-like ball with a tumour inside it, per sample; returns x [n,1,s,s,s], labels."""
    zz, yy, xx = torch.meshgrid(*(torch.arange(size, dtype=torch.float32),) * 3, indexing="ij")
    labels = torch.zeros(n, size, size, size, dtype=torch.int64)
    x = torch.empty(n, 1, size, size, size)
    for i in range(n):
        c = torch.tensor([7.5, 7.5, 7.5]) + (torch.rand(3, generator=g) - 0.5) * 3
        r = 4.5 + torch.rand(1, generator=g).item() * 1.5
        tc = c + (torch.rand(3, generator=g) - 0.5) * 2
        tr = 1.6 + torch.rand(1, generator=g).item()
        d_liver = ((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2).sqrt()
        d_tum = ((zz - tc[0]) ** 2 + (yy - tc[1]) ** 2 + (xx - tc[2]) ** 2).sqrt()
        labels[i][d_liver <= r] = 1
        labels[i][d_tum <= tr] = 2
        base = torch.tensor([-0.6, 0.1, 0.5])[labels[i]]
        x[i, 0] = base + 0.15 * torch.randn(size, size, size, generator=g)
        assert set(labels[i].unique().tolist()) == {0, 1, 2}, "every class must be present"
    return x, labels


def make_unet(g):
    assert sum(p.numel() for p in UNet().parameters()) == 5_836_099
    filters = (4, 8, 16, 32)
    torch.manual_seed(0)  # default PyTorch init of the tiny network
    model = UNet(filters)
    params0 = {n: p.detach().clone() for n, p in model.named_parameters()}
    w = torch.tensor(CLASS_WEIGHTS)
    x2, labels2 = phantom(g, 2)
    x, labels = x2[:1].clone(), labels2[:1].clone()

    out = [("config.filters", torch.tensor(filters, dtype=torch.int64)),
           ("config.in_channels", torch.tensor([1], dtype=torch.int64)),
           ("config.classes", torch.tensor([3], dtype=torch.int64)),
           ("class_weights", w.clone()),
           ("lr", torch.tensor([1e-3], dtype=torch.float64))]
    out += [(n, p) for n, p in params0.items()]

    def fwd_bwd(m, xb, lb, dt):
        m.zero_grad(set_to_none=True)
        logits = m(xb.to(dt))
        loss = F.cross_entropy(logits, lb, weight=w.to(dt))
        loss.backward()
        return logits, loss, {n: p.grad.detach().clone() for n, p in m.named_parameters()}

    model64 = UNet(filters).double()
    model64.load_state_dict({k: v.double() for k, v in model.state_dict().items()})

    # Batch 1: logits, loss and every gradient.
    logits, loss, grads = fwd_bwd(model, x, labels, torch.float32)
    l64, loss64, g64 = fwd_bwd(model64, x, labels, torch.float64)
    noise("logits", logits, l64)
    noise("loss", loss, loss64)
    worst = max(grads, key=lambda n: ((grads[n].double() - g64[n]).abs().max()
                                      / g64[n].abs().max()).item())
    noise("grad (worst) " + worst, grads[worst], g64[worst])
    out += [("x", x), ("labels", labels), ("logits", logits), ("loss", loss)]
    out += [("grad." + n, t) for n, t in grads.items()]

    # Batch 2 (the recipe's batch size): logits, loss and every gradient.
    b2_logits, b2_loss, b2_grads = fwd_bwd(model, x2, labels2, torch.float32)
    b2_l64, b2_loss64, _ = fwd_bwd(model64, x2, labels2, torch.float64)
    noise("b2.logits", b2_logits, b2_l64)
    noise("b2.loss", b2_loss, b2_loss64)
    out += [("b2.x", x2), ("b2.labels", labels2), ("b2.logits", b2_logits), ("b2.loss", b2_loss)]
    out += [("b2.grad." + n, t) for n, t in b2_grads.items()]

    # 5 Adam steps on the batch-1 sample; loss_k is computed before step k.
    def train(m, dt):
        opt = torch.optim.Adam(m.parameters(), lr=1e-3, foreach=False)
        losses = []
        for _ in range(5):
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(m(x.to(dt)), labels, weight=w.to(dt))
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return torch.tensor(losses, dtype=dt)

    adam_losses = train(model, torch.float32)
    adam_losses64 = train(model64, torch.float64)
    noise("adam_losses", adam_losses, adam_losses64)
    out.append(("adam_losses", adam_losses))
    p64 = dict(model64.named_parameters())
    names = list(params0)
    # Kept small: the first layer (sees the raw input) and the last two layers.
    keep = [n for n in names if n.startswith(("layer1.", "layer7.", "layer8."))]
    for n, p in model.named_parameters():
        if n in keep:
            noise("after5." + n, p, p64[n])
            out.append(("after5." + n, p.detach().clone()))
    return out


# ----------------------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    args = ap.parse_args()

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.set_default_dtype(torch.float32)
    print(f"torch {torch.__version__}, numpy {np.__version__}, python {sys.version.split()[0]}")

    files = [("conv3d", make_conv3d), ("relu", make_relu), ("maxpool3d", make_maxpool3d),
             ("upsample", make_upsample), ("cross_entropy", make_cross_entropy),
             ("adam", make_adam), ("unet_tiny", make_unet)]
    total = 0
    for i, (name, fn) in enumerate(files):
        print(f"{name}:")
        torch.manual_seed(1000 + i)  # default module init (conv weights) per file
        g = torch.Generator().manual_seed(2000 + i)  # data per file
        path = os.path.join(args.out, name + ".bin")
        tensors = fn(g)
        write_golden(path, tensors)
        back = read_golden(path)
        for n, t in tensors:
            assert np.array_equal(back[n], t.detach().numpy()), n
        total += os.path.getsize(path)
    print(f"total {total} bytes")
    assert total < 2 * 1024 * 1024, "golden files must stay under 2 MB together"


if __name__ == "__main__":
    main()
