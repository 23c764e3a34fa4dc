// Pure geometry code (no ITK): grid comparison, descriptions, orientation codes and the
// index-permutation reorientation. Always compiled, also when CUSEG_WITH_ITK=OFF.
#include <array>
#include <cmath>
#include <sstream>
#include <string>

#include "cuseg/core/check.h"
#include "cuseg/data/image.h"

namespace cuseg {
namespace data {

// ---------------------------------------------------------------- geometry helpers
std::array<double, 3> Geometry::world(double i, double j, double k) const {
  const double idx[3] = {i * spacing[0], j * spacing[1], k * spacing[2]};
  std::array<double, 3> p = origin;
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c) p[r] += direction[3 * r + c] * idx[c];
  return p;
}

bool same_grid(const Geometry& a, const Geometry& b, std::string* why) {
  std::ostringstream os;
  if (a.size != b.size) {
    os << "size " << a.size[0] << "x" << a.size[1] << "x" << a.size[2] << " vs " << b.size[0] << "x"
       << b.size[1] << "x" << b.size[2];
  } else {
    // ITK's defaults: coordinate tolerance 1e-6 x spacing(axis 0), direction tolerance 1e-6.
    const double ctol = 1e-6 * std::abs(a.spacing[0]);
    for (int d = 0; d < 3 && os.tellp() == 0; ++d) {
      if (std::abs(a.spacing[d] - b.spacing[d]) > ctol)
        os << "spacing[" << d << "] " << a.spacing[d] << " vs " << b.spacing[d] << " mm";
      else if (std::abs(a.origin[d] - b.origin[d]) > ctol)
        os << "origin[" << d << "] " << a.origin[d] << " vs " << b.origin[d] << " mm";
    }
    for (int n = 0; n < 9 && os.tellp() == 0; ++n)
      if (std::abs(a.direction[n] - b.direction[n]) > 1e-6)
        os << "direction (" << orientation_code(a) << " vs " << orientation_code(b) << ", element "
           << n << ": " << a.direction[n] << " vs " << b.direction[n] << ")";
  }
  if (why) *why = os.str();
  return os.tellp() == 0;
}

std::string describe(const Geometry& g) {
  std::ostringstream os;
  os.precision(4);
  os << g.size[0] << "x" << g.size[1] << "x" << g.size[2] << " @ " << g.spacing[0] << "x"
     << g.spacing[1] << "x" << g.spacing[2] << " mm, " << orientation_code(g) << ", origin ("
     << g.origin[0] << ", " << g.origin[1] << ", " << g.origin[2] << ") mm LPS";
  return os.str();
}

// ---------------------------------------------------------------- orientation
std::string orientation_code(const Geometry& g) {
  static const char pos[3] = {'R', 'A', 'S'}, neg[3] = {'L', 'P', 'I'};
  std::string code(3, '?');
  bool used[3] = {false, false, false};
  for (int a = 0; a < 3; ++a) {
    // RAS world vector of axis a: LPS -> RAS flips x and y.
    const double v[3] = {-g.direction[0 * 3 + a], -g.direction[1 * 3 + a], g.direction[2 * 3 + a]};
    int best = 0;
    for (int r = 1; r < 3; ++r)
      if (std::abs(v[r]) > std::abs(v[best])) best = r;
    if (used[best]) return "???";  // degenerate direction (two axes along one world axis)
    used[best] = true;
    code[size_t(a)] = v[best] >= 0 ? pos[best] : neg[best];
  }
  return code;
}

namespace {
int world_axis(char c) {
  switch (c) {
    case 'R':
    case 'L':
      return 0;
    case 'A':
    case 'P':
      return 1;
    case 'S':
    case 'I':
      return 2;
    default:
      return -1;
  }
}
}  // namespace

Reorientation plan_reorientation(const Geometry& g, const std::string& target) {
  Reorientation r;
  r.original = g;
  r.from_code = orientation_code(g);
  r.to_code = target;
  CUSEG_CHECK(r.from_code != "???", "cannot name the orientation of " << describe(g));
  CUSEG_CHECK(target.size() == 3, "orientation code must have 3 letters, got '" << target << "'");
  bool seen[3] = {false, false, false};
  for (int a = 0; a < 3; ++a) {
    const int wa = world_axis(target[size_t(a)]);
    CUSEG_CHECK(wa >= 0 && !seen[wa], "bad orientation code '" << target << "'");
    seen[wa] = true;
    for (int b = 0; b < 3; ++b)
      if (world_axis(r.from_code[size_t(b)]) == wa) {
        r.perm[size_t(a)] = b;
        r.flip[size_t(a)] = r.from_code[size_t(b)] != target[size_t(a)];
      }
  }
  return r;
}

Geometry reoriented_geometry(const Reorientation& r) {
  const Geometry& o = r.original;
  Geometry g;
  std::array<double, 3> corner{0, 0, 0};  // old index of the new (0,0,0)
  for (int a = 0; a < 3; ++a) {
    const int b = r.perm[size_t(a)];
    g.size[size_t(a)] = o.size[size_t(b)];
    g.spacing[size_t(a)] = o.spacing[size_t(b)];
    const double s = r.flip[size_t(a)] ? -1.0 : 1.0;
    for (int row = 0; row < 3; ++row)
      g.direction[size_t(3 * row + a)] = s * o.direction[size_t(3 * row + b)];
    if (r.flip[size_t(a)]) corner[size_t(b)] = o.size[size_t(b)] - 1;
  }
  g.origin = o.world(corner[0], corner[1], corner[2]);
  return g;
}

// Voxel (i, j, k) of the reoriented grid (extents ns) is voxel old[] of the original one.
static void original_index(const Reorientation& r, const std::array<int, 3>& ns, int i, int j,
                           int k, int old[3]) {
  const int nidx[3] = {i, j, k};
  for (int a = 0; a < 3; ++a)
    old[r.perm[size_t(a)]] = r.flip[size_t(a)] ? ns[size_t(a)] - 1 - nidx[a] : nidx[a];
}

template <class T>
Volume<T> reorient(const Volume<T>& in, const Reorientation& r) {
  CUSEG_CHECK(in.geo.size == r.original.size, "reorient: image size does not match the plan");
  Volume<T> out;
  out.geo = reoriented_geometry(r);
  out.v.resize(in.v.size());
  const auto& ns = out.geo.size;
  int64_t n = 0;
  for (int k = 0; k < ns[2]; ++k)
    for (int j = 0; j < ns[1]; ++j)
      for (int i = 0; i < ns[0]; ++i, ++n) {
        int old[3];
        original_index(r, ns, i, j, k, old);
        out.v[size_t(n)] = in.at(old[0], old[1], old[2]);
      }
  return out;
}

template <class T>
Volume<T> reorient_back(const Volume<T>& in, const Reorientation& r) {
  const Geometry expect = reoriented_geometry(r);
  CUSEG_CHECK(in.geo.size == expect.size, "reorient_back: image size "
                                              << in.geo.size[0] << "x" << in.geo.size[1] << "x"
                                              << in.geo.size[2] << " does not match the plan");
  Volume<T> out;
  out.geo = r.original;  // restored verbatim, so the round trip is exact
  out.v.resize(in.v.size());
  const auto& ns = expect.size;
  int64_t n = 0;
  for (int k = 0; k < ns[2]; ++k)
    for (int j = 0; j < ns[1]; ++j)
      for (int i = 0; i < ns[0]; ++i, ++n) {
        int old[3];
        original_index(r, ns, i, j, k, old);
        out.at(old[0], old[1], old[2]) = in.v[size_t(n)];
      }
  return out;
}

template Volume<float> reorient(const Volume<float>&, const Reorientation&);
template Volume<uint8_t> reorient(const Volume<uint8_t>&, const Reorientation&);
template Volume<float> reorient_back(const Volume<float>&, const Reorientation&);
template Volume<uint8_t> reorient_back(const Volume<uint8_t>&, const Reorientation&);

}  // namespace data
}  // namespace cuseg
