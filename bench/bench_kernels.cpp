// bench_kernels: Google Benchmark micro suite over every layer (forward and backward) and
// every hand-written kernel, at the reference shapes (batch 2, 96^3 and the U-Net's channel
// counts per level) and at a few small shapes. See bench/README.md.
//
// The problems and their FLOPs / minimum bytes per call are the op case lists of
// tests/opcases/op_cases.h (every case marked kBench), which the parity tests and gradient
// checks read too. Each benchmark is data (name, FLOPs and bytes per call, a setup that
// returns the call), registered twice: cpu/<case> and cuda/<case>; the call goes through the
// engine's public ops, i.e. the backend table of the context's device.
//   - CPU: real (wall) time, the engine's CPU reference backend (OpenMP + OpenBLAS).
//     The reference-shape convolutions take seconds per call on a small CPU (kCpuHeavy), so
//     their CPU variants are registered only with --cpu_heavy (stripped before Google
//     Benchmark sees the arguments).
//   - CUDA: manual time from CUDA events recorded on the context's stream around the call;
//     before every timed call a buffer of 2 x L2 is written so the call starts with a cold L2.
//     Skipped (SkipWithError "no CUDA device answers") in CPU-only builds or without a GPU.
// Counters: FLOP/s (convolutions: 2 x MACs of the direct algorithm; backward = data + filter
// gradients = 2 x forward) and B/s (minimum bytes: every input read once, every output
// written once); on CUDA also pct_peak_bw (B/s over the DRAM peak from the device
// attributes) and pct_peak_fp32 (FLOP/s over the FP32 CUDA-core peak; cuDNN may use TF32
// tensor cores for fp32 convolutions, so this can exceed 100); bf16 cases (`*_bf16/`, the
// channels-last mixed-precision ops, channels padded to multiples of 8) report pct_peak_bf16
// (useful FLOP/s over the dense bf16 tensor-core peak) instead.
// Inputs are seeded uniform random values (never zeros).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "bench_common.h"
#include "cuseg/data/patch_pipeline.h"
#include "cuseg/data/phantom.h"
#include "cuseg/data/transforms.h"
#include "cuseg/engine/context.h"
#include "cuseg/engine/ops.h"
#include "cuseg/engine/optim.h"
#include "cuseg/model/unet3d.h"
#include "opcases/op_cases.h"
#if CUSEG_HAVE_CUDA
#include <cuda_runtime.h>

#include "cuseg/engine/cuda/cuda_check.h"
#include "cuseg/engine/cuda/cuda_context.h"
#endif

using namespace cuseg;
namespace oc = cuseg::opcases;

