// The inference pipeline on CUDA against the same pipeline on the CPU twins
// (pipeline/inference.h), with and without test-time mirroring, its probability maps, and
// what crosses the bus. Skipped without a device.
//
// Tolerances (where each comes from):
// - Exact (0): the engine's volume ops (crop/pad into a batch slot, grid aggregation in
//   crop/average/gaussian mode with patch origins read from a slice of the device origins
//   tensor, min/max): copies, and the same correctly rounded multiplies and adds in the same
//   (patch) order on both sides (no FMA contraction in the CUDA kernel). Gaussian weights are
//   the same double formula on both sides; the test first checks on the host that no weight
//   of its shapes changes when exp() is off by up to 2 ulp (CUDA's exp is within 1 ulp), so
//   equal weights are guaranteed, not hoped for.
// - Exact (0): the normalised volume (min/max is exact; the rescale avoids FMA contraction on
//   the device, kernels/rescale_intensity.h).
// - Scores (aggregated logits of a tiny random U-Net): the CPU (im2col + sgemm) and cuDNN sum
//   each convolution's <= 81 products in different orders, each adding at most ~81 * 2^-24
//   relative to the sum of |terms|; through 6 convolutions, with ReLU and averaging that do
//   not amplify, that is below 1e-4 of the largest |score|: atol = 1e-4 * max|score|.
// - Masks: equal wherever the CPU's two best scores are more than 2 atol apart (elsewhere a
//   rounding difference may legitimately flip the argmax); such voxels are counted, and must
//   be rare (< 1 %).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "cuseg/core/transfer_stats.h"
#include "cuseg/engine/context.h"
#include "cuseg/engine/ops.h"
#include "cuseg/engine/tensor.h"
#include "cuseg/kernels/grid_aggregate.h"
#include "cuseg/kernels/mirror.h"
#include "cuseg/pipeline/inference.h"
#include "test_util.h"

using namespace cuseg;
using data::Image;
using data::Index3;
using data::LabelMap;

