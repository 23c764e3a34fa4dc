// The fused patch op on the device (kernels/affine_patch.cu, data/device_patches.h) against its
// CPU twin. Tolerance: none. Both sides make every decision with the same integer arithmetic
// (Philox counters, fixed-point coordinates) and the same round-to-nearest double operations in
// the same order (kernels/affine_patch.h: __dmul_rn/__dadd_rn on the device, no contraction on
// the host), so labels, centres and images must be bit-identical (0 ulp).
#include <gtest/gtest.h>

#include <cstring>

#include "cuseg/data/device_patches.h"
#include "cuseg/data/patch_pipeline.h"
#include "cuseg/engine/context.h"
#include "cuseg/engine/tensor.h"
#if CUSEG_HAVE_CUDA
#include "cuseg/engine/cuda/async.h"
#endif
#include "opcases/op_cases.h"
#include "patch_fixture.h"
#include "test_util.h"

using namespace cuseg;
using namespace cuseg::data;

namespace {

// n subjects around a (w, h, d) grid (extents differ a little per subject).
std::vector<std::shared_ptr<const PatchSubject>> subjects(const PatchSpec& spec, int n, int w = 27,
                                                          int h = 23, int d = 19) {
  std::vector<std::shared_ptr<const PatchSubject>> subs;
  for (int s = 0; s < n; ++s) {
    Image im;
    LabelMap lb;
    test::patch_test_volume({w + 2 * s, h, d - s}, 300 + uint64_t(s), &im, &lb);
    subs.push_back(std::make_shared<const PatchSubject>(
        make_patch_subject("s" + std::to_string(s), im, lb, spec)));
  }
  return subs;
}

PatchSpec spec_for(PatchStorage st, PatchOutType out, const Index3& patch = {12, 10, 8}) {
  PatchSpec s;
  s.patch = patch;
  s.storage = st;
  s.out_type = out;
  s.patch_pad_value = -1.f;
  return s;
}

struct Bytes {
  std::vector<uint8_t> image, label;
};

Bytes host_run(const std::vector<std::shared_ptr<const PatchSubject>>& subs, const PatchSpec& spec,
               const PatchOrder& order, uint32_t epoch, int64_t first, int64_t count) {
  HostPatchPipeline pipe([&](int s) { return subs[size_t(s)]; }, spec, order, 2);
  pipe.seek(epoch, first);
  const size_t voxels = size_t(spec.patch[0]) * spec.patch[1] * spec.patch[2];
  const size_t vb = spec.out_type == kOutBF16 ? 2 : 4;
  Bytes b;
  b.image.resize(size_t(count) * voxels * vb);
  b.label.resize(size_t(count) * voxels);
  pipe.next(int(count), b.image.data(), b.label.data());
  return b;
}

Bytes device_run(const std::vector<std::shared_ptr<const PatchSubject>>& subs,
                 const PatchSpec& spec, const PatchOrder& order, uint32_t epoch, int64_t first,
                 int64_t count, size_t budget, DevicePatchInfo* info = nullptr) {
  Context ctx(Device::CUDA);
  DevicePatchPipeline pipe(subs, spec, order, ctx, budget);
  const int64_t voxels = int64_t(spec.patch[0]) * spec.patch[1] * spec.patch[2];
  Tensor img = Tensor::empty({count * voxels}, spec.out_type == kOutBF16 ? DType::BF16 : DType::F32,
                             Device::CUDA);
  Tensor lab = Tensor::empty({count * voxels}, DType::U8, Device::CUDA);
  pipe.seek(epoch, first);
  // In batches of 2, as the trainer asks.
  for (int64_t c = 0; c < count; c += 2) {
    const int n = int(std::min<int64_t>(2, count - c));
    const size_t vb = spec.out_type == kOutBF16 ? 2 : 4;
    pipe.next(n, static_cast<uint8_t*>(img.raw()) + size_t(c * voxels) * vb,
              lab.data<uint8_t>() + c * voxels);
  }
  ctx.synchronize();
  if (info) *info = pipe.info();
  Tensor hi = img.to(Device::CPU), hl = lab.to(Device::CPU);
  Bytes b;
  b.image.assign(static_cast<uint8_t*>(hi.raw()), static_cast<uint8_t*>(hi.raw()) + hi.nbytes());
  b.label.assign(hl.data<uint8_t>(), hl.data<uint8_t>() + hl.nbytes());
  return b;
}

PatchOrder order_for(int n) {
  PatchOrder o;
  o.num_subjects = n;
  o.samples_per_volume = 3;
  o.max_length = 6;  // 2 visits per fill
  o.seed = 77;
  return o;
}

}  // namespace

