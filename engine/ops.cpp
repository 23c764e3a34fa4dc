// Layer ops: each op's one shape / device check (op::X::check, run by run_op before any
// backend sees the arguments) and the public functions of engine/ops.h, which build the op's
// argument struct and run it on the context's backend (engine/backend.h). No backend code
// here: the CPU functions are in engine/backend_cpu.cpp, the CUDA ones in
// engine/cuda/backend_cuda.cpp.
#include "cuseg/engine/ops.h"

#include <cmath>

#include "cuseg/core/check.h"
#include "cuseg/engine/backend_ops.h"
#include "cuseg/engine/param.h"
#include "cuseg/kernels/cross_entropy.h"

namespace cuseg {

namespace {

void same_device(const Context& ctx, std::initializer_list<const Tensor*> ts) {
  for (const Tensor* t : ts)
    if (t->defined())
      CUSEG_CHECK(t->device() == ctx.device(), "tensor on " << device_name(t->device())
                                                            << ", context on "
                                                            << device_name(ctx.device()));
}

void same_shape(const Tensor& a, const Tensor& b, const char* what) {
  CUSEG_CHECK(a.shape() == b.shape(),
              what << ": shape " << shape_str(a.shape()) << " vs " << shape_str(b.shape()));
}

void is_5d(const Tensor& t, const char* what) {
  CUSEG_CHECK(t.ndim() == 5, what << ": expected a 5-D NCDHW tensor, got " << shape_str(t.shape()));
}

// A bf16 channels-last 5-D tensor (a channel slice is fine).
void is_cl(const Tensor& t, const char* what) {
  CUSEG_CHECK(t.ndim() == 5 && t.dtype() == DType::BF16 && t.is_channels_last(),
              what << ": expected a bf16 channels-last 5-D tensor, got " << dtype_name(t.dtype())
                   << " " << shape_str(t.shape()) << " strides " << shape_str(t.strides()));
}

// One uint8 label per voxel of the logits (fp32 or bf16 argmax output).
void check_argmax_labels(const Tensor& logits, const Tensor& labels) {
  CUSEG_CHECK(
      labels.dtype() == DType::U8 && labels.is_contiguous() &&
          labels.numel() * logits.dim(1) == logits.numel(),
      "argmax labels " << shape_str(labels.shape()) << " for " << shape_str(logits.shape()));
}

bool same_grid(const Tensor& a, const Tensor& b) {
  return a.dim(0) == b.dim(0) && a.dim(2) == b.dim(2) && a.dim(3) == b.dim(3) &&
         a.dim(4) == b.dim(4);
}

// Every offset a FilterMap can produce lies inside t.
void check_filter_map(const Tensor& t, const FilterMap& m, const std::string& what) {
  CUSEG_CHECK(t.defined() && (t.dtype() == DType::F32 || t.dtype() == DType::BF16) &&
                  (t.is_contiguous() || t.is_dense()),
              what << ": expected a dense float32 or bfloat16 tensor");
  const int64_t last = m.count() == 0 ? 0 : m.at(m.cout - 1, m.cin - 1, m.k3 - 1);
  CUSEG_CHECK(m.cout >= 0 && m.cin >= 0 && m.k3 >= 1 && m.s_co >= 0 && m.s_ci >= 0 && m.s_k >= 0 &&
                  last < t.numel(),
              what << ": filter map reaches element " << last << " of a tensor of " << t.numel());
}

}  // namespace

// ---------------------------------------------------------------- checks, one per op
namespace op {

void Conv3dForward::check(const Context& ctx) const {
  same_device(ctx, {&x, &w, &b, &y});
  is_5d(x, "conv3d input");
  is_5d(y, "conv3d output");
  CUSEG_CHECK(w.ndim() == 5 && w.dim(1) == x.dim(1) && w.dim(2) == w.dim(3) &&
                  w.dim(3) == w.dim(4) && w.dim(2) % 2 == 1,
              "conv3d weight " << shape_str(w.shape()) << " for input " << shape_str(x.shape()));
  CUSEG_CHECK(y.dim(0) == x.dim(0) && y.dim(1) == w.dim(0) && y.dim(2) == x.dim(2) &&
                  y.dim(3) == x.dim(3) && y.dim(4) == x.dim(4),
              "conv3d output " << shape_str(y.shape()) << " for input " << shape_str(x.shape()));
  CUSEG_CHECK(!b.defined() || b.numel() == w.dim(0), "conv3d bias " << shape_str(b.shape()));
}

void Conv3dBackward::check(const Context& ctx) const {
  same_device(ctx, {&x, &w, &gy, &gx, &gw, &gb});
  is_5d(x, "conv3d input");
  CUSEG_CHECK(w.ndim() == 5 && w.dim(1) == x.dim(1),
              "conv3d weight " << shape_str(w.shape()) << " for input " << shape_str(x.shape()));
  CUSEG_CHECK(gy.ndim() == 5 && gy.dim(0) == x.dim(0) && gy.dim(1) == w.dim(0) &&
                  gy.dim(2) == x.dim(2) && gy.dim(3) == x.dim(3) && gy.dim(4) == x.dim(4),
              "conv3d grad " << shape_str(gy.shape()) << " for input " << shape_str(x.shape()));
  if (gx.defined()) same_shape(gx, x, "conv3d grad input");
  if (gw.defined()) same_shape(gw, w, "conv3d grad weight");
  CUSEG_CHECK(!gb.defined() || gb.numel() == w.dim(0),
              "conv3d grad bias " << shape_str(gb.shape()));
}

void BiasRelu::check(const Context& ctx) const {
  same_device(ctx, {&y, &b});
  is_5d(y, "bias_relu");
  CUSEG_CHECK(!b.defined() || b.numel() == y.dim(1),
              "bias_relu bias " << shape_str(b.shape()) << " for " << shape_str(y.shape()));
}

void ReluForward::check(const Context& ctx) const {
  same_device(ctx, {&y});
  is_5d(y, "relu");
}

void ReluBackward::check(const Context& ctx) const {
  same_device(ctx, {&y, &g});
  is_5d(y, "relu backward");
  same_shape(y, g, "relu backward");
}

void MaxPool3dForward::check(const Context& ctx) const {
  same_device(ctx, {&x, &y});
  is_5d(x, "maxpool input");
  CUSEG_CHECK(y.ndim() == 5 && y.dim(0) == x.dim(0) && y.dim(1) == x.dim(1) &&
                  y.dim(2) == x.dim(2) / 2 && y.dim(3) == x.dim(3) / 2 && y.dim(4) == x.dim(4) / 2,
              "maxpool output " << shape_str(y.shape()) << " for input " << shape_str(x.shape()));
}

void MaxPool3dBackward::check(const Context& ctx) const {
  same_device(ctx, {&x, &y, &gy, &gx});
  MaxPool3dForward{x, y}.check(ctx);
  same_shape(gx, x, "maxpool grad input");
  same_shape(gy, y, "maxpool grad output");
}

void Upsample2xForward::check(const Context& ctx) const {
  same_device(ctx, {&x, &y});
  is_5d(x, "upsample input");
  CUSEG_CHECK(y.ndim() == 5 && y.dim(0) == x.dim(0) && y.dim(1) == x.dim(1) &&
                  y.dim(2) == 2 * x.dim(2) && y.dim(3) == 2 * x.dim(3) && y.dim(4) == 2 * x.dim(4),
              "upsample output " << shape_str(y.shape()) << " for input " << shape_str(x.shape()));
}

void Upsample2xBackward::check(const Context& ctx) const {
  same_device(ctx, {&gy, &gx});
  is_5d(gx, "upsample grad input");
  CUSEG_CHECK(gy.ndim() == 5 && gy.dim(0) == gx.dim(0) && gy.dim(1) == gx.dim(1) &&
                  gy.dim(2) == 2 * gx.dim(2) && gy.dim(3) == 2 * gx.dim(3) &&
                  gy.dim(4) == 2 * gx.dim(4),
              "upsample grads " << shape_str(gy.shape()) << " / " << shape_str(gx.shape()));
}

void AddInplace::check(const Context& ctx) const {
  same_device(ctx, {&dst, &src});
  is_5d(dst, "add");
  same_shape(dst, src, "add");
}

void LabelHistogram::check(const Context& ctx) const {
  same_device(ctx, {&labels});
  CUSEG_CHECK(labels.dtype() == DType::U8 && labels.is_contiguous(),
              "label histogram: labels must be contiguous uint8, got "
                  << dtype_name(labels.dtype()) << " " << shape_str(labels.shape()));
  CUSEG_CHECK(classes >= 1 && classes <= kCeMaxClasses && counts && bad,
              "cross-entropy: " << classes << " class weights (1.." << kCeMaxClasses << ")");
}

void CrossEntropy::check(const Context& ctx) const {
  same_device(ctx, {&logits, &labels, &grad});
  is_5d(logits, "cross-entropy logits");
  const int K = int(logits.dim(1));
  CUSEG_CHECK(K <= kCeMaxClasses && int(weights.size()) == K,
              "cross-entropy: " << K << " classes, " << weights.size() << " weights");
  CUSEG_CHECK(labels.dtype() == DType::U8 && labels.is_contiguous() && labels.ndim() == 4 &&
                  labels.dim(0) == logits.dim(0) && labels.dim(1) == logits.dim(2) &&
                  labels.dim(2) == logits.dim(3) && labels.dim(3) == logits.dim(4),
              "cross-entropy labels " << shape_str(labels.shape()) << " ("
                                      << dtype_name(labels.dtype()) << ") for logits "
                                      << shape_str(logits.shape()));
  if (grad.defined()) same_shape(grad, logits, "cross-entropy grad");
}

CeArgs CrossEntropy::kernel_args(const float* weights_on_device) const {
  CeArgs c;
  c.logits = logits.vol();
  c.labels = labels.data<uint8_t>();
  c.weights = weights_on_device;
  c.gscale = gscale;
  if (grad.defined()) c.grad = grad.vol();
  return c;
}

void ArgmaxChannels::check(const Context& ctx) const {
  same_device(ctx, {&logits, &labels});
  is_5d(logits, "argmax logits");
  check_argmax_labels(logits, labels);
}

void AdamStep::check(const Context& ctx) const {
  CUSEG_CHECK(
      m.size() == params.size() && v.size() == params.size(),
      "Adam: " << params.size() << " parameters, " << m.size() << " / " << v.size() << " moments");
  for (size_t i = 0; i < params.size(); ++i) {
    const Param* p = params[i];
    CUSEG_CHECK(p->value.device() == ctx.device(),
                "Adam: parameter " << p->name << " on " << device_name(p->value.device()));
    same_device(ctx, {&p->grad, &m[i], &v[i]});
    CUSEG_CHECK(p->value.is_contiguous() && p->grad.shape() == p->value.shape() &&
                    p->grad.is_contiguous() && m[i].shape() == p->value.shape() &&
                    v[i].shape() == p->value.shape(),
                "Adam: parameter " << p->name << " " << shape_str(p->value.shape())
                                   << ": gradient or moments differ in shape or are not packed");
    if (p->copy.defined()) {
      same_device(ctx, {&p->copy});
      check_filter_map(p->copy, p->copy_map, "Adam: bf16 copy of " + p->name);
      CUSEG_CHECK(p->copy.dtype() == DType::BF16 && p->copy_map.count() == p->value.numel(),
                  "Adam: bf16 copy of " << p->name << " does not map the parameter");
    }
  }
}

std::vector<AdamTensor> AdamStep::kernel_tensors() const {
  std::vector<AdamTensor> ts;
  ts.reserve(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    const Param* p = params[i];
    AdamTensor t{p->value.f32(), p->grad.f32(), m[i].f32(), v[i].f32(), p->value.numel()};
    if (p->copy.defined()) {  // bf16: the copy is written in the same pass
      t.copy = p->copy.data<bf16>();
      t.copy_map = p->copy_map;
    }
    ts.push_back(t);
  }
  return ts;
}

void CropOrPad::check(const Context& ctx) const {
  same_device(ctx, {&in, &out});
  is_5d(in, "crop_or_pad input");
  is_5d(out, "crop_or_pad output");
  CUSEG_CHECK(in.dim(0) == out.dim(0) && in.dim(1) == out.dim(1),
              "crop_or_pad: " << shape_str(in.shape()) << " -> " << shape_str(out.shape())
                              << ": batch and channels must agree");
}

void GridAggregate::check(const Context& ctx) const {
  same_device(ctx, {&patches, &starts, &sum, &weight});
  is_5d(patches, "grid_aggregate patches");
  is_5d(sum, "grid_aggregate sum");
  is_5d(weight, "grid_aggregate weight");
  CUSEG_CHECK(
      sum.dim(0) == 1 && sum.dim(1) == patches.dim(1) && weight.dim(0) == 1 && weight.dim(1) == 1 &&
          weight.dim(2) == sum.dim(2) && weight.dim(3) == sum.dim(3) && weight.dim(4) == sum.dim(4),
      "grid_aggregate: sum " << shape_str(sum.shape()) << ", weight " << shape_str(weight.shape())
                             << " for patches " << shape_str(patches.shape())
                             << " (expected 1xCxDxHxW and 1x1xDxHxW)");
  CUSEG_CHECK(
      patches.dim(2) <= sum.dim(2) && patches.dim(3) <= sum.dim(3) && patches.dim(4) <= sum.dim(4),
      "grid_aggregate: patches " << shape_str(patches.shape()) << " larger than the volume "
                                 << shape_str(sum.shape()));
  CUSEG_CHECK(starts.dtype() == DType::I32 && starts.is_contiguous() &&
                  starts.numel() == 3 * patches.dim(0),
              "grid_aggregate: starts " << shape_str(starts.shape()) << " ("
                                        << dtype_name(starts.dtype()) << ") for " << patches.dim(0)
                                        << " patches (expected int32 n x 3)");
}

void GridAggregateFinalize::check(const Context& ctx) const {
  same_device(ctx, {&sum, &weight, &out});
  is_5d(sum, "grid_aggregate_finalize sum");
  same_shape(out, sum, "grid_aggregate_finalize out");
  CUSEG_CHECK(weight.ndim() == 5 && sum.dim(0) == 1 && weight.dim(0) == 1 && weight.dim(1) == 1 &&
                  weight.dim(2) == sum.dim(2) && weight.dim(3) == sum.dim(3) &&
                  weight.dim(4) == sum.dim(4),
              "grid_aggregate_finalize: weight " << shape_str(weight.shape()) << " for sum "
                                                 << shape_str(sum.shape()));
}

void RescaleIntensity::check(const Context& ctx) const {
  same_device(ctx, {&in, &out});
  CUSEG_CHECK(in.dtype() == DType::F32 && out.dtype() == DType::F32 && in.is_contiguous() &&
                  out.is_contiguous() && in.numel() == out.numel(),
              "rescale_intensity: " << shape_str(in.shape()) << " -> " << shape_str(out.shape())
                                    << " (expected contiguous float32 of equal size)");
  CUSEG_CHECK(params.in_max > params.in_min, "rescale_intensity: empty input range ["
                                                 << params.in_min << ", " << params.in_max << "]");
}

namespace {
void check_patch_visit(const PatchVisit& v, const char* what) {
  CUSEG_CHECK(v.src.image && v.src.label, what << ": the visit has no volume");
  CUSEG_CHECK(
      v.src.storage == kStoreF32 || v.src.storage == kStoreBF16 || v.src.storage == kStoreI16,
      what << ": unknown storage " << v.src.storage);
  CUSEG_CHECK(v.num_labels >= 0 && v.num_labels <= kMaxPatchLabels,
              what << ": " << v.num_labels << " labels (at most " << kMaxPatchLabels << ")");
  for (int a = 0; a < 3; ++a)
    CUSEG_CHECK(v.src.size[a] > 0 && v.src.size[a] <= kAffinePatchMaxExtent && v.out[a] > 0 &&
                    v.grid[a] >= v.out[a],
                what << ": grid extents " << v.src.size[a] << " / " << v.out[a] << " / "
                     << v.grid[a] << " on axis " << a);
}
}  // namespace

void AffinePatchPresence::check(const Context&) const {
  check_patch_visit(visit, "affine_patch_presence");
  CUSEG_CHECK(visit.num_labels == 0 || (present && witness),
              "affine_patch_presence: no output arrays");
}

void AffinePatch::check(const Context&) const {
  check_patch_visit(visit, "affine_patch");
  CUSEG_CHECK(job.label_slot >= 0 && job.label_slot < visit.num_labels,
              "affine_patch: label slot " << job.label_slot << " of " << visit.num_labels);
  for (int a = 0; a < 3; ++a)
    CUSEG_CHECK(job.patch_size[a] > 0 && job.patch_size[a] <= visit.grid[a],
                "affine_patch: patch extent " << job.patch_size[a] << " on axis " << a
                                              << " (padded grid " << visit.grid[a] << ")");
  CUSEG_CHECK(job.image_out && job.label_out, "affine_patch: no output buffers");
  CUSEG_CHECK(job.out_type == kOutF32 || job.out_type == kOutBF16,
              "affine_patch: unknown output type " << job.out_type);
}

void Minmax::check(const Context& ctx) const {
  same_device(ctx, {&x});
  CUSEG_CHECK(x.dtype() == DType::F32 && x.is_contiguous() && x.numel() > 0,
              "minmax: " << shape_str(x.shape()) << " (" << dtype_name(x.dtype())
                         << ") (expected a non-empty contiguous float32 tensor)");
}

void Mirror::check(const Context& ctx) const {
  same_device(ctx, {&in, &out});
  is_5d(in, "mirror input");
  same_shape(in, out, "mirror");
  CUSEG_CHECK(axes >= 0 && axes <= kMirrorAll, "mirror: axis mask " << axes << " outside 0..7");
}

void SoftmaxMirrorAccumulate::check(const Context& ctx) const {
  same_device(ctx, {&logits, &acc});
  is_5d(logits, "softmax_mirror_accumulate logits");
  same_shape(logits, acc, "softmax_mirror_accumulate");
  CUSEG_CHECK(axes >= 0 && axes <= kMirrorAll,
              "softmax_mirror_accumulate: axis mask " << axes << " outside 0..7");
}

// ---- bf16 channels-last

void Conv3dForwardBf16::check(const Context& ctx) const {
  same_device(ctx, {&x, &w, &b, &y});
  is_cl(x, "bf16 conv3d input");
  is_cl(y, "bf16 conv3d output");
  is_cl(w, "bf16 conv3d weight copy");
  CUSEG_CHECK(w.is_dense() && w.dim(1) == x.dim(1) && w.dim(0) == y.dim(1) &&
                  w.dim(2) == w.dim(3) && w.dim(3) == w.dim(4) && w.dim(2) % 2 == 1 &&
                  same_grid(x, y),
              "bf16 conv3d weight " << shape_str(w.shape()) << " for " << shape_str(x.shape())
                                    << " -> " << shape_str(y.shape()));
  CUSEG_CHECK(
      !b.defined() || (b.dtype() == DType::BF16 && b.is_contiguous() && b.numel() == w.dim(0)),
      "bf16 conv3d bias copy " << shape_str(b.shape()) << " (" << dtype_name(b.dtype()) << ")");
}

void Conv3dBackwardBf16::check(const Context& ctx) const {
  same_device(ctx, {&x, &w, &gy, &gx, &gw, &gb, &gx_mask});
  is_cl(x, "bf16 conv3d input");
  is_cl(gy, "bf16 conv3d output gradient");
  is_cl(w, "bf16 conv3d weight copy");
  CUSEG_CHECK(w.is_dense() && w.dim(1) == x.dim(1) && w.dim(0) == gy.dim(1) && same_grid(x, gy),
              "bf16 conv3d weight " << shape_str(w.shape()) << " for " << shape_str(x.shape())
                                    << " / gradient " << shape_str(gy.shape()));
  if (gx.defined()) {
    is_cl(gx, "bf16 conv3d input gradient");
    same_shape(gx, x, "bf16 conv3d input gradient");
  }
  if (gx_mask.defined()) {
    CUSEG_CHECK(gx.defined(), "bf16 conv3d: a ReLU mask without an input gradient");
    is_cl(gx_mask, "bf16 conv3d ReLU mask");
    same_shape(gx_mask, x, "bf16 conv3d ReLU mask");
  }
  if (gw.defined())
    CUSEG_CHECK(gw.dtype() == DType::F32 && gw.is_contiguous() && gw.ndim() == 5 &&
                    gw.dim(0) <= w.dim(0) && gw.dim(1) <= w.dim(1) && gw.dim(2) == w.dim(2) &&
                    gw.dim(3) == w.dim(3) && gw.dim(4) == w.dim(4),
                "bf16 conv3d weight gradient " << shape_str(gw.shape()) << " for the copy "
                                               << shape_str(w.shape()));
  if (gb.defined())
    CUSEG_CHECK(gb.dtype() == DType::F32 && gb.is_contiguous() && gb.numel() <= w.dim(0),
                "bf16 conv3d bias gradient " << shape_str(gb.shape()));
}

void MaxPool3dForwardBf16::check(const Context& ctx) const {
  same_device(ctx, {&x, &y});
  is_cl(x, "bf16 maxpool input");
  is_cl(y, "bf16 maxpool output");
  CUSEG_CHECK(y.dim(0) == x.dim(0) && y.dim(1) == x.dim(1) && y.dim(2) == x.dim(2) / 2 &&
                  y.dim(3) == x.dim(3) / 2 && y.dim(4) == x.dim(4) / 2,
              "bf16 maxpool output " << shape_str(y.shape()) << " for " << shape_str(x.shape()));
}

void MaxPool3dBackwardBf16::check(const Context& ctx) const {
  same_device(ctx, {&x, &gy, &gadd, &gx});
  is_cl(x, "bf16 maxpool input");
  is_cl(gy, "bf16 maxpool output gradient");
  is_cl(gx, "bf16 maxpool input gradient");
  same_shape(gx, x, "bf16 maxpool input gradient");
  CUSEG_CHECK(gy.dim(0) == x.dim(0) && gy.dim(1) == x.dim(1) && gy.dim(2) == x.dim(2) / 2 &&
                  gy.dim(3) == x.dim(3) / 2 && gy.dim(4) == x.dim(4) / 2,
              "bf16 maxpool gradient " << shape_str(gy.shape()) << " for " << shape_str(x.shape()));
  if (gadd.defined()) {
    is_cl(gadd, "bf16 maxpool added gradient");
    same_shape(gadd, x, "bf16 maxpool added gradient");
  }
}

MaxPoolClBackward MaxPool3dBackwardBf16::kernel_args() const {
  MaxPoolClBackward a;
  a.x = x.cl<const bf16>();
  a.gy = gy.cl<const bf16>();
  if (gadd.defined()) a.gadd = gadd.cl<const bf16>();
  a.gx = gx.cl<bf16>();
  a.relu_mask = relu_mask;
  return a;
}

void Upsample2xForwardBf16::check(const Context& ctx) const {
  same_device(ctx, {&x, &y});
  is_cl(x, "bf16 upsample input");
  is_cl(y, "bf16 upsample output");
  CUSEG_CHECK(y.dim(0) == x.dim(0) && y.dim(1) == x.dim(1) && y.dim(2) == 2 * x.dim(2) &&
                  y.dim(3) == 2 * x.dim(3) && y.dim(4) == 2 * x.dim(4),
              "bf16 upsample output " << shape_str(y.shape()) << " for " << shape_str(x.shape()));
}

void Upsample2xBackwardBf16::check(const Context& ctx) const {
  same_device(ctx, {&gy, &gx, &mask});
  is_cl(gy, "bf16 upsample output gradient");
  is_cl(gx, "bf16 upsample input gradient");
  CUSEG_CHECK(gy.dim(0) == gx.dim(0) && gy.dim(1) == gx.dim(1) && gy.dim(2) == 2 * gx.dim(2) &&
                  gy.dim(3) == 2 * gx.dim(3) && gy.dim(4) == 2 * gx.dim(4),
              "bf16 upsample grads " << shape_str(gy.shape()) << " / " << shape_str(gx.shape()));
  if (mask.defined()) {
    is_cl(mask, "bf16 upsample ReLU mask");
    same_shape(mask, gx, "bf16 upsample ReLU mask");
  }
}

void CrossEntropyBf16::check(const Context& ctx) const {
  same_device(ctx, {&logits, &labels, &grad});
  is_cl(logits, "bf16 cross-entropy logits");
  const int K = int(logits.dim(1));
  CUSEG_CHECK(K <= kCeMaxClasses && int(weights.size()) == K,
              "cross-entropy: " << K << " classes, " << weights.size() << " weights");
  CUSEG_CHECK(labels.dtype() == DType::U8 && labels.is_contiguous() && labels.ndim() == 4 &&
                  labels.dim(0) == logits.dim(0) && labels.dim(1) == logits.dim(2) &&
                  labels.dim(2) == logits.dim(3) && labels.dim(3) == logits.dim(4),
              "cross-entropy labels " << shape_str(labels.shape()) << " ("
                                      << dtype_name(labels.dtype()) << ") for logits "
                                      << shape_str(logits.shape()));
  if (grad.defined()) {
    is_cl(grad, "bf16 cross-entropy gradient");
    same_shape(grad, logits, "bf16 cross-entropy gradient");
  }
}

CeArgsCL CrossEntropyBf16::kernel_args(const float* weights_on_device) const {
  CeArgsCL c;
  c.logits = logits.cl<const bf16>();
  c.labels = labels.data<uint8_t>();
  c.weights = weights_on_device;
  c.gscale = gscale;
  if (grad.defined()) c.grad = grad.cl<bf16>();
  return c;
}

void ArgmaxChannelsBf16::check(const Context& ctx) const {
  same_device(ctx, {&logits, &labels});
  is_cl(logits, "bf16 argmax logits");
  check_argmax_labels(logits, labels);
}

void ConvertLayout::check(const Context& ctx) const {
  same_device(ctx, {&src, &dst});
  is_5d(src, "convert source");
  is_5d(dst, "convert destination");
  CUSEG_CHECK(same_grid(src, dst), "convert " << shape_str(src.shape()) << " -> "
                                              << shape_str(dst.shape()) << ": grids differ");
  const bool s16 = src.dtype() == DType::BF16, d16 = dst.dtype() == DType::BF16;
  CUSEG_CHECK(
      (s16 || src.dtype() == DType::F32) && (d16 || dst.dtype() == DType::F32) && (s16 || d16),
      "convert " << dtype_name(src.dtype()) << " -> " << dtype_name(dst.dtype())
                 << ": one side must be bfloat16 (float32 <-> bfloat16 channels-last)");
  if (s16) is_cl(src, "convert source");
  if (d16) is_cl(dst, "convert destination");
  CUSEG_CHECK(d16 ? src.dim(1) <= dst.dim(1) : dst.dim(1) <= src.dim(1),
              "convert " << shape_str(src.shape()) << " -> " << shape_str(dst.shape())
                         << ": channels can only be padded (into bf16) or dropped (into fp32)");
}

void FilterCopy::check(const Context& ctx) const {
  same_device(ctx, {&src, &dst});
  check_filter_map(src, src_map, "filter copy source");
  check_filter_map(dst, dst_map, "filter copy destination");
  CUSEG_CHECK(
      src_map.cout == dst_map.cout && src_map.cin == dst_map.cin && src_map.k3 == dst_map.k3,
      "filter copy: maps of different extents");
  CUSEG_CHECK(!accumulate || dst.dtype() == DType::F32,
              "filter copy: accumulation needs a float32 destination");
}

}  // namespace op

// ---------------------------------------------------------------- public functions

size_t conv3d_forward_scratch_bytes(Device device, DType dtype, const Shape& x, int64_t cout,
                                    int64_t k) {
  if (device != Device::CPU || dtype != DType::BF16) return 0;
  // engine/conv_cl_cpu.cpp: fp32 x, w, b, y, each a pool block (512-byte rounded).
  auto block = [](int64_t floats) {
    const size_t b = size_t(floats) * sizeof(float), a = MemoryPool::kAlign;
    return (b + a - 1) / a * a;
  };
  const int64_t vox = x[0] * x[2] * x[3] * x[4];
  return block(x[1] * vox) + block(cout * x[1] * k * k * k) + block(cout) + block(cout * vox);
}

// The bf16 channels-last ops are chosen by the input's dtype.
void conv3d_forward(Context& ctx, const Tensor& x, const Tensor& w, const Tensor& b,
                    const Tensor& y, bool relu) {
  if (x.dtype() == DType::BF16) return run_op(ctx, op::Conv3dForwardBf16{x, w, b, y, relu});
  run_op(ctx, op::Conv3dForward{x, w, b, y, relu});
}

void conv3d_backward(Context& ctx, const Tensor& x, const Tensor& w, const Tensor& gy,
                     const Tensor& gx, const Tensor& gw, const Tensor& gb,
                     const Tensor& gx_relu_mask) {
  if (x.dtype() == DType::BF16)
    return run_op(ctx, op::Conv3dBackwardBf16{x, w, gy, gx, gw, gb, gx_relu_mask});
  run_op(ctx, op::Conv3dBackward{x, w, gy, gx, gw, gb});
  if (gx_relu_mask.defined()) {
    CUSEG_CHECK(gx.defined(), "conv3d_backward: a ReLU mask without an input gradient");
    run_op(ctx, op::ReluBackward{gx_relu_mask, gx});
  }
}

void bias_relu_forward(Context& ctx, const Tensor& y, const Tensor& b, bool relu) {
  run_op(ctx, op::BiasRelu{y, b, relu});
}

void relu_forward(Context& ctx, const Tensor& y) {
  run_op(ctx, op::ReluForward{y});
}

void relu_backward(Context& ctx, const Tensor& y, const Tensor& g) {
  run_op(ctx, op::ReluBackward{y, g});
}

void maxpool3d_forward(Context& ctx, const Tensor& x, const Tensor& y) {
  if (x.dtype() == DType::BF16) return run_op(ctx, op::MaxPool3dForwardBf16{x, y});
  run_op(ctx, op::MaxPool3dForward{x, y});
}

void maxpool3d_backward(Context& ctx, const Tensor& x, const Tensor& y, const Tensor& gy,
                        const Tensor& gx, const Tensor& gadd, bool relu_mask) {
  if (x.dtype() == DType::BF16)
    return run_op(ctx, op::MaxPool3dBackwardBf16{x, gy, gadd, gx, relu_mask});
  run_op(ctx, op::MaxPool3dBackward{x, y, gy, gx});
  if (gadd.defined()) run_op(ctx, op::AddInplace{gx, gadd});
  if (relu_mask) run_op(ctx, op::ReluBackward{x, gx});
}

void upsample2x_forward(Context& ctx, const Tensor& x, const Tensor& y) {
  if (x.dtype() == DType::BF16) return run_op(ctx, op::Upsample2xForwardBf16{x, y});
  run_op(ctx, op::Upsample2xForward{x, y});
}

void upsample2x_backward(Context& ctx, const Tensor& gy, const Tensor& gx,
                         const Tensor& relu_mask) {
  if (gy.dtype() == DType::BF16) return run_op(ctx, op::Upsample2xBackwardBf16{gy, gx, relu_mask});
  run_op(ctx, op::Upsample2xBackward{gy, gx});
  if (relu_mask.defined()) run_op(ctx, op::ReluBackward{relu_mask, gx});
}

void convert(Context& ctx, const Tensor& src, const Tensor& dst) {
  run_op(ctx, op::ConvertLayout{src, dst});
}

void refresh_weight_copy(Context& ctx, Param& p) {
  CUSEG_CHECK(p.copy.defined(), "refresh_weight_copy: parameter " << p.name << " has no copy");
  const int64_t n = p.value.numel();
  const FilterMap master = p.value.ndim() == 5
                               ? filter_map_master(int(p.value.dim(0)), int(p.value.dim(1)),
                                                   int(n / (p.value.dim(0) * p.value.dim(1))))
                               : filter_map_master(int(n), 1, 1);
  run_op(ctx, op::FilterCopy{p.value, master, p.copy, p.copy_map, false});
}

void add_inplace(Context& ctx, const Tensor& dst, const Tensor& src) {
  run_op(ctx, op::AddInplace{dst, src});
}

double class_weight_sum(Context& ctx, const Tensor& labels,
                        const std::vector<float>& class_weights) {
  // The histogram op checks the labels (device, uint8, packed) and the class count.
  const int K = int(class_weights.size());
  int64_t counts[kCeMaxClasses] = {0};
  int bad = -1;
  const bool ok = run_op(ctx, op::LabelHistogram{labels, K, counts, &bad});
  CUSEG_CHECK(ok, "cross-entropy: label value " << bad << " >= number of classes " << K);
  double wsum = 0;
  for (int k = 0; k < K; ++k) wsum += double(class_weights[k]) * double(counts[k]);
  return wsum;
}

double weighted_cross_entropy(Context& ctx, const Tensor& logits, const Tensor& labels,
                              const std::vector<float>& class_weights, const Tensor& grad,
                              double normaliser) {
  const bool bf16 = logits.dtype() == DType::BF16;
  // Checked up front so that a bad call fails before the histogram pass.
  if (bf16)
    op::CrossEntropyBf16{logits, labels, class_weights, 0.f, grad}.check(ctx);
  else
    op::CrossEntropy{logits, labels, class_weights, 0.f, grad}.check(ctx);
  // The histogram also validates the labels; a caller-given normaliser was computed by
  // class_weight_sum on these labels (which validated them).
  const double wsum = normaliser > 0 ? normaliser : class_weight_sum(ctx, labels, class_weights);
  CUSEG_CHECK(wsum > 0, "cross-entropy: total class weight of the batch is zero");
  const float gscale = float(1.0 / wsum);
  const double sum =
      bf16 ? run_op(ctx, op::CrossEntropyBf16{logits, labels, class_weights, gscale, grad})
           : run_op(ctx, op::CrossEntropy{logits, labels, class_weights, gscale, grad});
  return sum / wsum;
}

void argmax_channels(Context& ctx, const Tensor& logits, const Tensor& labels) {
  if (logits.dtype() == DType::BF16) return run_op(ctx, op::ArgmaxChannelsBf16{logits, labels});
  run_op(ctx, op::ArgmaxChannels{logits, labels});
}

void crop_or_pad(Context& ctx, const Tensor& in, const Tensor& out, const CropOrPadParams& p) {
  run_op(ctx, op::CropOrPad{in, out, p});
}

void grid_aggregate(Context& ctx, const Tensor& patches, const Tensor& starts, const Tensor& sum,
                    const Tensor& weight, const GridAggregateParams& p) {
  run_op(ctx, op::GridAggregate{patches, starts, sum, weight, p});
}

void grid_aggregate_finalize(Context& ctx, const Tensor& sum, const Tensor& weight,
                             const Tensor& out) {
  run_op(ctx, op::GridAggregateFinalize{sum, weight, out});
}

void rescale_intensity(Context& ctx, const Tensor& in, const Tensor& out, const RescaleParams& p) {
  run_op(ctx, op::RescaleIntensity{in, out, p});
}

void affine_patch_presence(Context& ctx, const PatchVisit& v, uint8_t* present, int32_t* witness) {
  run_op(ctx, op::AffinePatchPresence{v, present, witness});
}

void affine_patch(Context& ctx, const PatchVisit& v, const PatchJob& job) {
  run_op(ctx, op::AffinePatch{v, job});
}

std::pair<float, float> minmax(Context& ctx, const Tensor& x) {
  return run_op(ctx, op::Minmax{x});
}

void mirror(Context& ctx, const Tensor& in, const Tensor& out, int axes) {
  run_op(ctx, op::Mirror{in, out, axes});
}

void softmax_mirror_accumulate(Context& ctx, const Tensor& logits, const Tensor& acc, int axes,
                               float scale) {
  run_op(ctx, op::SoftmaxMirrorAccumulate{logits, acc, axes, scale});
}

}  // namespace cuseg
