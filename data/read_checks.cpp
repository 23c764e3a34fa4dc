// The readers' checks that need no ITK (data/image.h: ReadLimits, check_geometry): compiled in
// every build, so builds without image I/O still share the geometry and memory rules.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <fstream>

#include "cuseg/core/check.h"
#include "cuseg/data/image.h"

namespace cuseg {
namespace data {

uint64_t machine_memory_bytes() {
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  uint64_t m = pages > 0 && page > 0 ? uint64_t(pages) * uint64_t(page) : UINT64_MAX;
  for (int res : {RLIMIT_AS, RLIMIT_DATA}) {
    struct rlimit rl {};
    if (getrlimit(res, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
      m = std::min<uint64_t>(m, uint64_t(rl.rlim_cur));
  }
  // A container's limit (cgroup v2): "max" or a byte count.
  std::ifstream cg("/sys/fs/cgroup/memory.max");
  uint64_t c = 0;
  if (cg >> c && c > 0) m = std::min(m, c);
  return m;
}

double read_peak_bytes(double voxels, int component_bytes, int out_bytes, int result_bytes,
                       bool nifti) {
  const double c = std::max(component_bytes, 1);
  // ITK converts through a buffer in the file's type unless the types match in size and kind;
  // counting it always overestimates by at most c per voxel.
  return voxels * (double(out_bytes) + c + (nifti ? c : 0.0) + double(result_bytes));
}

// Direction tolerance 1e-3 on every entry of D^T D - I: directions stored as float32 (NIfTI
// qform/sform) are orthonormal to ~1e-7, and DICOM ImageOrientationPatient, a decimal string
// that scanners often write with 5-6 significant digits, to ~1e-5; 1e-3 (about 0.06 degrees of
// skew) accepts all of those and refuses any real shear or scaling, for which the orientation
// code, reorientation and the mask's geometry would be meaningless.
void check_geometry(const Geometry& g, const std::string& what) {
  for (int a = 0; a < 3; ++a)
    CUSEG_REQUIRE(g.size[a] >= 1, what << ": extent " << g.size[0] << "x" << g.size[1] << "x"
                                       << g.size[2]
                                       << " is not a volume; expected every extent >= 1");
  for (int a = 0; a < 3; ++a)
    CUSEG_REQUIRE(std::isfinite(g.spacing[a]) && g.spacing[a] > 0,
                  what << ": voxel spacing " << g.spacing[0] << " x " << g.spacing[1] << " x "
                       << g.spacing[2] << " mm; expected finite spacings > 0");
  for (int a = 0; a < 3; ++a)
    CUSEG_REQUIRE(std::isfinite(g.origin[a]), what << ": origin (" << g.origin[0] << ", "
                                                   << g.origin[1] << ", " << g.origin[2]
                                                   << ") mm; expected finite coordinates");
  double worst = 0;
  bool finite = true;
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) {
      double dot = 0;  // column i . column j
      for (int r = 0; r < 3; ++r) dot += g.direction[3 * r + i] * g.direction[3 * r + j];
      finite = finite && std::isfinite(dot);
      worst = std::max(worst, std::fabs(dot - (i == j ? 1.0 : 0.0)));
    }
  CUSEG_REQUIRE(finite && worst <= 1e-3,
                what << ": direction matrix [" << g.direction[0] << " " << g.direction[1] << " "
                     << g.direction[2] << "; " << g.direction[3] << " " << g.direction[4] << " "
                     << g.direction[5] << "; " << g.direction[6] << " " << g.direction[7] << " "
                     << g.direction[8] << "] is not orthonormal (largest error of D^T D - I "
                     << worst << "); expected unit, orthogonal axes");
}

}  // namespace data
}  // namespace cuseg