namespace {

Image random_image(const Index3& size, uint32_t seed, float lo, float hi) {
  data::Geometry g;
  g.size = size;
  Image im = Image::make(g);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  for (float& v : im.v) v = u(rng);
  return im;
}

// Every gaussian weight of a pd x ph x pw patch is the same for exp() results up to 2 ulp
// either side of the host's: then a device exp within 1 ulp gives identical weights.
bool gaussian_weights_robust(int pd, int ph, int pw) {
  for (int z = 0; z < pd; ++z)
    for (int y = 0; y < ph; ++y)
      for (int x = 0; x < pw; ++x) {
        const double e = std::exp(-0.5 * gaussian_exponent(x, y, z, pw, ph, pd));
        const float w = gaussian_from_exp(e);
        double lo = e, hi = e;
        for (int u = 0; u < 2; ++u) {
          lo = std::nextafter(lo, 0.0);
          hi = std::nextafter(hi, 1.0);
          if (gaussian_from_exp(lo) != w || gaussian_from_exp(hi) != w) return false;
        }
      }
  return true;
}

// Engine volume ops on CUDA = on the CPU, on small integers: exact.
TEST(InferenceParity, VolumeOpsMatchCpuExactly) {
  CUSEG_REQUIRE_CUDA();
  Context cpu(Device::CPU), gpu(Device::CUDA);
  std::mt19937 rng(21);
  std::uniform_int_distribution<int> u(-3, 3);
  // crop/pad straight into slot 1 of a 3-patch batch, with a pad region.
  Tensor vol = Tensor::empty({1, 1, 9, 7, 11});
  for (int64_t i = 0; i < vol.numel(); ++i) vol.f32()[i] = float(u(rng));
  Tensor batch = Tensor::zeros({3, 1, 6, 8, 5});
  Tensor batch_g = Tensor::zeros({3, 1, 6, 8, 5}, DType::F32, Device::CUDA);
  const CropOrPadParams p{5, -2, 7, -1.f};  // z in range, y starts in the pad, x runs past the end
  crop_or_pad(cpu, vol, batch.batch_slice(1, 2), p);
  crop_or_pad(gpu, vol.to(Device::CUDA), batch_g.batch_slice(1, 2), p);
  const Tensor back = batch_g.to(Device::CPU);
  EXPECT_EQ(std::memcmp(back.f32(), batch.f32(), batch.nbytes()), 0) << "crop_or_pad into a slot";

  // Aggregation of patches 2..4 of a 6-patch grid, origins from a slice of the origins tensor.
  const Index3 size{9, 7, 6}, patch{5, 4, 4};
  ASSERT_TRUE(gaussian_weights_robust(patch[2], patch[1], patch[0]));
  const auto locs = data::grid_locations(size, patch, {2, 2, 2});
  Tensor starts = Tensor::empty({int64_t(locs.size()), 3}, DType::I32);
  for (size_t q = 0; q < locs.size(); ++q)
    for (int a = 0; a < 3; ++a) starts.data<int32_t>()[3 * q + size_t(a)] = locs[q][size_t(2 - a)];
  const Tensor starts_g = starts.to(Device::CUDA);
  Tensor patches = Tensor::empty({3, 3, patch[2], patch[1], patch[0]});
  for (int64_t i = 0; i < patches.numel(); ++i) patches.f32()[i] = float(u(rng));
  const Tensor patches_g = patches.to(Device::CUDA);
  for (AggregateMode mode :
       {AggregateMode::Crop, AggregateMode::Average, AggregateMode::Gaussian}) {
    const GridAggregateParams gp =
        grid_aggregate_params(mode, 2, 2, 2, patch[2], patch[1], patch[0]);
    Tensor sum = Tensor::zeros({1, 3, size[2], size[1], size[0]});
    Tensor wt = Tensor::zeros({1, 1, size[2], size[1], size[0]});
    Tensor sum_g = Tensor::zeros(sum.shape(), DType::F32, Device::CUDA);
    Tensor wt_g = Tensor::zeros(wt.shape(), DType::F32, Device::CUDA);
    grid_aggregate(cpu, patches, starts.batch_slice(2, 5), sum, wt, gp);
    grid_aggregate(gpu, patches_g, starts_g.batch_slice(2, 5), sum_g, wt_g, gp);
    grid_aggregate_finalize(cpu, sum, wt, sum);
    grid_aggregate_finalize(gpu, sum_g, wt_g, sum_g);
    const Tensor s = sum_g.to(Device::CPU), w = wt_g.to(Device::CPU);
    EXPECT_EQ(std::memcmp(s.f32(), sum.f32(), sum.nbytes()), 0) << mode_name(mode);
    EXPECT_EQ(std::memcmp(w.f32(), wt.f32(), wt.nbytes()), 0) << mode_name(mode);
  }
  const auto mm_c = minmax(cpu, vol), mm_g = minmax(gpu, vol.to(Device::CUDA));
  EXPECT_EQ(mm_c, mm_g);
}

// The whole pipeline on both backends with the same weights and the same HU volume.
TEST(InferenceParity, SegmentCudaMatchesCpu) {
  CUSEG_REQUIRE_CUDA();
  Context cpu(Device::CPU), gpu(Device::CUDA);
  const UNetConfig nc{1, 3, {4, 8}};
  UNet3D net_c(nc, Device::CPU, 5), net_g(nc, Device::CUDA, 5);
  auto pc = net_c.parameters(), pg = net_g.parameters();
  for (size_t i = 0; i < pc.size(); ++i) pg[i]->value.copy_from(pc[i]->value);
  RunConfig cfg;
  cfg.resample_inplane = {0, 0};
  cfg.crop_or_pad = {0, 0, 0};
  cfg.clip = true;
  cfg.clip_lo = -250.f;
  cfg.clip_hi = 250.f;
  const Image ct = random_image({30, 26, 13}, 8, -1024.f, 1500.f);
  for (AggregateMode mode : {AggregateMode::Crop, AggregateMode::Hann, AggregateMode::Gaussian}) {
    GridOptions g;
    g.patch = {12, 12, 16};  // the 13 slices are padded to 16
    g.overlap = 4;
    g.batch = 3;
    g.mode = mode;
    VolumePredictor vc(net_c, cpu, g), vg(net_g, gpu, g);
    const IntensitySpec is = intensity_spec(cfg);
    vc.load(ct, &is, -1.f);
    const TransferStats t0 = transfer_stats();
    vg.load(ct, &is, -1.f);
    vg.run();
    const LabelMap mg = vg.mask();
    const TransferStats moved = transfer_stats() - t0;
    // Up: the volume and the patch origins; down: min/max (8 bytes) and the uint8 mask.
    const size_t vox = ct.v.size();
    const size_t padded = size_t(mg.geo.size[0]) * mg.geo.size[1] * mg.geo.size[2];
    EXPECT_EQ(moved.host_to_device_bytes, vox * sizeof(float) + vg.locations().size() * 12);
    EXPECT_EQ(moved.device_to_host_bytes, 2 * sizeof(float) + padded);
    EXPECT_EQ(moved.device_to_host_copies, 2u);

    const Tensor vol_g = vg.volume().to(Device::CPU);
    EXPECT_EQ(std::memcmp(vol_g.f32(), vc.volume().f32(), vol_g.nbytes()), 0)
        << "normalised volume";
    vc.run();
    const LabelMap mc = vc.mask();
    const Tensor sc = vc.scores(), sg = vg.scores().to(Device::CPU);
    double mx = 0;
    for (int64_t i = 0; i < sc.numel(); ++i) mx = std::max(mx, double(std::fabs(sc.f32()[i])));
    const double atol = 1e-4 * mx;
    int64_t bad = 0;
    for (int64_t i = 0; i < sc.numel(); ++i)
      bad += !(std::fabs(double(sc.f32()[i]) - double(sg.f32()[i])) <= atol);
    EXPECT_EQ(bad, 0) << mode_name(mode) << ": scores beyond atol " << atol;
    const int64_t V = int64_t(padded);
    int64_t near = 0, differ = 0;
    for (int64_t v = 0; v < V; ++v) {
      float a = -1e30f, b = -1e30f;  // best and second best CPU score
      for (int c = 0; c < 3; ++c) {
        const float s = sc.f32()[c * V + v];
        if (s > a) {
          b = a;
          a = s;
        } else if (s > b) {
          b = s;
        }
      }
      if (double(a) - double(b) <= 2 * atol)
        ++near;
      else
        differ += mc.v[size_t(v)] != mg.v[size_t(v)];
    }
    EXPECT_EQ(differ, 0) << mode_name(mode);
    EXPECT_LT(near, V / 100) << mode_name(mode) << ": too many near-ties for a meaningful check";
  }
}

}  // namespace