// Every parity case of the op's case list (tests/opcases/op_cases.h: storages, output types,
// a padded patch), a whole epoch and a bit of the next: the device stream is the host stream,
// byte for byte (tolerance: the list's, exact).
TEST(AffinePatchCuda, DeviceStreamEqualsHostStream) {
  CUSEG_REQUIRE_CUDA();
  const auto& spec_list = opcases::affine_patch();
  ASSERT_EQ(spec_list.parity.atol, 0.0) << spec_list.parity.why;
  for (const auto& c : opcases::with_use(spec_list.cases, opcases::kParity)) {
    const PatchSpec spec =
        spec_for(PatchStorage(c.storage), PatchOutType(c.out), {c.pw, c.ph, c.pd});
    const auto subs = subjects(spec, 4, c.w, c.h, c.d);
    const PatchOrder order = order_for(4);
    const int64_t n = 12 + 4;  // epoch of 12 patches, then 4 of the next
    const Bytes h = host_run(subs, spec, order, 1, 0, n);
    const Bytes d = device_run(subs, spec, order, 1, 0, n, 0);
    EXPECT_EQ(h.label, d.label) << c.label << " " << c.str() << ": " << spec_list.parity.why;
    EXPECT_EQ(h.image, d.image) << c.label << " " << c.str() << ": " << spec_list.parity.why;
  }
}

// Padding (a patch larger than the volume on one axis) and a resume in the middle of a fill.
TEST(AffinePatchCuda, PaddedPatchesAndResume) {
  CUSEG_REQUIRE_CUDA();
  const PatchSpec spec = spec_for(kStoreI16, kOutF32, {14, 30, 8});
  const auto subs = subjects(spec, 3);
  const PatchOrder order = order_for(3);
  const Bytes h = host_run(subs, spec, order, 4, 5, 4);
  const Bytes d = device_run(subs, spec, order, 4, 5, 4, 0);
  EXPECT_EQ(h.label, d.label);
  EXPECT_EQ(h.image, d.image);
}

// Streaming: a budget that holds the staging slots and one subject; the rest come from
// page-locked memory through the copy stream. Same bytes.
TEST(AffinePatchCuda, StreamedSubjectsGiveTheSamePatches) {
  CUSEG_REQUIRE_CUDA();
  const PatchSpec spec = spec_for(kStoreI16, kOutF32);
  const auto subs = subjects(spec, 5);
  const PatchOrder order = order_for(5);
  size_t biggest = 0;
  for (const auto& s : subs) biggest = std::max(biggest, s->bytes() + 4096);
  const size_t budget = 2 * 2 * biggest + biggest;  // 2 fills x 2 visits of slots + ~one blob
  DevicePatchInfo info;
  const Bytes d = device_run(subs, spec, order, 0, 0, 15 + 6, budget, &info);
  EXPECT_GE(info.streamed_subjects, 3) << info.summary();
  const Bytes h = host_run(subs, spec, order, 0, 0, 15 + 6);
  EXPECT_EQ(h.label, d.label) << info.summary();
  EXPECT_EQ(h.image, d.image) << info.summary();
}

