#!/usr/bin/env python3
"""Writes metrics_ref.json: small 3-D mask pairs with anisotropic spacing and the Dice, HD95,
ASSD and Hausdorff distance that medpy computes for them. tests/cpu/test_data_metrics.cpp
compares data/metrics.cpp against this file. Not run in CI (the JSON is committed).

    python3 -m venv .venv-metrics && .venv-metrics/bin/pip install medpy==0.5.2 numpy scipy
    .venv-metrics/bin/python tests/reference/metrics/make_metrics_ref.py

Definitions (medpy.metric.binary, 0.5.2): surfaces are mask XOR binary_erosion(mask) with the
6-connected structure (connectivity=1) and border value 0; directed distances are
distance_transform_edt(~other_surface, sampling=spacing) read at this mask's surface voxels;
hd95 = numpy.percentile(union of both directed sets, 95) (linear interpolation), assd = mean of
the union of both directed sets (medpy 0.5 concatenates them; medpy 0.4 averaged the two
directed means, which differs when the surfaces have different voxel counts), hd = max of both.
Ours follows exactly these definitions.

Layout in the JSON: arrays are indexed [i, j, k] with spacing (si, sj, sk) in mm, and masks are
listed as linear indices of their foreground voxels with i fastest (ITK / cuseg buffer order).
"""
import json
import os
import sys

import numpy as np
from medpy.metric import binary as mb
from scipy import ndimage

rng = np.random.default_rng(20240604)


def ellipsoid(shape, centre, radii):
    i, j, k = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    return ((i - centre[0]) / radii[0]) ** 2 + ((j - centre[1]) / radii[1]) ** 2 + (
        (k - centre[2]) / radii[2]) ** 2 <= 1.0


def blob(shape, threshold, sigma):
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return noise > threshold


cases = []


def add(name, a, b, spacing):
    a = a.astype(bool)
    b = b.astype(bool)
    assert a.any() and b.any(), name
    sp = tuple(float(s) for s in spacing)
    cases.append({
        "name": name,
        "size": list(a.shape),
        "spacing": list(sp),
        "a": np.flatnonzero(a.ravel(order="F")).tolist(),
        "b": np.flatnonzero(b.ravel(order="F")).tolist(),
        "dice": float(mb.dc(a, b)),
        "hd95": float(mb.hd95(a, b, voxelspacing=sp)),
        "assd": float(mb.assd(a, b, voxelspacing=sp)),
        "hd": float(mb.hd(a, b, voxelspacing=sp)),
    })


s = (24, 20, 14)
add("ellipsoids_shifted", ellipsoid(s, (11, 9, 6), (7, 6, 4)), ellipsoid(s, (13, 10, 7), (6, 7, 4)),
    (0.8, 0.8, 2.5))
add("cube_vs_smaller_cube", np.pad(np.ones((10, 8, 6)), ((3, 11), (4, 8), (2, 6))),
    np.pad(np.ones((6, 6, 3)), ((6, 12), (5, 9), (3, 8))), (1.5, 0.7, 3.0))
add("touching_the_border", ellipsoid(s, (0, 9, 6), (9, 8, 5)), ellipsoid(s, (2, 10, 13), (8, 9, 6)),
    (0.6, 1.1, 1.9))
add("random_blobs", blob((22, 22, 12), 0.08, 1.6), blob((22, 22, 12), 0.1, 1.4), (0.74, 0.74, 5.0))
one = np.zeros((9, 8, 7), bool)
one[4, 3, 2] = True
add("single_voxel_vs_ellipsoid", one, ellipsoid((9, 8, 7), (5, 4, 4), (3, 2, 2)), (2.0, 1.0, 0.5))
two = np.zeros((30, 12, 10), bool)
two[2:6, 3:8, 2:6] = True
two[20:27, 2:9, 3:8] = True
add("two_components_far_apart", two, ellipsoid((30, 12, 10), (21, 5, 5), (4, 3, 2)),
    (0.9, 1.3, 2.2))

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "metrics_ref.json")
import medpy  # noqa: E402  (version for the record)
doc = {
    "generator": "tests/reference/metrics/make_metrics_ref.py",
    "reference": "medpy.metric.binary %s (dc, hd95, assd, hd), numpy %s, scipy %s" %
                 (getattr(medpy, "__version__", "0.5.2"), np.__version__,
                  __import__("scipy").__version__),
    "cases": cases,
}
with open(out, "w") as f:
    json.dump(doc, f, indent=1)
    f.write("\n")
for c in cases:
    print("%-28s dice %.6f hd95 %.6f assd %.6f hd %.6f" %
          (c["name"], c["dice"], c["hd95"], c["assd"], c["hd"]), file=sys.stderr)
print("wrote", out)
