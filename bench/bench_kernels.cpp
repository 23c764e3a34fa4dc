// bench_kernels: Google Benchmark micro suite over every layer (forward and backward) and
// every hand-written kernel, at the reference shapes (batch 2, 96^3 and the U-Net's channel
// counts per level) and at a few small shapes. See bench/README.md.
//
// Each case is data (name, FLOPs and minimum bytes per call, a setup that returns the call),
// registered twice: cpu/<case> and cuda/<case>.
//   - CPU: real (wall) time, the engine's CPU reference backend (OpenMP + OpenBLAS).
//     The reference-shape convolutions take seconds per call on a small CPU, so their CPU
//     variants are registered only with --cpu_heavy (stripped before Google Benchmark sees
//     the arguments).
//   - CUDA: manual time from CUDA events recorded on the context's stream around the call;
//     before every timed call a buffer of 2 x L2 is written so the call starts with a cold L2.
//     Skipped (SkipWithError "no CUDA device answers") in CPU-only builds or without a GPU.
// Counters: FLOP/s (convolutions: 2 x MACs of the direct algorithm; backward = data + filter
// gradients = 2 x forward) and B/s (minimum bytes: every input read once, every output
// written once); on CUDA also pct_peak_bw (B/s over the DRAM peak from the device
// attributes) and pct_peak_fp32 (FLOP/s over the FP32 CUDA-core peak; cuDNN may use TF32
// tensor cores for fp32 convolutions, so this can exceed 100).
// Inputs are seeded uniform random values (never zeros).
#include <benchmark/benchmark.h>

#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "bench_common.h"
#include "cuseg/engine/context.h"
#include "cuseg/engine/ops.h"
#include "cuseg/engine/optim.h"
#include "cuseg/kernels/crop_or_pad.h"
#include "cuseg/kernels/grid_aggregate.h"
#include "cuseg/kernels/rescale_intensity.h"
#include "cuseg/model/unet3d.h"
#if CUSEG_HAVE_CUDA
#include <cuda_runtime.h>

#include "cuseg/engine/cuda/cuda_check.h"
#include "cuseg/engine/cuda/cuda_context.h"
#endif

using namespace cuseg;