#if CUSEG_HAVE_CUDA
// The presence kernel and the fused kernel's centre draw against the CPU twin, visit by visit:
// same present flags, same witnesses, same centres, candidate counts and fallback flags.
TEST(AffinePatchCuda, PresenceAndCentresMatchTheCpu) {
  CUSEG_REQUIRE_CUDA();
  const PatchSpec spec = spec_for(kStoreF32, kOutF32);
  Image im;
  LabelMap lb;
  test::patch_test_volume({29, 23, 19}, 11, &im, &lb);
  const PatchSubject s = make_patch_subject("fixture", im, lb, spec);
  // Device copies of the subject's volume and lists.
  auto upload = [](const void* p, size_t bytes) {
    Tensor h = Tensor::empty({int64_t(bytes)}, DType::U8);
    std::memcpy(h.raw(), p, bytes);
    return h.to(Device::CUDA);
  };
  const Tensor dimg = upload(s.image.data(), s.image.size());
  const Tensor dlab = upload(s.label.data(), s.label.size());
  std::vector<Tensor> dlists;
  std::vector<const int32_t*> lists;
  for (const auto& t : s.tables) {
    if (!t.list_mode) {
      lists.push_back(nullptr);
      continue;
    }
    dlists.push_back(upload(t.list.data(), t.list.size() * 4));
    lists.push_back(static_cast<const int32_t*>(dlists.back().raw()));
  }
  PatchSource dsrc = s.source();
  dsrc.image = dimg.raw();
  dsrc.label = dlab.data<uint8_t>();
  Context ctx(Device::CUDA);
  RandomAffineConfig cfg;
  cfg.max_translation_mm = 8;
  for (uint32_t visit = 0; visit < 24; ++visit) {
    const PhiloxStream st{5, 0, 0};
    PatchSpec vs = spec;
    vs.affine = cfg;
    const AffineParams ap = visit_affine(vs, st, visit);
    const PatchVisit hv = plan_visit_host(s, spec, ap, st);
    const PatchVisit dv = plan_visit(s, spec, ap, dsrc, lists, st);
    std::vector<uint8_t> hp(size_t(hv.num_labels));
    std::vector<int32_t> hw(size_t(3 * hv.num_labels));
    affine_patch_presence_cpu(hv, hp.data(), hw.data());
    Tensor dp = Tensor::empty({kMaxPatchLabels}, DType::U8, Device::CUDA);
    Tensor dw = Tensor::empty({3 * kMaxPatchLabels}, DType::I32, Device::CUDA);
    affine_patch_presence_cuda(dv, dp.data<uint8_t>(), dw.data<int32_t>(), context_stream(ctx));
    ctx.synchronize();
    const Tensor hp2 = dp.to(Device::CPU), hw2 = dw.to(Device::CPU);
    for (int l = 0; l < hv.num_labels; ++l) {
      EXPECT_EQ(hp[size_t(l)], hp2.data<uint8_t>()[l]) << "visit " << visit << " label " << l;
      for (int a = 0; a < 3; ++a)
        EXPECT_EQ(hw[size_t(3 * l + a)], hw2.data<int32_t>()[3 * l + a]) << "visit " << visit;
    }
    for (int l = 0; l < hv.num_labels; ++l) {
      if (!hp[size_t(l)]) continue;
      PatchJob job;
      job.patch = visit * 7 + uint32_t(l);
      job.label_slot = l;
      for (int a = 0; a < 3; ++a) job.witness[a] = hw[size_t(3 * l + a)];
      for (int a = 0; a < 3; ++a) job.patch_size[a] = spec.patch[size_t(a)];
      const size_t voxels = size_t(spec.patch[0]) * spec.patch[1] * spec.patch[2];
      std::vector<float> himg(voxels);
      std::vector<uint8_t> hlab(voxels);
      int32_t hc[5];
      job.image_out = himg.data();
      job.label_out = hlab.data();
      job.centre_out = hc;
      affine_patch_cpu(hv, job);
      Tensor di = Tensor::empty({int64_t(voxels)}, DType::F32, Device::CUDA);
      Tensor dl = Tensor::empty({int64_t(voxels)}, DType::U8, Device::CUDA);
      Tensor dc = Tensor::empty({5}, DType::I32, Device::CUDA);
      job.image_out = di.raw();
      job.label_out = dl.data<uint8_t>();
      job.centre_out = dc.data<int32_t>();
      affine_patch_cuda(dv, job, context_stream(ctx));
      ctx.synchronize();
      const Tensor ci = di.to(Device::CPU), cl = dl.to(Device::CPU), cc = dc.to(Device::CPU);
      EXPECT_EQ(std::vector<int32_t>(hc, hc + 5),
                std::vector<int32_t>(cc.data<int32_t>(), cc.data<int32_t>() + 5))
          << "visit " << visit << " label " << l;
      EXPECT_EQ(0, std::memcmp(himg.data(), ci.raw(), voxels * 4)) << "visit " << visit;
      EXPECT_EQ(0, std::memcmp(hlab.data(), cl.raw(), voxels)) << "visit " << visit;
    }
  }
}
#endif  // CUSEG_HAVE_CUDA
