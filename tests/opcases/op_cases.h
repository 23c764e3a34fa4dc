// One case list per op: the problem shapes, the tolerances with the reason for each, and the
// FLOPs / bytes of a call, declared once and read by
//   - the CUDA parity tests (tests/cuda/test_parity.cpp): every case marked kParity, CUDA
//     against the CPU backend, with `parity` tolerances;
//   - the CPU finite-difference gradient checks (tests/cpu/test_gradcheck.cpp): every case
//     marked kGradcheck, with `gradcheck` tolerances and step;
//   - the micro benchmarks (bench/bench_kernels.cpp): every case marked kBench, named
//     <op>/<label>_<shape>, with the FLOPs and minimum bytes given here.
// Test and benchmark data, not product: a static library under tests/ that tests and bench
// link (the product libraries never include it; scripts/check_layers.py refuses that).
// Shapes are NCDHW extents; "odd" means an odd extent, "awkward" a medical size that divides
// by nothing convenient (33 slices, 200 slices, 4097 voxels).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "cuseg/engine/tensor.h"
#include "cuseg/kernels/grid_aggregate.h"
#include "cuseg/kernels/rescale_intensity.h"

namespace cuseg {
namespace opcases {

// Which checks and benchmarks use a case (bit set).
enum Use : unsigned {
  kParity = 1u << 0,       // CUDA vs CPU parity test
  kGradcheck = 1u << 1,    // CPU finite-difference gradient check
  kBench = 1u << 2,        // micro benchmark (CPU and CUDA variants)
  kCpuHeavy = 1u << 3,     // with kBench: the CPU variant only with --cpu_heavy (seconds a call)
  kRepeat = 1u << 4,       // parity: the same problem twice on the device gives the same bits
  kTies = 1u << 5,         // parity: inputs with many ties (max pooling's tie rule)
  kFusedUnread = 1u << 6,  // parity: fused conv + bias + ReLU into never-written memory (initcheck)
  kNaN = 1u << 7,          // parity: NaN inputs (max pooling propagates them)
};

// |got - ref| <= atol + rtol * |ref| element-wise; with atol_of_max the atol is a fraction of
// max |ref| over the compared tensor. `why` says where the numbers come from.
struct Tolerance {
  double atol = 0, rtol = 0;
  bool atol_of_max = false;
  const char* why = "";
  double atol_for(double max_abs_ref) const { return atol_of_max ? atol * max_abs_ref : atol; }
};

// Finite-difference check: central difference with step eps, then a Tolerance.
struct FdCheck {
  float eps = 1e-2f;
  Tolerance tol;
};

struct Dims {
  int n = 1, c = 1, d = 1, h = 1, w = 1;
  Shape shape() const { return {n, c, d, h, w}; }
  int64_t numel() const { return int64_t(n) * c * d * h * w; }
  std::string str() const;  // "2x3x5x7x4"
};

// Cases of one op, each with its label and uses.
template <class Case>
std::vector<Case> with_use(const std::vector<Case>& cases, unsigned use) {
  std::vector<Case> out;
  for (const Case& c : cases)
    if (c.use & use) out.push_back(c);
  return out;
}

// ---------------------------------------------------------------- conv3d (forward, backward)
struct ConvCase {
  std::string label;
  Dims x;  // input
  int cout = 1, k = 3;
  unsigned use = 0;
  Shape w_shape() const { return {cout, x.c, k, k, k}; }
  Shape y_shape() const { return {x.n, cout, x.d, x.h, x.w}; }
  double macs() const;
  double flops_fwd() const { return 2 * macs(); }
  double bytes_fwd() const;                        // x, w, y, bias
  double flops_bwd() const { return 4 * macs(); }  // data + filter gradients
  double bytes_bwd() const;  // x, w, gy read; gx written; gw read + written; gb
  std::string name() const;  // bench name tail: <label>_n2_1x32_k3_s96 / the shape
};
struct ConvSpec {
  std::vector<ConvCase> cases;
  Tolerance parity;   // forward, data, weight and bias gradients
  FdCheck gradcheck;  // input, weight and bias
};
const ConvSpec& conv3d();

// ---------------------------------------------------------------- element-wise
// ReLU forward / backward, add_inplace, bias + ReLU: one list of volumes.
struct VolCase {
  std::string label;
  Dims x;
  unsigned use = 0;
};
struct ElementwiseSpec {
  std::vector<VolCase> cases;
  Tolerance parity;
  FdCheck gradcheck;  // ReLU
  // Bytes of one call on n floats (read + write of every element involved).
  static double relu_fwd_bytes(double n) { return 8 * n; }
  static double relu_bwd_bytes(double n) { return 12 * n; }
  static double add_bytes(double n) { return 12 * n; }
};
const ElementwiseSpec& elementwise();

// ---------------------------------------------------------------- max pooling (2, stride 2)
struct PoolSpec {
  std::vector<VolCase> cases;  // input volumes (extents >= 2: floor(1 / 2) would be empty)
  Tolerance parity;
  FdCheck gradcheck;
  static Shape y_shape(const Dims& x) { return {x.n, x.c, x.d / 2, x.h / 2, x.w / 2}; }
  static double fwd_bytes(const Dims& x);  // read x, write y
  static double bwd_bytes(const Dims& x);  // read x, gy; write gx
};
const PoolSpec& maxpool3d();

// ---------------------------------------------------------------- trilinear x2 upsampling
struct UpsampleSpec {
  std::vector<VolCase> cases;  // input volumes
  Tolerance parity;
  FdCheck gradcheck;
  static Shape y_shape(const Dims& x) { return {x.n, x.c, 2 * x.d, 2 * x.h, 2 * x.w}; }
  static double bytes(const Dims& x);  // read the smaller, write the larger (either way)
};
const UpsampleSpec& upsample2x();

// ---------------------------------------------------------------- loss head
// Weighted cross-entropy (loss + gradient), argmax over channels and the label histogram:
// logits [N, K, D, H, W] (x.c = K classes), labels [N, D, H, W].
struct LogitsSpec {
  std::vector<VolCase> cases;
  Tolerance parity_loss;  // relative (rtol) on the scalar loss
  Tolerance parity_grad;  // the gradient
  Tolerance parity_argmax;
  FdCheck gradcheck;                          // d loss / d logits
  static double ce_bytes(const Dims& x);      // read logits + labels, write the gradient
  static double argmax_bytes(const Dims& x);  // read logits, write labels
  // Class weights for K classes: (1, 2, 3, 1, 2, 3, ...) for parity; the recipe's (1, 1, 3)
  // for K = 3 in the benchmarks and gradient checks.
  static std::vector<float> parity_weights(int k);
};
const LogitsSpec& logits();

// ---------------------------------------------------------------- Adam (multi-tensor)
struct AdamCase {
  std::string label;
  std::vector<int64_t> sizes;  // parameter tensor sizes (elements)
  std::vector<int> filters;    // or: all parameters of a U-Net with these filters
  unsigned use = 0;
  double bytes() const;  // reads p, g, m, v; writes p, m, v: 28 bytes per parameter
  int64_t parameters() const;
};
struct AdamSpec {
  std::vector<AdamCase> cases;
  int parity_steps = 3;
  Tolerance parity_p, parity_m, parity_v;
};
const AdamSpec& adam();

// ---------------------------------------------------------------- CropOrPad
struct CropCase {
  std::string label;
  Dims in;
  int d = 1, h = 1, w = 1;  // target extents
  unsigned use = 0;
  Shape out_shape() const { return {in.n, in.c, d, h, w}; }
  double bytes() const;  // write every output voxel, read at most as many
};
struct CropSpec {
  std::vector<CropCase> cases;
  Tolerance parity;
};
const CropSpec& crop_or_pad();

// ---------------------------------------------------------------- grid aggregation
// A C-channel D x H x W volume covered by torchio's grid of pd x ph x pw patches with the
// given overlap (data::grid_locations' rule: starts 0, step, ... plus size - patch).
struct GridCase {
  std::string label;
  int c = 1, d = 1, h = 1, w = 1, pd = 1, ph = 1, pw = 1, overlap = 0;
  int bench_patches = 0;  // kBench: aggregate this many patches of the grid per call
  unsigned use = 0;
  // Patch origins (z, y, x) of the whole grid, patch order z, then y, then x fastest.
  std::vector<int> grid_starts() const;
  Shape sum_shape() const { return {1, c, d, h, w}; }
  Shape weight_shape() const { return {1, 1, d, h, w}; }
  Shape patches_shape(int n) const { return {n, c, pd, ph, pw}; }
  // Per patch voxel: read C patch values, read + write C sums and the weight.
  double bytes(int patches) const;
  double finalize_bytes() const;  // read sum and weight, write out
  std::string str() const;        // "3x20x17x9_p8x8x5_o2"
};
struct GridSpec {
  std::vector<GridCase> cases;
  std::vector<AggregateMode> modes;
  // crop and average: exact; hann: sum and weight, and the finalised volume; gaussian.
  Tolerance parity_exact, parity_hann, parity_hann_out, parity_gaussian;
  static const char* mode_name(AggregateMode m);
};
const GridSpec& grid_aggregate();

// ---------------------------------------------------------------- intensity rescale (+ min/max)
struct RescaleCase {
  std::string label;
  Shape shape;
  unsigned use = 0;
  double bytes() const { return 8 * double(shape_numel(shape)); }
};
struct RescaleSpec {
  std::vector<RescaleCase> cases;
  std::vector<RescaleParams> ranges;  // parity: every case is rescaled with each of these
  Tolerance parity;                   // the rescaled values
  Tolerance parity_minmax;            // the device min / max reduction
};
const RescaleSpec& rescale_intensity();

// ---------------------------------------------------------------- test-time mirroring
// mirror and softmax_mirror_accumulate (kernels/mirror.h) over every axis mask 0..7: logits
// uniform in [-8, 8], accumulated onto values uniform in [-1, 1] with scale 1/8.
struct MirrorCase {
  std::string label;
  Dims dims;
  unsigned use = 0;
};
struct MirrorSpec {
  std::vector<MirrorCase> cases;
  Tolerance parity_mirror;   // out of mirror
  Tolerance parity_softmax;  // acc after softmax_mirror_accumulate
};
const MirrorSpec& mirror();

// ---------------------------------------------------------------- fused training patch
// One training patch (kernels/affine_patch.h) from a (w, h, d) volume stored as `storage`
// (PatchStorage), written as `out` (PatchOutType). Parity cases use the test volume of
// tests/patch_fixture.h (odd extents, oblique direction, both label table modes), bench cases
// a phantom of the recipe's size.
struct AffinePatchCase {
  std::string label;
  int w = 1, h = 1, d = 1;     // volume extents (i, j, k)
  int pw = 1, ph = 1, pd = 1;  // patch extents (i, j, k)
  int storage = 0, out = 0;
  unsigned use = 0;
  // Each patch voxel written once (image + label) and, at scale ~1, one input voxel's image and
  // label read for it.
  double bytes() const;
  std::string str() const;  // "256x256x200_p96x96x96_i16_f32"
};
struct AffinePatchSpec {
  std::vector<AffinePatchCase> cases;
  Tolerance parity;
};
const AffinePatchSpec& affine_patch();

}  // namespace opcases
}  // namespace cuseg