namespace {

using Op = std::function<void(Context&)>;

struct Case {
  std::string name;
  double flops = 0;    // per call
  double bytes = 0;    // per call, minimum
  bool heavy = false;  // CPU variant only with --cpu_heavy
  std::function<Op(Context&)> setup;
  bool bf16 = false;  // a bf16 channels-last case: CUDA adds pct_peak_bf16
};

std::vector<Case>& cases() {
  static std::vector<Case> c;
  return c;
}

uint64_t g_seed = 1;
Tensor rnd(const Shape& s, Device d, float lo = -1.f, float hi = 1.f) {
  return bench::random_tensor(s, d, g_seed++, lo, hi);
}
// "2x32x96x96x96": shape in benchmark names (no spaces or brackets, easy to filter).
std::string dims(const Shape& s) {
  std::string r;
  for (size_t i = 0; i < s.size(); ++i) r += (i ? "x" : "") + std::to_string(s[i]);
  return r;
}

// A bf16 channels-last tensor of seeded random values (rounded from fp32), on ctx's device.
Tensor rnd_bf16(Context& ctx, const Shape& s, float lo = -1.f, float hi = 1.f) {
  Tensor t = Tensor::empty_channels_last(s, DType::BF16, ctx.device());
  convert(ctx, rnd(s, ctx.device(), lo, hi), t);
  return t;
}

int64_t pad8(int64_t c) {
  return (c + 7) / 8 * 8;
}

// ---------------------------------------------------------------- layers
// The bf16 channels-last twin of a conv case (engine/precision.h): channels padded to multiples
// of 8 as the bf16 U-Net pads its input and head; FLOPs are the case's useful (unpadded) ones,
// bytes the fp32 minimum halved (bf16 activations and weights; the fp32 weight gradient of the
// backward is counted as bf16 too: a lower bound).
void conv_cases_bf16(const oc::ConvCase& cc) {
  const Shape xs0 = cc.x.shape();
  const Shape xs = {xs0[0], pad8(xs0[1]), xs0[2], xs0[3], xs0[4]};
  const Shape ys = {xs0[0], pad8(cc.cout), xs0[2], xs0[3], xs0[4]};
  const int k = cc.k;
  const Shape ws = {pad8(cc.cout), pad8(xs0[1]), k, k, k}, gws = cc.w_shape();
  const int cout = cc.cout;
  const bool heavy = cc.use & oc::kCpuHeavy;
  const float wb = 1.f / std::sqrt(float(cc.x.c * k * k * k));
  Case f{"conv3d_fwd_bf16/" + cc.name(),
         cc.flops_fwd(),
         cc.bytes_fwd() / 2,
         heavy,
         [=](Context& ctx) -> Op {
           Tensor x = rnd_bf16(ctx, xs), w = rnd_bf16(ctx, ws, -wb, wb);
           Tensor b = Tensor::zeros({ws[0]}, DType::BF16, ctx.device());
           Tensor y = Tensor::empty_channels_last(ys, DType::BF16, ctx.device());
           return [=](Context& c) { conv3d_forward(c, x, w, b, y, true); };
         },
         true};
  Case b{"conv3d_bwd_bf16/" + cc.name(),
         cc.flops_bwd(),
         cc.bytes_bwd() / 2,
         heavy,
         [=](Context& ctx) -> Op {
           Tensor x = rnd_bf16(ctx, xs), w = rnd_bf16(ctx, ws, -wb, wb), gy = rnd_bf16(ctx, ys);
           Tensor gx = Tensor::empty_channels_last(xs, DType::BF16, ctx.device());
           Tensor gw = Tensor::zeros(gws, DType::F32, ctx.device());
           Tensor gb = Tensor::zeros({cout}, DType::F32, ctx.device());
           // The U-Net's backward: dgrad with the ReLU mask of the layer below (here x).
           return [=](Context& c) { conv3d_backward(c, x, w, gy, gx, gw, gb, x); };
         },
         true};
  cases().push_back(f);
  cases().push_back(b);
}

void conv_cases(const oc::ConvCase& cc) {
  const Shape xs = cc.x.shape(), ys = cc.y_shape(), ws = cc.w_shape();
  const int cout = cc.cout;
  const bool heavy = cc.use & oc::kCpuHeavy;
  const float wb = 1.f / std::sqrt(float(cc.x.c * cc.k * cc.k * cc.k));
  Case f{"conv3d_fwd/" + cc.name(), cc.flops_fwd(), cc.bytes_fwd(), heavy, [=](Context& ctx) -> Op {
           const Device d = ctx.device();
           Tensor x = rnd(xs, d), w = rnd(ws, d, -wb, wb), b = rnd({cout}, d, -wb, wb);
           Tensor y = Tensor::empty(ys, DType::F32, d);
           return [=](Context& c) { conv3d_forward(c, x, w, b, y, true); };
         }};
  // Backward: data gradient (overwritten) + weight and bias gradients (accumulated).
  Case b{"conv3d_bwd/" + cc.name(), cc.flops_bwd(), cc.bytes_bwd(), heavy, [=](Context& ctx) -> Op {
           const Device d = ctx.device();
           Tensor x = rnd(xs, d), w = rnd(ws, d, -wb, wb), gy = rnd(ys, d);
           Tensor gx = Tensor::empty(xs, DType::F32, d);
           Tensor gw = Tensor::zeros(ws, DType::F32, d), gb = Tensor::zeros({cout}, DType::F32, d);
           return [=](Context& c) { conv3d_backward(c, x, w, gy, gx, gw, gb); };
         }};
  cases().push_back(f);
  cases().push_back(b);
}

void elementwise_cases(const oc::VolCase& vc) {
  using S = oc::ElementwiseSpec;
  const Shape s = vc.x.shape();
  const double n = double(vc.x.numel());
  const std::string sh = vc.label + "_" + dims(s);
  cases().push_back({"relu_fwd/" + sh, 0, S::relu_fwd_bytes(n), false, [=](Context& ctx) -> Op {
                       Tensor y = rnd(s, ctx.device());
                       // In place: after the first call every value is >= 0; the traffic
                       // (read + write every element) is the same.
                       return [=](Context& c) { relu_forward(c, y); };
                     }});
  cases().push_back({"relu_bwd/" + sh, 0, S::relu_bwd_bytes(n), false, [=](Context& ctx) -> Op {
                       Tensor y = rnd(s, ctx.device()), g = rnd(s, ctx.device());
                       return [=](Context& c) { relu_backward(c, y, g); };
                     }});
  cases().push_back({"add_inplace/" + sh, 0, S::add_bytes(n), false, [=](Context& ctx) -> Op {
                       Tensor a = rnd(s, ctx.device()), b = rnd(s, ctx.device());
                       return [=](Context& c) { add_inplace(c, a, b); };
                     }});
}

void maxpool_cases(const oc::VolCase& vc) {
  using S = oc::PoolSpec;
  const Shape xs = vc.x.shape(), ys = S::y_shape(vc.x);
  const std::string sh = vc.label + "_" + dims(xs);
  cases().push_back({"maxpool3d_fwd/" + sh, 0, S::fwd_bytes(vc.x), false, [=](Context& ctx) -> Op {
                       Tensor x = rnd(xs, ctx.device());
                       Tensor y = Tensor::empty(ys, DType::F32, ctx.device());
                       return [=](Context& c) { maxpool3d_forward(c, x, y); };
                     }});
  cases().push_back({"maxpool3d_bwd/" + sh, 0, S::bwd_bytes(vc.x), false, [=](Context& ctx) -> Op {
                       Tensor x = rnd(xs, ctx.device()), gy = rnd(ys, ctx.device());
                       Tensor y = Tensor::empty(ys, DType::F32, ctx.device());
                       Tensor gx = Tensor::empty(xs, DType::F32, ctx.device());
                       maxpool3d_forward(ctx, x, y);
                       return [=](Context& c) { maxpool3d_backward(c, x, y, gy, gx); };
                     }});
}

// bf16 channels-last pooling (fused backward: + the concat slice's gradient, ReLU mask) and
// upsampling; bytes are the fp32 minimum halved.
void pool_upsample_cases_bf16(const oc::VolCase& vc, bool pool) {
  const Shape xs = vc.x.shape();
  const std::string sh = vc.label + "_" + dims(xs);
  if (pool) {
    using S = oc::PoolSpec;
    const Shape ys = S::y_shape(vc.x);
    cases().push_back({"maxpool3d_fwd_bf16/" + sh, 0, S::fwd_bytes(vc.x) / 2, false,
                       [=](Context& ctx) -> Op {
                         Tensor x = rnd_bf16(ctx, xs);
                         Tensor y = Tensor::empty_channels_last(ys, DType::BF16, ctx.device());
                         return [=](Context& c) { maxpool3d_forward(c, x, y); };
                       },
                       true});
    cases().push_back(
        {"maxpool3d_bwd_add_relu_bf16/" + sh, 0, S::bwd_bytes(vc.x) / 2, false,
         [=](Context& ctx) -> Op {
           Tensor x = rnd_bf16(ctx, xs), gy = rnd_bf16(ctx, ys), ga = rnd_bf16(ctx, xs);
           Tensor gx = Tensor::empty_channels_last(xs, DType::BF16, ctx.device());
           return [=](Context& c) { maxpool3d_backward(c, x, Tensor(), gy, gx, ga, true); };
         },
         true});
    return;
  }
  using S = oc::UpsampleSpec;
  const Shape ys = S::y_shape(vc.x);
  cases().push_back({"upsample2x_fwd_bf16/" + sh, 0, S::bytes(vc.x) / 2, false,
                     [=](Context& ctx) -> Op {
                       Tensor x = rnd_bf16(ctx, xs);
                       Tensor y = Tensor::empty_channels_last(ys, DType::BF16, ctx.device());
                       return [=](Context& c) { upsample2x_forward(c, x, y); };
                     },
                     true});
  cases().push_back({"upsample2x_bwd_relu_bf16/" + sh, 0, S::bytes(vc.x) / 2, false,
                     [=](Context& ctx) -> Op {
                       Tensor gy = rnd_bf16(ctx, ys), m = rnd_bf16(ctx, xs);
                       Tensor gx = Tensor::empty_channels_last(xs, DType::BF16, ctx.device());
                       return [=](Context& c) { upsample2x_backward(c, gy, gx, m); };
                     },
                     true});
}

void upsample_cases(const oc::VolCase& vc) {
  using S = oc::UpsampleSpec;
  const Shape xs = vc.x.shape(), ys = S::y_shape(vc.x);
  const std::string sh = vc.label + "_" + dims(xs);
  cases().push_back({"upsample2x_fwd/" + sh, 0, S::bytes(vc.x), false, [=](Context& ctx) -> Op {
                       Tensor x = rnd(xs, ctx.device());
                       Tensor y = Tensor::empty(ys, DType::F32, ctx.device());
                       return [=](Context& c) { upsample2x_forward(c, x, y); };
                     }});
  cases().push_back({"upsample2x_bwd/" + sh, 0, S::bytes(vc.x), false, [=](Context& ctx) -> Op {
                       Tensor gy = rnd(ys, ctx.device());
                       Tensor gx = Tensor::empty(xs, DType::F32, ctx.device());
                       return [=](Context& c) { upsample2x_backward(c, gy, gx); };
                     }});
}

void logits_cases(const oc::VolCase& vc) {
  using S = oc::LogitsSpec;
  const Shape ls = vc.x.shape(), ys = {vc.x.n, vc.x.d, vc.x.h, vc.x.w};
  const int k = vc.x.c;
  const std::string sh = vc.label + "_" + dims(ls);
  // The recipe's class weights (1, 1, 3) for 3 classes.
  const std::vector<float> w = k == 3 ? std::vector<float>{1.f, 1.f, 3.f} : S::parity_weights(k);
  // Loss and gradient in one pass: read logits + labels, write the gradient.
  cases().push_back(
      {"weighted_ce_fwd_bwd/" + sh, 0, S::ce_bytes(vc.x), false, [=](Context& ctx) -> Op {
         Tensor x = rnd(ls, ctx.device(), -4.f, 4.f);
         Tensor y = bench::random_labels(ys, k, ctx.device(), g_seed++);
         Tensor g = Tensor::empty(ls, DType::F32, ctx.device());
         return [=](Context& c) { weighted_cross_entropy(c, x, y, w, g); };
       }});
  cases().push_back(
      {"argmax_channels/" + sh, 0, S::argmax_bytes(vc.x), false, [=](Context& ctx) -> Op {
         Tensor x = rnd(ls, ctx.device());
         Tensor y = Tensor::empty(ys, DType::U8, ctx.device());
         return [=](Context& c) { argmax_channels(c, x, y); };
       }});
}

void adam_cases(const oc::AdamCase& ac) {
  UNetConfig cfg;
  cfg.filters = ac.filters;
  if (ac.filters.empty()) return;  // benchmarks run Adam over all parameters of a U-Net
  cases().push_back({"adam_step/" + ac.label + "_" + std::to_string(ac.parameters()) + "params", 0,
                     ac.bytes(), false, [=](Context& ctx) -> Op {
                       auto model = std::make_shared<UNet3D>(cfg, ctx.device(), 0);
                       for (Param* p : model->parameters())
                         p->grad.copy_from(rnd(p->grad.shape(), ctx.device(), -1e-2f, 1e-2f));
                       auto adam = std::make_shared<Adam>(model->parameters(), AdamConfig{});
                       return [model, adam](Context& c) { adam->step(c); };
                     }});
}

// ---------------------------------------------------------------- volume ops
void crop_or_pad_cases(const oc::CropCase& cc) {
  const Shape in = cc.in.shape(), out = cc.out_shape();
  cases().push_back({"crop_or_pad/" + cc.label + "_" + dims(in) + "_to_" + dims(out), 0, cc.bytes(),
                     false, [=](Context& ctx) -> Op {
                       Tensor x = rnd(in, ctx.device()),
                              y = Tensor::empty(out, DType::F32, ctx.device());
                       const CropOrPadParams p = crop_or_pad_params(x.vol(), y.vol(), -1.f);
                       return [=](Context& c) { crop_or_pad(c, x, y, p); };
                     }});
}

void rescale_cases(const oc::RescaleCase& rc) {
  const Shape s = rc.shape;
  cases().push_back({"rescale_intensity/" + rc.label + "_" + dims(s), 0, rc.bytes(), false,
                     [=](Context& ctx) -> Op {
                       Tensor x = rnd(s, ctx.device(), -1024.f, 3000.f);
                       Tensor y = Tensor::empty(s, DType::F32, ctx.device());
                       const RescaleParams p{-1024.f, 3000.f, -1.f, 1.f};
                       return [=](Context& c) { rescale_intensity(c, x, y, p); };
                     }});
}

// Aggregation of one batch (the first bench_patches patches of the grid) into the volume, per
// mode; then the finalisation of that volume.
void grid_aggregate_cases(const oc::GridCase& gc) {
  const int np = gc.bench_patches;
  const Shape ps = gc.patches_shape(np), ss = gc.sum_shape(), ws = gc.weight_shape();
  std::vector<int> starts = gc.grid_starts();
  starts.resize(size_t(3 * np));
  for (AggregateMode mode : oc::grid_aggregate().modes) {
    const GridAggregateParams gp =
        grid_aggregate_params(mode, gc.overlap, gc.overlap, gc.overlap, gc.pd, gc.ph, gc.pw);
    cases().push_back({std::string("grid_aggregate_") + oc::GridSpec::mode_name(mode) + "/" +
                           gc.label + "_" + dims(ps) + "_into_" + dims(ss),
                       0, gc.bytes(np), false, [=](Context& ctx) -> Op {
                         const Device dv = ctx.device();
                         Tensor p = rnd(ps, dv), sum = Tensor::zeros(ss, DType::F32, dv),
                                wt = Tensor::zeros(ws, DType::F32, dv);
                         Tensor st = Tensor::empty({np, 3}, DType::I32, Device::CPU);
                         std::copy(starts.begin(), starts.end(), st.data<int32_t>());
                         Tensor sd = st.to(dv);
                         return [=](Context& c) { grid_aggregate(c, p, sd, sum, wt, gp); };
                       }});
  }
  cases().push_back({"grid_aggregate_finalize/" + gc.label + "_" + dims(ss), 0, gc.finalize_bytes(),
                     false, [=](Context& ctx) -> Op {
                       Tensor sum = rnd(ss, ctx.device()), wt = rnd(ws, ctx.device(), 1.f, 4.f);
                       Tensor out = Tensor::empty(ss, DType::F32, ctx.device());
                       return [=](Context& c) { grid_aggregate_finalize(c, sum, wt, out); };
                     }});
}

// One training patch of the fused op: a phantom of the case's size (rescaled to [-1, 1],
// stored as the case says) where the context's device reads it, one RandomAffine visit (Philox
// seed 0, visit 0, the recipe's ranges), presence decided once in the setup; each call makes
// patch 0 of that visit (centre draw + gather).
void affine_patch_cases(const oc::AffinePatchCase& ac) {
  cases().push_back(
      {"affine_patch/" + ac.label + "_" + ac.str(), 0, ac.bytes(), false, [=](Context& ctx) -> Op {
         data::PhantomConfig pc;
         pc.size = {ac.w, ac.h, ac.d};
         data::PhantomCase ph = data::make_phantom(pc, 0);
         data::rescale_intensity(ph.ct, -1.f, 1.f);
         data::PatchSpec spec;
         spec.patch = {ac.pw, ac.ph, ac.pd};
         spec.storage = PatchStorage(ac.storage);
         spec.out_type = PatchOutType(ac.out);
         const data::PatchSubject sub = data::make_patch_subject("bench", ph.ct, ph.label, spec);
         const Device dv = ctx.device();
         auto put = [&](const void* p, size_t n) {
           Tensor h = Tensor::empty({int64_t(std::max<size_t>(n, 1))}, DType::U8);
           std::memcpy(h.raw(), p, n);
           return dv == Device::CPU ? h : h.to(dv);
         };
         std::vector<Tensor> keep{put(sub.image.data(), sub.image.size()),
                                  put(sub.label.data(), sub.label.size())};
         PatchSource src = sub.source();
         src.image = keep[0].raw();
         src.label = keep[1].data<uint8_t>();
         std::vector<const int32_t*> lists;
         for (const auto& t : sub.tables) {
           if (!t.list_mode) {
             lists.push_back(nullptr);
             continue;
           }
           keep.push_back(put(t.list.data(), t.list.size() * 4));
           lists.push_back(static_cast<const int32_t*>(keep.back().raw()));
         }
         const PhiloxStream st{0, 0, 0};
         auto visit = std::make_shared<const PatchVisit>(
             data::plan_visit(sub, spec, data::visit_affine(spec, st, 0), src, lists, st));
         Tensor pres = Tensor::empty({kMaxPatchLabels}, DType::U8, dv);
         Tensor wit = Tensor::empty({3 * kMaxPatchLabels}, DType::I32, dv);
         affine_patch_presence(ctx, *visit, pres.data<uint8_t>(), wit.data<int32_t>());
         ctx.synchronize();
         const Tensor hp = pres.to(Device::CPU), hw = wit.to(Device::CPU);
         const data::VisitLabels labels =
             data::visit_labels(*visit, spec, hp.data<uint8_t>(), hw.data<int32_t>(), "bench");
         PatchJob job = data::patch_job(*visit, labels, spec, 0);
         const int64_t voxels = int64_t(ac.pw) * ac.ph * ac.pd;
         keep.push_back(Tensor::empty({voxels}, ac.out == kOutBF16 ? DType::BF16 : DType::F32, dv));
         job.image_out = keep.back().raw();
         keep.push_back(Tensor::empty({voxels}, DType::U8, dv));
         job.label_out = keep.back().data<uint8_t>();
         return [keep, visit, job](Context& c) { affine_patch(c, *visit, job); };
       }});
}

void make_cases() {
  const unsigned b = oc::kBench;
  for (const auto& c : oc::with_use(oc::conv3d().cases, b)) conv_cases(c);
  for (const auto& c : oc::with_use(oc::conv3d().cases, b)) conv_cases_bf16(c);
  for (const auto& c : oc::with_use(oc::elementwise().cases, b)) elementwise_cases(c);
  for (const auto& c : oc::with_use(oc::maxpool3d().cases, b)) maxpool_cases(c);
  for (const auto& c : oc::with_use(oc::upsample2x().cases, b)) upsample_cases(c);
  for (const auto& c : oc::with_use(oc::maxpool3d().cases, b)) pool_upsample_cases_bf16(c, true);
  for (const auto& c : oc::with_use(oc::upsample2x().cases, b)) pool_upsample_cases_bf16(c, false);
  for (const auto& c : oc::with_use(oc::logits().cases, b)) logits_cases(c);
  for (const auto& c : oc::with_use(oc::adam().cases, b)) adam_cases(c);
  for (const auto& c : oc::with_use(oc::crop_or_pad().cases, b)) crop_or_pad_cases(c);
  for (const auto& c : oc::with_use(oc::rescale_intensity().cases, b)) rescale_cases(c);
  for (const auto& c : oc::with_use(oc::grid_aggregate().cases, b)) grid_aggregate_cases(c);
  for (const auto& c : oc::with_use(oc::affine_patch().cases, b)) affine_patch_cases(c);
}

// ---------------------------------------------------------------- runners
void set_counters(benchmark::State& st, const Case& c) {
  using benchmark::Counter;
  if (c.flops > 0) st.counters["FLOP/s"] = Counter(c.flops, Counter::kIsIterationInvariantRate);
  if (c.bytes > 0) st.counters["B/s"] = Counter(c.bytes, Counter::kIsIterationInvariantRate);
}

void run_cpu(benchmark::State& st, const Case& c) {
  try {
    Context ctx(Device::CPU);
    Op op = c.setup(ctx);
    op(ctx);  // warm: first-touch pages, OpenBLAS thread start
    for (auto _ : st) op(ctx);
    set_counters(st, c);
  } catch (const std::exception& e) {
    st.SkipWithError(e.what());
  }
}

void run_cuda(benchmark::State& st, const Case& c) {
#if CUSEG_HAVE_CUDA
  if (!cuda_available()) {
    st.SkipWithError("no CUDA device answers");
    return;
  }
  try {
    static const bench::DeviceInfo info = bench::describe_device(Device::CUDA);
    Context ctx(Device::CUDA);
    Op op = c.setup(ctx);
    op(ctx);  // warm: cuDNN algorithm choice, plan caches, module load
    ctx.synchronize();
    cudaStream_t s = ctx.cuda().stream();
    cudaEvent_t e0, e1;
    CUDA_CHECK(cudaEventCreate(&e0));
    CUDA_CHECK(cudaEventCreate(&e1));
    double total = 0;
    for (auto _ : st) {
      bench::flush_l2(s);
      CUDA_CHECK(cudaEventRecord(e0, s));
      op(ctx);
      CUDA_CHECK(cudaEventRecord(e1, s));
      CUDA_CHECK(cudaEventSynchronize(e1));
      float ms = 0;
      CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
      st.SetIterationTime(ms * 1e-3);
      total += ms * 1e-3;
    }
    CUDA_CHECK(cudaGetLastError());
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    set_counters(st, c);
    const double it = double(st.iterations());
    if (total > 0 && c.bytes > 0 && info.peak_bw > 0)
      st.counters["pct_peak_bw"] = 100.0 * c.bytes * it / total / info.peak_bw;
    if (total > 0 && c.flops > 0 && info.peak_fp32 > 0 && !c.bf16)
      st.counters["pct_peak_fp32"] = 100.0 * c.flops * it / total / info.peak_fp32;
    if (total > 0 && c.flops > 0 && info.peak_bf16 > 0 && c.bf16)
      st.counters["pct_peak_bf16"] = 100.0 * c.flops * it / total / info.peak_bf16;
  } catch (const std::exception& e) {
    st.SkipWithError(e.what());
  }
#else
  (void)c;
  st.SkipWithError("no CUDA device answers (CPU-only build)");
#endif
}

}  // namespace

