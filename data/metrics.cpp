// Segmentation metrics (see data/metrics.h for the definitions and the empty-mask policy).
#include "cuseg/data/metrics.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <sstream>

#include "cuseg/core/check.h"

namespace cuseg {
namespace data {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Exact 1-D squared distance transform (Felzenszwalb & Huttenlocher lower envelope):
// d[p] = min_q w (p - q)^2 + f[q], with w = spacing^2; f = inf where not a feature.
void edt_1d(const double* f, double* d, int n, double w, std::vector<int>& v,
            std::vector<double>& z) {
  v.resize(size_t(n));
  z.resize(size_t(n) + 1);
  int k = -1;
  for (int q = 0; q < n; ++q) {
    if (f[q] == kInf) continue;
    while (k >= 0) {
      const int p = v[size_t(k)];
      const double s = ((f[q] + w * q * q) - (f[p] + w * double(p) * p)) / (2 * w * (q - p));
      if (s <= z[size_t(k)]) {
        --k;
      } else {
        ++k;
        v[size_t(k)] = q;
        z[size_t(k)] = s;
        z[size_t(k) + 1] = kInf;
        break;
      }
    }
    if (k < 0) {
      k = 0;
      v[0] = q;
      z[0] = -kInf;
      z[1] = kInf;
    }
  }
  if (k < 0) {
    std::fill(d, d + n, kInf);
    return;
  }
  int j = 0;
  for (int q = 0; q < n; ++q) {
    while (z[size_t(j) + 1] < q) ++j;
    const int p = v[size_t(j)];
    d[q] = w * double(q - p) * (q - p) + f[p];
  }
}

// Squared Euclidean distance (mm^2) from every voxel to the nearest feature voxel.
std::vector<double> edt_sq(const Mask& feature, const Geometry& g) {
  const int X = g.size[0], Y = g.size[1], Z = g.size[2];
  std::vector<double> a(feature.size());
  for (size_t n = 0; n < a.size(); ++n) a[n] = feature[n] ? 0.0 : kInf;
  std::vector<double> line, out;
  std::vector<int> v;
  std::vector<double> zb;
  const int dims[3] = {X, Y, Z};
  const int64_t stride[3] = {1, X, int64_t(X) * Y};
  for (int axis = 0; axis < 3; ++axis) {
    const int n = dims[axis];
    line.resize(size_t(n));
    out.resize(size_t(n));
    const double w = g.spacing[size_t(axis)] * g.spacing[size_t(axis)];
    const int o1 = axis == 0 ? 1 : 0, o2 = axis == 2 ? 1 : 2;  // the two other axes
    for (int b = 0; b < dims[o2]; ++b)
      for (int c = 0; c < dims[o1]; ++c) {
        const int64_t base = int64_t(b) * stride[o2] + int64_t(c) * stride[o1];
        for (int q = 0; q < n; ++q) line[size_t(q)] = a[size_t(base + q * stride[axis])];
        edt_1d(line.data(), out.data(), n, w, v, zb);
        for (int q = 0; q < n; ++q) a[size_t(base + q * stride[axis])] = out[size_t(q)];
      }
  }
  return a;
}

Mask surface(const Mask& m, const Geometry& g) {
  const int X = g.size[0], Y = g.size[1], Z = g.size[2];
  Mask s(m.size(), 0);
  for (int k = 0; k < Z; ++k)
    for (int j = 0; j < Y; ++j)
      for (int i = 0; i < X; ++i) {
        const int64_t n = g.index(i, j, k);
        if (!m[size_t(n)]) continue;
        const bool border = i == 0 || j == 0 || k == 0 || i == X - 1 || j == Y - 1 || k == Z - 1;
        s[size_t(n)] = border || !m[size_t(n - 1)] || !m[size_t(n + 1)] || !m[size_t(n - X)] ||
                       !m[size_t(n + X)] || !m[size_t(n - int64_t(X) * Y)] ||
                       !m[size_t(n + int64_t(X) * Y)];
      }
  return s;
}

double percentile_linear(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  const double rank = p / 100.0 * double(v.size() - 1);
  const size_t lo = size_t(std::floor(rank)), hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (rank - double(lo));
}

}  // namespace

Mask mask_of(const LabelMap& lab, int min_label, int max_label) {
  Mask m(lab.v.size());
  for (size_t n = 0; n < m.size(); ++n) m[n] = lab.v[n] >= min_label && lab.v[n] <= max_label;
  return m;
}

int64_t count(const Mask& m) {
  int64_t c = 0;
  for (uint8_t x : m) c += x != 0;
  return c;
}

double dice(const Mask& a, const Mask& b) {
  CUSEG_CHECK(a.size() == b.size(), "dice: masks of different sizes");
  int64_t inter = 0, sa = 0, sb = 0;
  for (size_t n = 0; n < a.size(); ++n) {
    sa += a[n] != 0;
    sb += b[n] != 0;
    inter += a[n] && b[n];
  }
  return sa + sb == 0 ? 1.0 : 2.0 * double(inter) / double(sa + sb);
}

SurfaceDistances surface_distances(const Mask& a, const Mask& b, const Geometry& g) {
  CUSEG_CHECK(a.size() == b.size() && int64_t(a.size()) == g.numel(),
              "surface_distances: masks do not match the geometry");
  SurfaceDistances r;
  const int64_t ca = count(a), cb = count(b);
  if (ca == 0 && cb == 0) {
    r.hd95_mm = r.assd_mm = r.hd_mm = 0.0;
    return r;
  }
  if (ca == 0 || cb == 0) return r;  // undefined: null
  const Mask sa = surface(a, g), sb = surface(b, g);
  const auto da = edt_sq(sa, g), db = edt_sq(sb, g);
  std::vector<double> ab, ba;  // directed distances a->b and b->a
  for (size_t n = 0; n < sa.size(); ++n) {
    if (sa[n]) ab.push_back(std::sqrt(db[n]));
    if (sb[n]) ba.push_back(std::sqrt(da[n]));
  }
  auto mean = [](const std::vector<double>& v) {
    double s = 0;
    for (double x : v) s += x;
    return s / double(v.size());
  };
  std::vector<double> all(ab);
  all.insert(all.end(), ba.begin(), ba.end());
  r.hd95_mm = percentile_linear(all, 95.0);
  r.hd_mm = *std::max_element(all.begin(), all.end());
  // Mean over both directed sets together (medpy 0.5 assd, LiTS ASSD), not the mean of the two
  // directed means: the two differ whenever the surfaces have different voxel counts.
  r.assd_mm = mean(all);
  return r;
}

std::vector<int64_t> component_sizes(const Mask& m, const Geometry& g) {
  const int X = g.size[0], Y = g.size[1], Z = g.size[2];
  CUSEG_CHECK(int64_t(m.size()) == g.numel(), "component_sizes: mask does not match geometry");
  std::vector<uint8_t> seen(m.size(), 0);
  std::vector<int64_t> stack, sizes;
  for (int64_t s = 0; s < g.numel(); ++s) {
    if (!m[size_t(s)] || seen[size_t(s)]) continue;
    int64_t voxels = 0;
    seen[size_t(s)] = 1;
    stack.push_back(s);
    while (!stack.empty()) {
      const int64_t n = stack.back();
      stack.pop_back();
      ++voxels;
      const int i = int(n % X), j = int(n / X % Y), k = int(n / (int64_t(X) * Y));
      for (int dk = -1; dk <= 1; ++dk)
        for (int dj = -1; dj <= 1; ++dj)
          for (int di = -1; di <= 1; ++di) {
            const int a = i + di, b = j + dj, c = k + dk;
            if (a < 0 || b < 0 || c < 0 || a >= X || b >= Y || c >= Z) continue;
            const int64_t q = g.index(a, b, c);
            if (m[size_t(q)] && !seen[size_t(q)]) {
              seen[size_t(q)] = 1;
              stack.push_back(q);
            }
          }
    }
    sizes.push_back(voxels);
  }
  std::sort(sizes.begin(), sizes.end(), std::greater<int64_t>());
  return sizes;
}

int count_components(const Mask& m, const Geometry& g) {
  return int(component_sizes(m, g).size());
}

bool touches_border(const Mask& m, const Geometry& g) {
  CUSEG_CHECK(int64_t(m.size()) == g.numel(), "touches_border: mask does not match geometry");
  const int X = g.size[0], Y = g.size[1], Z = g.size[2];
  for (int k = 0; k < Z; ++k)
    for (int j = 0; j < Y; ++j) {
      const bool face = k == 0 || k == Z - 1 || j == 0 || j == Y - 1;
      for (int i = 0; i < X; ++i)
        if ((face || i == 0 || i == X - 1) && m[size_t(g.index(i, j, k))]) return true;
    }
  return false;
}

StructureStats structure_stats(const Mask& m, const Geometry& g) {
  StructureStats s;
  const std::vector<int64_t> sizes = component_sizes(m, g);
  for (int64_t v : sizes) s.voxels += v;
  s.ml = double(s.voxels) * g.voxel_ml();
  s.components = int(sizes.size());
  s.largest_voxels = sizes.empty() ? 0 : sizes.front();
  s.largest_ml = double(s.largest_voxels) * g.voxel_ml();
  s.touches_border = touches_border(m, g);
  return s;
}

CaseMetrics evaluate_case(const LabelMap& pred, const LabelMap& ref, const std::string& id,
                          bool surfaces) {
  std::string why;
  CUSEG_CHECK(pred.geo.size == ref.geo.size,
              "evaluate_case " << id << ": prediction and reference sizes differ");
  CaseMetrics c;
  c.id = id;
  const Mask pl = liver_mask(pred), rl = liver_mask(ref), pt = tumour_mask(pred),
             rt = tumour_mask(ref);
  c.dice_liver = dice(pl, rl);
  c.dice_tumour = dice(pt, rt);
  for (size_t n = 0; n < pl.size(); ++n) {
    c.liver_inter += pl[n] && rl[n];
    c.tumour_inter += pt[n] && rt[n];
  }
  c.liver_sum = count(pl) + count(rl);
  c.tumour_sum = count(pt) + count(rt);
  const double ml = ref.geo.voxel_ml();
  c.liver_ml_pred = double(count(pl)) * ml;
  c.liver_ml_ref = double(count(rl)) * ml;
  c.tumour_ml_pred = double(count(pt)) * ml;
  c.tumour_ml_ref = double(count(rt)) * ml;
  c.tumours_pred = count_components(pt, pred.geo);
  c.tumours_ref = count_components(rt, ref.geo);
  if (surfaces) {
    c.liver_surface = surface_distances(pl, rl, ref.geo);
    c.tumour_surface = surface_distances(pt, rt, ref.geo);
  }
  return c;
}

GlobalDice global_dice(const std::vector<CaseMetrics>& cases) {
  int64_t li = 0, ls = 0, ti = 0, ts = 0;
  for (const auto& c : cases)
    li += c.liver_inter, ls += c.liver_sum, ti += c.tumour_inter, ts += c.tumour_sum;
  GlobalDice g;
  g.liver = ls == 0 ? 1.0 : 2.0 * double(li) / double(ls);
  g.tumour = ts == 0 ? 1.0 : 2.0 * double(ti) / double(ts);
  return g;
}

std::string fmt_opt(const std::optional<double>& v, int precision) {
  if (!v) return "null";
  std::ostringstream os;
  os.precision(precision);
  os << std::fixed << *v;
  return os.str();
}

}  // namespace data
}  // namespace cuseg