namespace {

using Op = std::function<void(Context&)>;

struct Case {
  std::string name;
  double flops = 0;    // per call
  double bytes = 0;    // per call, minimum
  bool heavy = false;  // CPU variant only with --cpu_heavy
  std::function<Op(Context&)> setup;
};

std::vector<Case>& cases() {
  static std::vector<Case> c;
  return c;
}

uint64_t g_seed = 1;
Tensor rnd(const Shape& s, Device d, float lo = -1.f, float hi = 1.f) {
  return bench::random_tensor(s, d, g_seed++, lo, hi);
}
double n_of(const Shape& s) {
  return double(shape_numel(s));
}
// "2x32x96x96x96": shape in benchmark names (no spaces or brackets, easy to filter).
std::string dims(const Shape& s) {
  std::string r;
  for (size_t i = 0; i < s.size(); ++i) r += (i ? "x" : "") + std::to_string(s[i]);
  return r;
}

// ---------------------------------------------------------------- layers
void conv_cases(const std::string& tag, int n, int cin, int cout, int s, int k, bool heavy) {
  const Shape xs = {n, cin, s, s, s}, ys = {n, cout, s, s, s}, ws = {cout, cin, k, k, k};
  const double macs = double(n) * cout * cin * k * k * k * double(s) * s * s;
  const std::string shape = tag + "_n" + std::to_string(n) + "_" + std::to_string(cin) + "x" +
                            std::to_string(cout) + "_k" + std::to_string(k) + "_s" +
                            std::to_string(s);
  const float wb = 1.f / std::sqrt(float(cin * k * k * k));
  Case f{"conv3d_fwd/" + shape, 2 * macs, 4 * (n_of(xs) + n_of(ws) + n_of(ys) + cout), heavy,
         [=](Context& ctx) -> Op {
           const Device d = ctx.device();
           Tensor x = rnd(xs, d), w = rnd(ws, d, -wb, wb), b = rnd({cout}, d, -wb, wb);
           Tensor y = Tensor::empty(ys, DType::F32, d);
           return [=](Context& c) { conv3d_forward(c, x, w, b, y, true); };
         }};
  // Backward: data gradient (overwritten) + weight and bias gradients (accumulated).
  Case b{"conv3d_bwd/" + shape, 4 * macs, 4 * (2 * n_of(xs) + 2 * n_of(ws) + n_of(ys) + cout),
         heavy, [=](Context& ctx) -> Op {
           const Device d = ctx.device();
           Tensor x = rnd(xs, d), w = rnd(ws, d, -wb, wb), gy = rnd(ys, d);
           Tensor gx = Tensor::empty(xs, DType::F32, d);
           Tensor gw = Tensor::zeros(ws, DType::F32, d), gb = Tensor::zeros({cout}, DType::F32, d);
           return [=](Context& c) { conv3d_backward(c, x, w, gy, gx, gw, gb); };
         }};
  cases().push_back(f);
  cases().push_back(b);
}

void relu_cases(const std::string& tag, const Shape& s) {
  const std::string sh = tag + "_" + dims(s);
  cases().push_back({"relu_fwd/" + sh, 0, 8 * n_of(s), false, [=](Context& ctx) -> Op {
                       Tensor y = rnd(s, ctx.device());
                       // In place: after the first call every value is >= 0; the traffic
                       // (read + write every element) is the same.
                       return [=](Context& c) { relu_forward(c, y); };
                     }});
  cases().push_back({"relu_bwd/" + sh, 0, 12 * n_of(s), false, [=](Context& ctx) -> Op {
                       Tensor y = rnd(s, ctx.device()), g = rnd(s, ctx.device());
                       return [=](Context& c) { relu_backward(c, y, g); };
                     }});
  cases().push_back({"add_inplace/" + sh, 0, 12 * n_of(s), false, [=](Context& ctx) -> Op {
                       Tensor a = rnd(s, ctx.device()), b = rnd(s, ctx.device());
                       return [=](Context& c) { add_inplace(c, a, b); };
                     }});
}

void maxpool_cases(const std::string& tag, int n, int ch, int s) {
  const Shape xs = {n, ch, s, s, s}, ys = {n, ch, s / 2, s / 2, s / 2};
  const std::string sh = tag + "_" + dims(xs);
  cases().push_back(
      {"maxpool3d_fwd/" + sh, 0, 4 * (n_of(xs) + n_of(ys)), false, [=](Context& ctx) -> Op {
         Tensor x = rnd(xs, ctx.device());
         Tensor y = Tensor::empty(ys, DType::F32, ctx.device());
         return [=](Context& c) { maxpool3d_forward(c, x, y); };
       }});
  cases().push_back(
      {"maxpool3d_bwd/" + sh, 0, 4 * (2 * n_of(xs) + n_of(ys)), false, [=](Context& ctx) -> Op {
         Tensor x = rnd(xs, ctx.device()), gy = rnd(ys, ctx.device());
         Tensor y = Tensor::empty(ys, DType::F32, ctx.device());
         Tensor gx = Tensor::empty(xs, DType::F32, ctx.device());
         maxpool3d_forward(ctx, x, y);
         return [=](Context& c) { maxpool3d_backward(c, x, y, gy, gx); };
       }});
}

void upsample_cases(const std::string& tag, int n, int ch, int s) {
  const Shape xs = {n, ch, s, s, s}, ys = {n, ch, 2 * s, 2 * s, 2 * s};
  const std::string sh = tag + "_" + dims(xs);
  const double bytes = 4 * (n_of(xs) + n_of(ys));
  cases().push_back({"upsample2x_fwd/" + sh, 0, bytes, false, [=](Context& ctx) -> Op {
                       Tensor x = rnd(xs, ctx.device());
                       Tensor y = Tensor::empty(ys, DType::F32, ctx.device());
                       return [=](Context& c) { upsample2x_forward(c, x, y); };
                     }});
  cases().push_back({"upsample2x_bwd/" + sh, 0, bytes, false, [=](Context& ctx) -> Op {
                       Tensor gy = rnd(ys, ctx.device());
                       Tensor gx = Tensor::empty(xs, DType::F32, ctx.device());
                       return [=](Context& c) { upsample2x_backward(c, gy, gx); };
                     }});
}

void ce_cases(const std::string& tag, int n, int k, int s) {
  const Shape ls = {n, k, s, s, s}, ys = {n, s, s, s};
  const std::string sh = tag + "_" + dims(ls);
  // Loss and gradient in one pass: read logits + labels, write the gradient.
  cases().push_back(
      {"weighted_ce_fwd_bwd/" + sh, 0, 8 * n_of(ls) + n_of(ys), false, [=](Context& ctx) -> Op {
         Tensor x = rnd(ls, ctx.device(), -4.f, 4.f);
         Tensor y = bench::random_labels(ys, k, ctx.device(), g_seed++);
         Tensor g = Tensor::empty(ls, DType::F32, ctx.device());
         const std::vector<float> w = {1.f, 1.f, 3.f};
         return [=](Context& c) { weighted_cross_entropy(c, x, y, w, g); };
       }});
}

void argmax_cases(const std::string& tag, const Shape& ls) {
  const Shape ys = {ls[0], ls[2], ls[3], ls[4]};
  cases().push_back({"argmax_channels/" + tag + "_" + dims(ls), 0, 4 * n_of(ls) + n_of(ys), false,
                     [=](Context& ctx) -> Op {
                       Tensor x = rnd(ls, ctx.device());
                       Tensor y = Tensor::empty(ys, DType::U8, ctx.device());
                       return [=](Context& c) { argmax_channels(c, x, y); };
                     }});
}

void adam_cases(const std::string& tag, const std::vector<int>& filters) {
  UNetConfig cfg;
  cfg.filters = filters;
  const double n = double(unet_parameter_count(cfg));
  // Reads p, g, m, v and writes p, m, v: 7 floats per parameter.
  cases().push_back({"adam_step/" + tag + "_" + std::to_string(int64_t(n)) + "params", 0, 28 * n,
                     false, [=](Context& ctx) -> Op {
                       auto model = std::make_shared<UNet3D>(cfg, ctx.device(), 0);
                       for (Param* p : model->parameters())
                         p->grad.copy_from(rnd(p->grad.shape(), ctx.device(), -1e-2f, 1e-2f));
                       auto adam = std::make_shared<Adam>(model->parameters(), AdamConfig{});
                       return [model, adam](Context& c) { adam->step(c); };
                     }});
}

// ---------------------------------------------------------------- data-side kernels
void crop_or_pad_cases(const std::string& tag, const Shape& in, const Shape& out) {
  cases().push_back({"crop_or_pad/" + tag + "_" + dims(in) + "_to_" + dims(out), 0, 8 * n_of(out),
                     false, [=](Context& ctx) -> Op {
                       Tensor x = rnd(in, ctx.device()),
                              y = Tensor::empty(out, DType::F32, ctx.device());
                       const CropOrPadParams p = crop_or_pad_params(x.vol(), y.vol(), -1.f);
                       return [=](Context& c) { crop_or_pad(c, x, y, p); };
                     }});
}

void rescale_cases(const std::string& tag, const Shape& s) {
  cases().push_back(
      {"rescale_intensity/" + tag + "_" + dims(s), 0, 8 * n_of(s), false, [=](Context& ctx) -> Op {
         Tensor x = rnd(s, ctx.device(), -1024.f, 3000.f);
         Tensor y = Tensor::empty(s, DType::F32, ctx.device());
         const RescaleParams p{-1024.f, 3000.f, -1.f, 1.f};
         return [=](Context& c) { rescale_intensity(c, x, y, p); };
       }});
}

// Aggregation of one batch of `np` patches (patch^3, `ch` channels) into a D x H x W volume.
void grid_aggregate_cases(const std::string& tag, AggregateMode mode, const char* mode_name, int np,
                          int ch, int patch, int overlap, int d, int h, int w) {
  const Shape ps = {np, ch, patch, patch, patch}, ss = {1, ch, d, h, w}, ws = {1, 1, d, h, w};
  // Per patch voxel: read C patch values, read+write C sums and the weight.
  const double bytes = 4 * n_of({np, 1, patch, patch, patch}) * (3.0 * ch + 2);
  cases().push_back({std::string("grid_aggregate_") + mode_name + "/" + tag + "_" + dims(ps) +
                         "_into_" + dims(ss),
                     0, bytes, false, [=](Context& ctx) -> Op {
                       const Device dv = ctx.device();
                       Tensor p = rnd(ps, dv), sum = Tensor::zeros(ss, DType::F32, dv),
                              wt = Tensor::zeros(ws, DType::F32, dv);
                       Tensor st = Tensor::empty({np, 3}, DType::I32, Device::CPU);
                       const int step =
                           patch - overlap;  // a row of patches along W, inner sides overlapping
                       for (int q = 0; q < np; ++q) {
                         st.data<int>()[3 * q] = 0;
                         st.data<int>()[3 * q + 1] = 0;
                         st.data<int>()[3 * q + 2] = std::min(q * step, w - patch);
                       }
                       Tensor sd = st.to(dv);
                       const GridAggregateParams gp{mode, overlap, overlap, overlap};
                       return [=](Context& c) { grid_aggregate(c, p, sd, sum, wt, gp); };
                     }});
  if (mode != AggregateMode::Crop) return;
  cases().push_back({"grid_aggregate_finalize/" + tag + "_" + dims(ss), 0,
                     4 * (2 * n_of(ss) + n_of(ws)), false, [=](Context& ctx) -> Op {
                       Tensor sum = rnd(ss, ctx.device()), wt = rnd(ws, ctx.device(), 1.f, 4.f);
                       Tensor out = Tensor::empty(ss, DType::F32, ctx.device());
                       return [=](Context& c) { grid_aggregate_finalize(c, sum, wt, out); };
                     }});
}

void make_cases() {
  // U-Net convolutions at batch 2, 96^3 (decoder second convs have the encoder's shapes).
  conv_cases("ref_enc1a", 2, 1, 32, 96, 3, true);
  conv_cases("ref_enc1b", 2, 32, 32, 96, 3, true);
  conv_cases("ref_enc2a", 2, 32, 64, 48, 3, true);
  conv_cases("ref_enc2b", 2, 64, 64, 48, 3, true);
  conv_cases("ref_enc3a", 2, 64, 128, 24, 3, true);
  conv_cases("ref_enc3b", 2, 128, 128, 24, 3, true);
  conv_cases("ref_enc4a", 2, 128, 256, 12, 3, true);
  conv_cases("ref_enc4b", 2, 256, 256, 12, 3, true);
  conv_cases("ref_dec3a", 2, 384, 128, 24, 3, true);
  conv_cases("ref_dec2a", 2, 192, 64, 48, 3, true);
  conv_cases("ref_dec1a", 2, 96, 32, 96, 3, true);
  conv_cases("ref_final", 2, 32, 3, 96, 1, true);
  conv_cases("small", 1, 4, 8, 16, 3, false);
  conv_cases("small", 2, 8, 8, 32, 3, false);
  conv_cases("small_odd", 1, 3, 5, 17, 3, false);

  relu_cases("ref_l1", {2, 32, 96, 96, 96});
  relu_cases("small", {1, 8, 32, 32, 32});
  for (auto [ch, s] : {std::pair{32, 96}, {64, 48}, {128, 24}}) maxpool_cases("ref", 2, ch, s);
  maxpool_cases("small", 1, 8, 32);
  for (auto [ch, s] : {std::pair{256, 12}, {128, 24}, {64, 48}}) upsample_cases("ref", 2, ch, s);
  upsample_cases("small", 1, 8, 16);
  ce_cases("ref", 2, 3, 96);
  ce_cases("small", 1, 3, 32);
  argmax_cases("ref_volume", {1, 3, 200, 256, 256});
  argmax_cases("small", {1, 3, 32, 32, 32});
  adam_cases("ref", {32, 64, 128, 256});
  adam_cases("small", {8, 16, 32, 64});

  crop_or_pad_cases("ref_pad", {1, 1, 150, 256, 256}, {1, 1, 200, 256, 256});
  crop_or_pad_cases("ref_crop", {1, 1, 300, 256, 256}, {1, 1, 200, 256, 256});
  crop_or_pad_cases("small", {1, 1, 30, 40, 50}, {1, 1, 32, 32, 32});
  rescale_cases("ref", {1, 1, 200, 256, 256});
  rescale_cases("small", {1, 1, 32, 32, 32});
  grid_aggregate_cases("ref", AggregateMode::Crop, "crop", 4, 3, 96, 8, 200, 256, 256);
  grid_aggregate_cases("ref", AggregateMode::Hann, "hann", 4, 3, 96, 8, 200, 256, 256);
  grid_aggregate_cases("ref", AggregateMode::Average, "average", 4, 3, 96, 8, 200, 256, 256);
  grid_aggregate_cases("small", AggregateMode::Crop, "crop", 2, 3, 16, 4, 16, 16, 28);
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
    if (total > 0 && c.flops > 0 && info.peak_fp32 > 0)
      st.counters["pct_peak_fp32"] = 100.0 * c.flops * it / total / info.peak_fp32;
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