int main(int argc, char** argv) {
  bool cpu_heavy = false, cpu = true, cuda = true;
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--cpu_heavy"))
      cpu_heavy = true;
    else if (!std::strcmp(argv[i], "--cpu_only"))
      cuda = false;
    else if (!std::strcmp(argv[i], "--cuda_only"))
      cpu = false;
    else
      args.push_back(argv[i]);
  }
  int n = int(args.size());
  make_cases();
  for (const Case& c : cases()) {
    if (cpu && (!c.heavy || cpu_heavy))
      benchmark::RegisterBenchmark(("cpu/" + c.name).c_str(), run_cpu, c)
          ->UseRealTime()
          ->Unit(benchmark::kMillisecond);
    if (cuda)
      benchmark::RegisterBenchmark(("cuda/" + c.name).c_str(), run_cuda, c)
          ->UseManualTime()
          ->Unit(benchmark::kMicrosecond);
  }
  benchmark::AddCustomContext("cuseg_cpu_heavy",
                              cpu_heavy ? "registered" : "not registered (--cpu_heavy)");
  benchmark::AddCustomContext("cuseg_cpu_device", bench::describe_device(Device::CPU).name);
  if (cuda_available())
    benchmark::AddCustomContext("cuseg_cuda_device",
                                bench::to_json_string(bench::describe_device(Device::CUDA)));
  benchmark::Initialize(&n, args.data());
  if (benchmark::ReportUnrecognizedArguments(n, args.data())) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
