// Segmentation metrics (LiTS conventions): liver = label >= 1, tumour = label == 2.
//
// Empty-mask policy (stated once, used everywhere):
//  - Dice: both masks empty -> 1 (perfect agreement on "nothing"); one empty -> 0.
//  - Surface distances (HD95, ASSD): both empty -> 0 mm; exactly one empty -> undefined,
//    returned as std::nullopt and printed/serialised as null (never +inf or NaN).
// Surfaces: a surface voxel is a foreground voxel with at least one 6-neighbour that is
// background or outside the volume (medpy: mask XOR binary_erosion, border value 0).
// Distances are Euclidean between voxel centres in mm (spacing-aware exact EDT).
// HD95 = 95th percentile (numpy linear interpolation) of the union of both directed
// surface-distance sets (medpy hd95); ASSD = mean of the union of both directed sets, i.e.
// (sum a->b + sum b->a) / (|surface a| + |surface b|) (medpy 0.5 assd, LiTS ASSD; NOT the mean
// of the two directed means). Cross-checked against medpy: tests/reference/metrics/. Volumes in mL
// (voxel volume from spacing, 1 mL = 1000 mm^3). Tumour count = number of 26-connected components
// of the tumour mask.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "cuseg/data/image.h"

namespace cuseg {
namespace data {

using Mask = std::vector<uint8_t>;  // 0/1, i fastest, same size as its geometry

Mask mask_of(const LabelMap& lab, int min_label, int max_label = 255);  // min <= l <= max
inline Mask liver_mask(const LabelMap& lab) {
  return mask_of(lab, 1);
}
inline Mask tumour_mask(const LabelMap& lab) {
  return mask_of(lab, 2, 2);
}

double dice(const Mask& a, const Mask& b);
struct SurfaceDistances {
  std::optional<double> hd95_mm, assd_mm, hd_mm;
};
SurfaceDistances surface_distances(const Mask& a, const Mask& b, const Geometry& g);
int count_components(const Mask& m, const Geometry& g);  // 26-connectivity
// Voxel counts of the 26-connected components, largest first.
std::vector<int64_t> component_sizes(const Mask& m, const Geometry& g);
// Whether any voxel of the mask lies on the first or last index of some axis: the structure
// may then continue outside the field of view, so its volume is a lower bound.
bool touches_border(const Mask& m, const Geometry& g);

// Size statistics of one structure (a mask): voxel count, volume in mL (voxel volume from the
// spacing), 26-connected components (for the tumour mask: the lesions) and the largest one,
// and the border flag above.
struct StructureStats {
  int64_t voxels = 0;
  double ml = 0;
  int components = 0;
  int64_t largest_voxels = 0;
  double largest_ml = 0;
  bool touches_border = false;
};
StructureStats structure_stats(const Mask& m, const Geometry& g);
int64_t count(const Mask& m);

struct CaseMetrics {
  std::string id;
  double dice_liver = 0, dice_tumour = 0;
  SurfaceDistances liver_surface, tumour_surface;
  double liver_ml_pred = 0, liver_ml_ref = 0, tumour_ml_pred = 0, tumour_ml_ref = 0;
  int tumours_pred = 0, tumours_ref = 0;
  // For global Dice: intersection and sizes (voxels).
  int64_t liver_inter = 0, liver_sum = 0, tumour_inter = 0, tumour_sum = 0;
};
CaseMetrics evaluate_case(const LabelMap& pred, const LabelMap& ref, const std::string& id = "",
                          bool surfaces = true);

// Global Dice over cases (LiTS "Dice global"): 2 sum|A & B| / (sum|A| + sum|B|); 1 if all empty.
struct GlobalDice {
  double liver = 1, tumour = 1;
};
GlobalDice global_dice(const std::vector<CaseMetrics>& cases);

// "null" for nullopt, otherwise the number (for reports and JSON).
std::string fmt_opt(const std::optional<double>& v, int precision = 3);

}  // namespace data
}  // namespace cuseg