namespace {

// Largest |logit| the network produces over every grid patch of the CPU predictor's normalised
// volume in each of the 8 mirrorings (the volume is at least one patch per axis: no padding).
double max_abs_logit(UNet3D& net, Context& cpu, const VolumePredictor& vp, const Index3& patch) {
  const Tensor& vol = vp.volume();
  Tensor x = Tensor::empty({1, 1, patch[2], patch[1], patch[0]});
  Tensor xm = Tensor::empty(x.shape());
  double mx = 0;
  for (const Index3& l : vp.locations()) {
    crop_or_pad(cpu, vol, x, CropOrPadParams{l[2], l[1], l[0], 0.f});
    for (int axes = 0; axes <= kMirrorAll; ++axes) {
      mirror(cpu, x, xm, axes);
      const Tensor& y = net.forward(cpu, xm);
      for (int64_t i = 0; i < y.numel(); ++i) mx = std::max(mx, double(std::fabs(y.f32()[i])));
    }
  }
  return mx;
}

}  // namespace

// Test-time mirroring and the probability maps on CUDA = on the CPU twins.
// Tolerances: each network pass's logits agree within 1e-4 * L (L = the largest |logit| of any
// pass, computed here; the convolution argument at the top of this file). Softmax is
// 1/2-Lipschitz per output in the max norm of its input (sum_j |dp_i/dx_j| = 2 p_i (1 - p_i)
// <= 1/2), so each pass's probabilities agree within 0.5e-4 * L, plus the expf difference
// between the backends (up to 2 ulp: a few 1e-7 of values <= 1, bounded by 1e-6 with the
// divide and multiply). The 1/8 average and the weighted aggregation are convex combinations
// and do not amplify: atol = 0.5e-4 * L + 1e-6 for the aggregated probabilities, with tta and
// without (there the softmax of logits that agree within 1e-4 * max|score| <= 1e-4 * L).
// Masks: equal wherever the CPU's two best probabilities are more than 2 atol apart.
TEST(InferenceParity, TtaAndProbabilitiesCudaMatchCpu) {
  CUSEG_REQUIRE_CUDA();
  Context cpu(Device::CPU), gpu(Device::CUDA);
  const UNetConfig nc{1, 3, {4, 8}};
  UNet3D net_c(nc, Device::CPU, 5), net_g(nc, Device::CUDA, 5);
  auto pc = net_c.parameters(), pg = net_g.parameters();
  for (size_t i = 0; i < pc.size(); ++i) pg[i]->value.copy_from(pc[i]->value);
  RunConfig cfg;
  cfg.clip = true;
  cfg.clip_lo = -250.f;
  cfg.clip_hi = 250.f;
  const IntensitySpec is = intensity_spec(cfg);
  const Image ct = random_image({30, 26, 16}, 8, -1024.f, 1500.f);
  GridOptions grid;
  grid.patch = {12, 12, 16};
  grid.overlap = 4;
  grid.batch = 3;
  double L = 0;  // the same patches in every mode
  {
    VolumePredictor vp(net_c, cpu, grid);
    vp.load(ct, &is, -1.f);
    L = max_abs_logit(net_c, cpu, vp, grid.patch);
  }
  const double atol = 0.5e-4 * L + 1e-6;
  for (AggregateMode mode : {AggregateMode::Crop, AggregateMode::Hann, AggregateMode::Gaussian})
    for (bool tta : {true, false}) {
      const std::string tag = std::string(mode_name(mode)) + (tta ? " tta" : " plain");
      GridOptions g = grid;
      g.mode = mode;
      g.tta = tta;
      VolumePredictor vc(net_c, cpu, g), vg(net_g, gpu, g);
      vc.load(ct, &is, -1.f);
      vg.load(ct, &is, -1.f);
      vc.run();
      vg.run();
      const LabelMap mc = vc.mask(), mg = vg.mask();
      const TransferStats t0 = transfer_stats();
      const std::vector<Image> pc_maps = vc.probabilities();
      const std::vector<Image> pg_maps = vg.probabilities();
      const TransferStats moved = transfer_stats() - t0;
      ASSERT_EQ(pg_maps.size(), 3u);
      const size_t V = pg_maps[0].v.size();
      // One download per class map, nothing else.
      EXPECT_EQ(moved.device_to_host_bytes, 3 * V * sizeof(float)) << tag;
      EXPECT_EQ(moved.device_to_host_copies, 3u) << tag;
      EXPECT_EQ(moved.host_to_device_bytes, 0u) << tag;

      double worst = 0;
      for (int c = 0; c < 3; ++c)
        for (size_t v = 0; v < V; ++v)
          worst = std::max(
              worst, std::fabs(double(pc_maps[size_t(c)].v[v]) - double(pg_maps[size_t(c)].v[v])));
      EXPECT_LE(worst, atol) << tag << " (L = " << L << ")";
      int64_t near = 0, differ = 0;
      for (size_t v = 0; v < V; ++v) {
        double a = -1, b = -1;
        for (int c = 0; c < 3; ++c) {
          const double p = pc_maps[size_t(c)].v[v];
          if (p > a) {
            b = a;
            a = p;
          } else if (p > b) {
            b = p;
          }
        }
        if (a - b <= 2 * atol)
          ++near;
        else
          differ += mc.v[v] != mg.v[v];
      }
      EXPECT_EQ(differ, 0) << tag;
      EXPECT_LT(near, int64_t(V) / 100) << tag << ": too many near-ties for a meaningful check";
    }
}
