// Layer ops: each op's one shape / device check (op::X::check, run by run_op before any
// backend sees the arguments) and the public functions of engine/ops.h, which build the op's
// argument struct and run it on the context's backend (engine/backend.h). No backend code
// here: the CPU functions are in engine/backend_cpu.cpp, the CUDA ones in
// engine/cuda/backend_cuda.cpp.
#include "cuseg/engine/ops.h"

#include <cmath>

#include "cuseg/core/check.h"
#include "cuseg/engine/backend_ops.h"
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
  CUSEG_CHECK(
      labels.dtype() == DType::U8 && labels.is_contiguous() &&
          labels.numel() * logits.dim(1) == logits.numel(),
      "argmax labels " << shape_str(labels.shape()) << " for " << shape_str(logits.shape()));
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
  }
}

std::vector<AdamTensor> AdamStep::kernel_tensors() const {
  std::vector<AdamTensor> ts;
  ts.reserve(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    const Param* p = params[i];
    ts.push_back(
        AdamTensor{p->value.f32(), p->grad.f32(), m[i].f32(), v[i].f32(), p->value.numel()});
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

}  // namespace op

// ---------------------------------------------------------------- public functions

void conv3d_forward(Context& ctx, const Tensor& x, const Tensor& w, const Tensor& b,
                    const Tensor& y, bool relu) {
  run_op(ctx, op::Conv3dForward{x, w, b, y, relu});
}

void conv3d_backward(Context& ctx, const Tensor& x, const Tensor& w, const Tensor& gy,
                     const Tensor& gx, const Tensor& gw, const Tensor& gb) {
  run_op(ctx, op::Conv3dBackward{x, w, gy, gx, gw, gb});
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
  run_op(ctx, op::MaxPool3dForward{x, y});
}

void maxpool3d_backward(Context& ctx, const Tensor& x, const Tensor& y, const Tensor& gy,
                        const Tensor& gx) {
  run_op(ctx, op::MaxPool3dBackward{x, y, gy, gx});
}

void upsample2x_forward(Context& ctx, const Tensor& x, const Tensor& y) {
  run_op(ctx, op::Upsample2xForward{x, y});
}

void upsample2x_backward(Context& ctx, const Tensor& gy, const Tensor& gx) {
  run_op(ctx, op::Upsample2xBackward{gy, gx});
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
  // Checked up front so that a bad call fails before the histogram pass.
  const op::CrossEntropy ce_shape{logits, labels, class_weights, 0.f, grad};
  ce_shape.check(ctx);
  // The histogram also validates the labels; a caller-given normaliser was computed by
  // class_weight_sum on these labels (which validated them).
  const double wsum = normaliser > 0 ? normaliser : class_weight_sum(ctx, labels, class_weights);
  CUSEG_CHECK(wsum > 0, "cross-entropy: total class weight of the batch is zero");
  const double sum =
      run_op(ctx, op::CrossEntropy{logits, labels, class_weights, float(1.0 / wsum), grad});
  return sum / wsum;
}

void argmax_channels(Context& ctx, const Tensor& logits, const Tensor& labels) {
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
