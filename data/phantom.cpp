// Synthetic abdominal CT phantom (see data/phantom.h for the anatomy and conventions).
// Shapes are defined in mm in a patient frame: x toward the patient's Right, y Anterior,
// z Superior (RAS), centred on the volume centre.
#include "cuseg/data/phantom.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cuseg/core/atomic_file.h"
#include "cuseg/core/check.h"
#include "cuseg/core/random.h"

namespace fs = std::filesystem;

namespace cuseg {
namespace data {
namespace {

// Small deterministic RNG on SplitMix64 with portable uniform draws (std distributions differ
// between standard libraries; the phantom must be identical everywhere).
struct SplitMixRng {
  uint64_t s;
  explicit SplitMixRng(uint64_t seed) : s(seed) {}
  double u() { return unit_double(splitmix64(s)); }
  double u(double lo, double hi) { return lo + (hi - lo) * u(); }
};

inline double sq(double x) {
  return x * x;
}
inline double ell2(double x, double y, double a, double b) {
  return sq(x / a) + sq(y / b);
}

struct Lobe {  // one random low-frequency bump of the liver surface
  double wx, wy, wz, phase, amp;
};

}  // namespace

PhantomCase make_phantom(const PhantomConfig& cfg, int case_index) {
  const int X = cfg.size[0], Y = cfg.size[1], Z = cfg.size[2];
  CUSEG_CHECK(X >= 16 && Y >= 16 && Z >= 8,
              "phantom: size must be at least 16x16x8, got " << X << "x" << Y << "x" << Z);
  uint64_t s0 = cfg.seed * 0x2545F4914F6CDD1Dull + uint64_t(case_index) + 1;
  SplitMixRng rng(splitmix64(s0));

  Geometry g;
  g.size = cfg.size;
  g.spacing = {360.0 / X, 360.0 / Y, 192.0 / Z};
  g.direction = {-1, 0, 0, 0, -1, 0, 0, 0, 1};  // RAS
  const double cx0 = (X - 1) / 2.0, cy0 = (Y - 1) / 2.0, cz0 = (Z - 1) / 2.0;
  // World (LPS) of index 0: RAS (-cx0 sx, -cy0 sy, -cz0 sz) -> LPS flips x and y.
  g.origin = {cx0 * g.spacing[0], cy0 * g.spacing[1], -cz0 * g.spacing[2]};
  const double sx = g.spacing[0], sy = g.spacing[1], sz = g.spacing[2];

  // ---- case parameters (mm, HU)
  const double A = rng.u(135, 155), B = rng.u(100, 118);  // body semi-axes
  const double tf = rng.u(10, 24), tm = rng.u(8, 13);     // fat and muscle thickness
  const double Ai = A - tf - tm, Bi = B - tf - tm;        // cavity semi-axes
  const double cav_ph[3] = {rng.u(0, 6.3), rng.u(0, 6.3), rng.u(0, 6.3)};
  const double rv = rng.u(15, 19);            // vertebral body radius
  const double yv = -Bi + rv + rng.u(8, 14);  // vertebral body centre (posterior)
  const double rib_off = rng.u(0, 6.3), rib_ph = rng.u(0, 6.3);
  const double kid_z = rng.u(-45, -20);
  const double spl_z = rng.u(15, 40);
  // Liver: right upper abdomen, lobulated ellipsoid plus a left-lobe extension.
  const double lax = rng.u(68, 82), lay = rng.u(62, 76), laz = rng.u(52, 66);
  const double lcx = Ai - lax + rng.u(2, 10), lcy = rng.u(-5, 15), lcz = rng.u(15, 35);
  const double llx = lcx - lax * rng.u(0.7, 0.9), lly = lcy + rng.u(10, 25);
  const double llz = lcz + rng.u(0, 15);
  const double l2x = lax * rng.u(0.45, 0.6), l2y = lay * rng.u(0.45, 0.6),
               l2z = laz * rng.u(0.4, 0.55);
  Lobe lobes[4];
  for (auto& lb : lobes) {
    const double th = rng.u(0, 3.14159), ph = rng.u(0, 6.28318), f = rng.u(1.5, 3.5);
    lb = {f * std::sin(th) * std::cos(ph), f * std::sin(th) * std::sin(ph), f * std::cos(th),
          rng.u(0, 6.28318), rng.u(0.04, 0.09)};
  }
  const double liver_hu = rng.u(50, 70);
  const double noise_sigma = rng.u(8, 14);

  PhantomCase pc;
  pc.ct = Image::make(g, -1000.f);
  pc.label = LabelMap::make(g, 0);
  float* hu = pc.ct.v.data();
  uint8_t* lab = pc.label.v.data();

  for (int k = 0; k < Z; ++k) {
    const double z = (k - cz0) * sz;
    const double Az = A * (1 + 0.03 * std::sin(z / 60.0)), Bz = B * (1 + 0.03 * std::cos(z / 70.0));
    const bool rib_level = z > -40;
    for (int j = 0; j < Y; ++j) {
      const double y = (j - cy0) * sy;
      for (int i = 0; i < X; ++i) {
        const double x = (i - cx0) * sx;
        const int64_t n = g.index(i, j, k);
        if (ell2(x, y, Az, Bz) > 1) continue;  // air
        double v;
        uint8_t l = 0;
        if (ell2(x, y, Az - tf, Bz - tf) > 1) {
          v = -100;  // subcutaneous fat
        } else if (ell2(x, y, Az - tf - tm, Bz - tf - tm) > 1) {
          v = 50;  // muscle wall
        } else {
          // cavity: bowel/fat mixture, smooth variation
          v = -25 + 40 * std::sin(x / 23 + cav_ph[0]) * std::sin(y / 19 + cav_ph[1]) *
                        std::cos(z / 29 + cav_ph[2]);
          // spleen (left = negative x), upper abdomen
          if (sq((x + Ai - 42) / 30) + sq((y - yv - 30) / 42) + sq((z - spl_z) / 55) <= 1) v = 50;
          // liver
          const double px = (x - lcx) / lax, py = (y - lcy) / lay, pz = (z - lcz) / laz;
          double r2 = px * px + py * py + pz * pz;
          bool liver = false;
          if (r2 < 1.6) {
            double bump = 0;
            for (const auto& lb : lobes)
              bump += lb.amp * std::sin(lb.wx * px + lb.wy * py + lb.wz * pz + lb.phase);
            liver = std::sqrt(r2) < 1 + bump;
          }
          if (!liver) liver = sq((x - llx) / l2x) + sq((y - lly) / l2y) + sq((z - llz) / l2z) <= 1;
          // keep a few mm of cavity inside the muscle wall
          if (liver && ell2(x, y, Ai - 4, Bi - 4) <= 1) {
            v = liver_hu + 4 * std::sin(x / 7 + y / 11) * std::cos(z / 9);
            l = 1;
          }
          // kidneys (both sides of the spine), lower abdomen; they push the liver aside
          for (int side = -1; side <= 1; side += 2)
            if (sq((x - side * (rv + 42)) / 26) + sq((y - yv - 8) / 22) + sq((z - kid_z) / 48) <=
                1) {
              v = 140;
              l = 0;
            }
          // great vessels anterior to the spine
          if (sq(x + 14) + sq(y - yv - rv - 12) <= 11 * 11) v = 150, l = 0;  // aorta (left)
          if (sq(x - 22) + sq(y - yv - rv - 16) <= 10 * 10) v = 120, l = 0;  // IVC (right)
          // paraspinal muscles
          if (sq((std::abs(x) - 34) / 22) + sq((y - yv + 18) / 17) <= 1) v = 50, l = 0;
        }
        // spine: vertebral body, canal, posterior arch
        const double rb = std::sqrt(sq(x) + sq(y - yv));
        if (rb <= rv) v = rb > rv - 3 ? 900 : 350, l = 0;
        const double rc = std::sqrt(sq(x) + sq(y - (yv - rv - 9)));
        if (rc <= 8)
          v = 15, l = 0;
        else if (rc <= 13 && y < yv - rv)
          v = 700, l = 0;
        // ribs: short oblique segments cut by the axial plane, around the wall
        if (rib_level) {
          const double th = std::atan2(y / (Bz - tf - tm / 2), x / (Az - tf - tm / 2));
          const double rr = ell2(x, y, Az - tf - tm / 2, Bz - tf - tm / 2);
          if (std::abs(std::sqrt(rr) - 1) * std::min(Az, Bz) < 6 && std::sin(th) < 0.55) {
            const double m = std::floor((th + 3.2 + rib_off) / 0.45);
            const double c = std::cos(z / 12.0 + m * 1.7 + rib_ph);
            const double dth = std::abs(th + 3.2 + rib_off - (m + 0.5) * 0.45);
            if (c > 0.3 && dth < 0.07) v = 800, l = 0;
          }
        }
        hu[n] = float(v);
        lab[n] = l;
      }
    }
  }

  // ---- tumours inside the final liver mask
  std::vector<int64_t> liver_vox;
  for (int64_t n = 0; n < g.numel(); ++n)
    if (lab[n] == 1) liver_vox.push_back(n);
  const double pick = rng.u();
  const int want = pick < 0.2 ? 0 : pick < 0.55 ? 1 : pick < 0.85 ? 2 : 3;
  for (int t = 0; t < want && !liver_vox.empty(); ++t) {
    // Radius >= 4.2 voxels along every axis so tumours stay learnable at small sizes.
    const double r = rng.u(12, 24);
    double ra[3] = {r * rng.u(0.85, 1.15), r * rng.u(0.85, 1.15), r * rng.u(0.85, 1.15)};
    for (int a = 0; a < 3; ++a) ra[a] = std::max(ra[a], 4.2 * g.spacing[size_t(a)]);
    const double delta = (rng.u() < 0.65 ? -1 : 1) * rng.u(45, 80);
    for (int attempt = 0; attempt < 60; ++attempt) {
      const int64_t c = liver_vox[size_t(rng.u() * double(liver_vox.size())) % liver_vox.size()];
      const int ci = int(c % X), cj = int(c / X % Y), ck = int(c / (int64_t(X) * Y));
      // Accept a centre whose ellipsoid is mostly liver: 26 directions at 0.8 radius.
      int inside = 0;
      for (int dz = -1; dz <= 1; ++dz)
        for (int dy = -1; dy <= 1; ++dy)
          for (int dx = -1; dx <= 1; ++dx) {
            if (!dx && !dy && !dz) continue;
            const double nrm = std::sqrt(double(dx * dx + dy * dy + dz * dz));
            const int qi = ci + int(std::lround(0.8 * dx / nrm * ra[0] / sx));
            const int qj = cj + int(std::lround(0.8 * dy / nrm * ra[1] / sy));
            const int qk = ck + int(std::lround(0.8 * dz / nrm * ra[2] / sz));
            if (qi >= 0 && qj >= 0 && qk >= 0 && qi < X && qj < Y && qk < Z &&
                lab[g.index(qi, qj, qk)] >= 1)
              ++inside;
          }
      if (inside < 24) continue;
      const int bi = int(std::ceil(ra[0] / sx)), bj = int(std::ceil(ra[1] / sy)),
                bk = int(std::ceil(ra[2] / sz));
      for (int k = std::max(0, ck - bk); k <= std::min(Z - 1, ck + bk); ++k)
        for (int j = std::max(0, cj - bj); j <= std::min(Y - 1, cj + bj); ++j)
          for (int i = std::max(0, ci - bi); i <= std::min(X - 1, ci + bi); ++i) {
            const double q =
                sq((i - ci) * sx / ra[0]) + sq((j - cj) * sy / ra[1]) + sq((k - ck) * sz / ra[2]);
            const int64_t n = g.index(i, j, k);
            if (q <= 1 && lab[n] >= 1) {
              lab[n] = 2;
              hu[n] = float(liver_hu + delta * (0.85 + 0.15 * (1 - q)));
            }
          }
      ++pc.tumours;
      break;
    }
  }

  // ---- noise, then integral HU in the CT range
  SplitMixRng nr(splitmix64(s0));
  const int64_t N = g.numel();
  for (int64_t n = 0; n < N; n += 2) {
    const double u1 = std::max(nr.u(), 1e-300), u2 = nr.u();
    const double rad = noise_sigma * std::sqrt(-2 * std::log(u1));
    hu[n] = float(
        std::nearbyint(std::clamp(hu[n] + rad * std::cos(6.283185307 * u2), -1024.0, 3071.0)));
    if (n + 1 < N)
      hu[n + 1] = float(std::nearbyint(
          std::clamp(hu[n + 1] + rad * std::sin(6.283185307 * u2), -1024.0, 3071.0)));
  }
  return pc;
}

void write_phantom_dataset(const std::string& dir, int cases, const PhantomConfig& cfg) {
  CUSEG_CHECK(cases > 0, "phantom: need at least one case, got " << cases);
  try {
    fs::create_directories(fs::path(dir) / "imagesTr");
    fs::create_directories(fs::path(dir) / "labelsTr");
  } catch (const fs::filesystem_error& e) {
    CUSEG_THROW(dir << ": cannot create the dataset folder: " << e.what());
  }
  nlohmann::json j;
  j["name"] = "cuseg-phantom";
  j["description"] = "Synthetic abdominal CT phantom with liver and liver tumours (cuseg)";
  j["reference"] = "generated by cuseg_dataset phantom";
  j["licence"] = "CC0";
  j["tensorImageSize"] = "3D";
  j["modality"] = {{"0", "CT"}};
  j["labels"] = {{"0", "background"}, {"1", "liver"}, {"2", "cancer"}};
  j["numTraining"] = cases;
  j["numTest"] = 0;
  j["test"] = nlohmann::json::array();
  j["seed"] = cfg.seed;
  j["size"] = cfg.size;
  auto& tr = j["training"] = nlohmann::json::array();
  for (int c = 0; c < cases; ++c) {
    const PhantomCase pc = make_phantom(cfg, c);
    const std::string name = "liver_" + std::to_string(c) + ".nii.gz";
    write_image(pc.ct, (fs::path(dir) / "imagesTr" / name).string(), PixelType::Int16);
    write_label(pc.label, (fs::path(dir) / "labelsTr" / name).string());
    tr.push_back({{"image", "./imagesTr/" + name}, {"label", "./labelsTr/" + name}});
  }
  // Written last and crash-safe: its presence means every case above is complete.
  write_file_atomic((fs::path(dir) / "dataset.json").string(), j.dump(4) + "\n");
}

}  // namespace data
}  // namespace cuseg
