#!/usr/bin/env python3
"""Writes gaussian_ref.json: nnU-Net's Gaussian importance maps for a few patch shapes, as
nnU-Net v2 builds them (nnunetv2/inference/sliding_window_prediction.py, compute_gaussian,
called by the predictor with sigma_scale=1/8 and value_scaling_factor=10; stated here in our
words, the steps are):
  1. a float64 array of the patch shape, 1 at index (s // 2 for each extent s), 0 elsewhere,
     filtered by scipy.ndimage.gaussian_filter with sigma = s / 8 per axis, order 0,
     mode 'constant', cval 0 (truncate: scipy's default 4.0);
  2. divided by its maximum, multiplied by 10;
  3. converted to torch.float16;
  4. every element that is 0 replaced by the smallest non-zero element.
tests/cpu/test_inference_pipeline.cpp compares kernels/grid_aggregate.h's gaussian_weight()
with these maps, element for element and exactly. Not run in CI (the JSON is committed).

    python3 -m venv .venv-gauss && .venv-gauss/bin/pip install numpy scipy torch
    .venv-gauss/bin/python tests/reference/gaussian/make_gaussian_ref.py

Written with numpy 2.4.6, scipy 1.17.1, torch 2.15.0 (CPU). Layout: "shape" is the patch
(pd, ph, pw) = (k, j, i) extents and "values" the map with the last extent fastest (NCDHW,
W fastest), as float16 values written exactly (every float16 is a short decimal in repr).
"""
import json
import os

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

SHAPES = [(8, 8, 8), (5, 7, 9), (6, 12, 10), (16, 4, 3), (1, 4, 6)]


def nnunet_map(shape):
    """The float16 map and how many of its elements step 4 replaced."""
    impulse = np.zeros(shape)
    impulse[tuple(s // 2 for s in shape)] = 1
    g = gaussian_filter(impulse, [s / 8 for s in shape], 0, mode="constant", cval=0)
    t = torch.from_numpy(g)
    t = t / torch.max(t) * 10
    t = t.type(torch.float16)
    zeros = int((t == 0).sum().item())
    t[t == 0] = torch.min(t[t != 0])
    return t, zeros


def main():
    out = {"source": "nnU-Net v2 compute_gaussian(sigma_scale=1/8, value_scaling_factor=10), "
                     "float16; regenerate with make_gaussian_ref.py",
           "maps": []}
    for shape in SHAPES:
        t, zeros = nnunet_map(shape)
        out["maps"].append({"shape": list(shape),
                            "clamped": zeros,
                            "values": [float(v) for v in t.float().numpy().ravel()]})
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gaussian_ref.json")
    with open(path, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    print(path, os.path.getsize(path), "bytes")


if __name__ == "__main__":
    main()
