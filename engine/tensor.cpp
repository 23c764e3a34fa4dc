#include "cuseg/engine/tensor.h"

#include <algorithm>
#include <cstring>
#include <sstream>
#include <type_traits>

#include "cuseg/core/check.h"
#if CUSEG_HAVE_CUDA
#include "cuseg/engine/cuda/runtime.h"
#endif

namespace cuseg {

namespace {
// One row per DType, in enum order (checked below).
constexpr DTypeInfo kDTypes[] = {
    {DType::F32, 4, "float32", "F32"}, {DType::BF16, 2, "bfloat16", "BF16"},
    {DType::F16, 2, "float16", "F16"}, {DType::U8, 1, "uint8", "U8"},
    {DType::I32, 4, "int32", "I32"},
};
constexpr bool rows_in_enum_order() {
  for (size_t i = 0; i < sizeof(kDTypes) / sizeof(kDTypes[0]); ++i)
    if (size_t(kDTypes[i].dtype) != i) return false;
  return true;
}
static_assert(rows_in_enum_order(), "kDTypes rows must follow the DType enum");
}  // namespace

const DTypeInfo& dtype_info(DType t) {
  const size_t i = size_t(t);
  CUSEG_CHECK(i < sizeof(kDTypes) / sizeof(kDTypes[0]), "unknown dtype " << i);
  return kDTypes[i];
}

const DTypeInfo* dtype_from_safetensors(const std::string& code) {
  for (const DTypeInfo& d : kDTypes)
    if (code == d.safetensors) return &d;
  return nullptr;
}

Storage::Storage(size_t b, Device d) : bytes(b), device(d) {
  ptr = memory_pool(d).allocate(b);
}
Storage::~Storage() {
  memory_pool(device).deallocate(ptr);
}

std::string shape_str(const Shape& s) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << "]";
  return os.str();
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (auto v : s) n *= v;
  return n;
}

static Shape packed_strides(const Shape& s) {
  Shape st(s.size());
  int64_t acc = 1;
  for (int i = int(s.size()) - 1; i >= 0; --i) {
    st[i] = acc;
    acc *= s[i];
  }
  return st;
}

Tensor Tensor::empty(const Shape& shape, DType dt, Device dev) {
  for (auto v : shape) CUSEG_CHECK(v >= 0, "negative extent in shape " << shape_str(shape));
#if !CUSEG_HAVE_CUDA
  CUSEG_CHECK(dev == Device::CPU, "this build has no CUDA backend");
#endif
  Tensor t;
  t.shape_ = shape;
  t.strides_ = packed_strides(shape);
  t.dtype_ = dt;
  t.device_ = dev;
  t.storage_ = std::make_shared<Storage>(size_t(shape_numel(shape)) * dtype_size(dt), dev);
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dt, Device dev) {
  Tensor t = empty(shape, dt, dev);
  t.zero();
  return t;
}

static Shape channels_last_strides(const Shape& s) {
  CUSEG_CHECK(s.size() == 5, "channels-last needs a 5-D shape, got " << shape_str(s));
  return {s[1] * s[2] * s[3] * s[4], 1, s[3] * s[4] * s[1], s[4] * s[1], s[1]};
}

// Elements from the first to one past the last a view can address.
static int64_t span_of(const Shape& shape, const Shape& strides) {
  int64_t span = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == 0) return 0;
    span += (shape[i] - 1) * strides[i];
  }
  return span;
}

Tensor Tensor::empty_strided(const Shape& shape, const Shape& strides, DType dt, Device dev) {
  CUSEG_CHECK(shape.size() == strides.size(),
              "shape " << shape_str(shape) << " with strides " << shape_str(strides));
  for (size_t i = 0; i < shape.size(); ++i)
    CUSEG_CHECK(shape[i] >= 0 && strides[i] >= 0,
                "bad extent or stride in " << shape_str(shape) << " / " << shape_str(strides));
#if !CUSEG_HAVE_CUDA
  CUSEG_CHECK(dev == Device::CPU, "this build has no CUDA backend");
#endif
  Tensor t;
  t.shape_ = shape;
  t.strides_ = strides;
  t.dtype_ = dt;
  t.device_ = dev;
  t.storage_ = std::make_shared<Storage>(size_t(span_of(shape, strides)) * dtype_size(dt), dev);
  return t;
}

Tensor Tensor::empty_channels_last(const Shape& shape, DType dt, Device dev) {
  return empty_strided(shape, channels_last_strides(shape), dt, dev);
}

Tensor Tensor::zeros_like(const Tensor& t) {
  CUSEG_CHECK(t.defined(), "zeros_like of an undefined tensor");
  if (t.is_contiguous()) return zeros(t.shape_, t.dtype_, t.device_);
  if (t.is_channels_last()) {
    // The buffer t is (or could be) a slice of: strides[4] channels.
    Shape wide = t.shape_;
    wide[1] = t.strides_[4];
    CUSEG_CHECK(t.strides_ == channels_last_strides(wide),
                "zeros_like: unsupported channels-last view " << shape_str(t.shape_) << " / "
                                                              << shape_str(t.strides_));
    Tensor buf = empty_channels_last(wide, t.dtype_, t.device_);
    buf.zero();
    return buf.channel_slice(0, t.shape_[1]);
  }
  CUSEG_CHECK(t.is_dense(), "zeros_like: unsupported view " << shape_str(t.strides_));
  Tensor z = empty_strided(t.shape_, t.strides_, t.dtype_, t.device_);
  z.zero();
  return z;
}

bool Tensor::is_contiguous() const {
  return strides_ == packed_strides(shape_);
}

bool Tensor::is_channels_last() const {
  // A single channel has no channel stride to speak of: a packed [N, 1, D, H, W] is both layouts.
  if (ndim() != 5 || (strides_[1] != 1 && shape_[1] != 1)) return false;
  const int64_t cs = strides_[4];
  return cs >= shape_[1] && strides_[3] == shape_[4] * cs &&
         strides_[2] == shape_[3] * shape_[4] * cs &&
         strides_[0] >= shape_[2] * shape_[3] * shape_[4] * cs;
}

bool Tensor::is_dense() const {
  if (numel() == 0) return true;
  // Dense: sorted by stride, each stride is the product of the extents of the faster dims.
  std::vector<size_t> order(shape_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return strides_[a] != strides_[b] ? strides_[a] < strides_[b] : a > b;
  });
  int64_t expect = 1;
  for (size_t i : order) {
    if (shape_[i] == 1) continue;
    if (strides_[i] != expect) return false;
    expect *= shape_[i];
  }
  return true;
}

void* Tensor::raw() const {
  CUSEG_CHECK(defined(), "tensor is undefined");
  return static_cast<char*>(storage_->ptr) + offset_ * int64_t(dtype_size(dtype_));
}

float* Tensor::f32() const {
  CUSEG_CHECK(dtype_ == DType::F32, "expected float32, tensor is " << dtype_name(dtype_));
  return data<float>();
}

Tensor Tensor::slice(int dim, int64_t a, int64_t b, const char* what) const {
  CUSEG_CHECK(ndim() > dim && a >= 0 && b <= shape_[dim] && a < b,
              "bad " << what << " [" << a << ", " << b << ") of " << shape_str(shape_));
  Tensor t = *this;
  t.offset_ = offset_ + a * strides_[dim];
  t.shape_[dim] = b - a;
  return t;
}

Tensor Tensor::channel_slice(int64_t c0, int64_t c1) const {
  return slice(1, c0, c1, "channel slice");
}

Tensor Tensor::batch_slice(int64_t n0, int64_t n1) const {
  return slice(0, n0, n1, "batch slice");
}

Tensor Tensor::reshape(const Shape& shape) const {
  CUSEG_CHECK(is_contiguous(), "reshape of a non-contiguous tensor");
  CUSEG_CHECK(shape_numel(shape) == numel(),
              "reshape " << shape_str(shape_) << " -> " << shape_str(shape));
  Tensor t = *this;
  t.shape_ = shape;
  t.strides_ = packed_strides(shape);
  return t;
}

Tensor Tensor::as_shape(const Shape& shape) const {
  CUSEG_CHECK(defined() && shape.size() == shape_.size(),
              "as_shape " << shape_str(shape_) << " -> " << shape_str(shape));
  const int64_t span = span_of(shape, strides_);
  CUSEG_CHECK(offset_ + span <= int64_t(storage_->bytes / dtype_size(dtype_)),
              "as_shape " << shape_str(shape) << " with strides " << shape_str(strides_)
                          << " reaches past the storage");
  Tensor t = *this;
  t.shape_ = shape;
  return t;
}

Vol Tensor::vol() const {
  CUSEG_CHECK(ndim() == 5, "expected a 5-D NCDHW tensor, got " << shape_str(shape_));
  // Everything inside a batch element must be packed.
  CUSEG_CHECK(strides_[4] == 1 && strides_[3] == shape_[4] &&
                  strides_[2] == shape_[3] * shape_[4] &&
                  strides_[1] == shape_[2] * shape_[3] * shape_[4],
              "tensor " << shape_str(shape_) << " is not packed within a batch element");
  Vol v;
  v.p = f32();
  v.n = int(shape_[0]);
  v.c = int(shape_[1]);
  v.d = int(shape_[2]);
  v.h = int(shape_[3]);
  v.w = int(shape_[4]);
  v.sn = strides_[0];
  return v;
}

template <class T>
VolCL<T> Tensor::cl() const {
  using U = std::remove_const_t<T>;
  constexpr DType want = std::is_same<U, float>::value ? DType::F32 : DType::BF16;
  static_assert(std::is_same<U, float>::value || std::is_same<U, bf16>::value,
                "cl<T>: T is float or bf16");
  CUSEG_CHECK(dtype_ == want,
              "expected a " << dtype_name(want) << " tensor, got " << dtype_name(dtype_));
  CUSEG_CHECK(is_channels_last(), "tensor " << shape_str(shape_) << " with strides "
                                            << shape_str(strides_) << " is not channels-last");
  VolCL<T> v;
  v.p = static_cast<T*>(raw());
  v.n = int(shape_[0]);
  v.c = int(shape_[1]);
  v.d = int(shape_[2]);
  v.h = int(shape_[3]);
  v.w = int(shape_[4]);
  v.cs = strides_[4];
  v.sn = strides_[0];
  return v;
}
template VolCL<float> Tensor::cl<float>() const;
template VolCL<const float> Tensor::cl<const float>() const;
template VolCL<bf16> Tensor::cl<bf16>() const;
template VolCL<const bf16> Tensor::cl<const bf16>() const;

// Rows of a (possibly batch-strided) tensor: `rows` blocks of `row_bytes`, `pitch` apart.
static void row_layout(const Tensor& t, size_t& rows, size_t& row_bytes, size_t& pitch) {
  const size_t es = dtype_size(t.dtype());
  if (t.is_contiguous() || t.ndim() == 0) {
    rows = 1;
    row_bytes = t.nbytes();
    pitch = row_bytes;
    return;
  }
  // Only the outermost dimension may be strided (batch stride of a channel slice).
  Shape inner(t.shape().begin() + 1, t.shape().end());
  Shape st = packed_strides(inner);
  for (size_t i = 0; i < st.size(); ++i)
    CUSEG_CHECK(st[i] == t.strides()[i + 1], "copy of an unsupported strided view");
  rows = size_t(t.shape()[0]);
  row_bytes = size_t(shape_numel(inner)) * es;
  pitch = size_t(t.strides()[0]) * es;
}

void Tensor::copy_from(const Tensor& src) {
  CUSEG_CHECK(src.shape_ == shape_,
              "copy " << shape_str(src.shape_) << " -> " << shape_str(shape_));
  CUSEG_CHECK(src.dtype_ == dtype_,
              "copy between dtypes " << dtype_name(src.dtype_) << " -> " << dtype_name(dtype_));
  if (!is_contiguous() && strides_ == src.strides_ && is_dense()) {
    // The same dense non-packed layout on both sides (e.g. a packed channels-last tensor):
    // one block of bytes.
    if (device_ == Device::CPU && src.device_ == Device::CPU) {
      std::memcpy(raw(), src.raw(), nbytes());
      return;
    }
#if CUSEG_HAVE_CUDA
    cuda_copy_2d(raw(), nbytes(), src.raw(), nbytes(), nbytes(), 1, device_ == Device::CUDA,
                 src.device_ == Device::CUDA);
    return;
#else
    CUSEG_THROW("this build has no CUDA backend");
#endif
  }
  size_t r0, b0, p0, r1, b1, p1;
  row_layout(src, r0, b0, p0);
  row_layout(*this, r1, b1, p1);
  // Normalise: express both as rows of the batch element size when either is strided.
  if (r0 != r1) {
    const size_t per = nbytes() / size_t(shape_[0]);
    if (r0 == 1) {
      r0 = size_t(shape_[0]);
      b0 = per;
      p0 = per;
    }
    if (r1 == 1) {
      r1 = size_t(shape_[0]);
      b1 = per;
      p1 = per;
    }
  }
  if (device_ == Device::CPU && src.device_ == Device::CPU) {
    const char* s = static_cast<const char*>(src.raw());
    char* d = static_cast<char*>(raw());
    for (size_t r = 0; r < r1; ++r) std::memcpy(d + r * p1, s + r * p0, b1);
    return;
  }
#if CUSEG_HAVE_CUDA
  cuda_copy_2d(raw(), p1, src.raw(), p0, b1, r1, device_ == Device::CUDA,
               src.device_ == Device::CUDA);
#else
  CUSEG_THROW("this build has no CUDA backend");
#endif
}

void Tensor::copy_from_host(const void* src, size_t bytes) {
  CUSEG_CHECK(is_contiguous() && bytes == nbytes(),
              "copy_from_host: " << bytes << " bytes into a " << (is_contiguous() ? "" : "strided ")
                                 << "tensor of " << nbytes());
  if (device_ == Device::CPU) {
    std::memcpy(raw(), src, bytes);
    return;
  }
#if CUSEG_HAVE_CUDA
  cuda_copy_2d(raw(), bytes, src, bytes, bytes, 1, true, false);
#endif
}

void Tensor::copy_to_host(void* dst, size_t bytes) const {
  CUSEG_CHECK(is_contiguous() && bytes == nbytes(),
              "copy_to_host: " << bytes << " bytes from a " << (is_contiguous() ? "" : "strided ")
                               << "tensor of " << nbytes());
  if (device_ == Device::CPU) {
    std::memcpy(dst, raw(), bytes);
    return;
  }
#if CUSEG_HAVE_CUDA
  cuda_copy_2d(dst, bytes, raw(), bytes, bytes, 1, false, true);
#endif
}

Tensor Tensor::to(Device dev) const {
  // A dense non-packed layout (channels-last) keeps its strides; anything else becomes packed.
  Tensor t = (!is_contiguous() && is_dense()) ? empty_strided(shape_, strides_, dtype_, dev)
                                              : empty(shape_, dtype_, dev);
  t.copy_from(*this);
  return t;
}

void Tensor::zero() {
  if (!is_contiguous() && is_dense()) {
    if (device_ == Device::CPU) {
      std::memset(raw(), 0, nbytes());
      return;
    }
#if CUSEG_HAVE_CUDA
    cuda_memset_2d(raw(), nbytes(), 0, nbytes(), 1);
#endif
    return;
  }
  if (is_channels_last() && dtype_size(dtype_) > 0) {
    // A channel slice of a channels-last tensor: the slice's channels of every voxel.
    CUSEG_CHECK(device_ == Device::CPU, "zero() of a channels-last slice on "
                                            << device_name(device_) << " (use an engine op)");
    const size_t es = dtype_size(dtype_);
    char* base = static_cast<char*>(raw());
    for (int64_t n = 0; n < shape_[0]; ++n)
      for (int64_t v = 0; v < shape_[2] * shape_[3] * shape_[4]; ++v)
        std::memset(base + (n * strides_[0] + v * strides_[4]) * int64_t(es), 0,
                    size_t(shape_[1]) * es);
    return;
  }
  size_t rows, rb, pitch;
  row_layout(*this, rows, rb, pitch);
  if (device_ == Device::CPU) {
    for (size_t r = 0; r < rows; ++r) std::memset(static_cast<char*>(raw()) + r * pitch, 0, rb);
    return;
  }
#if CUSEG_HAVE_CUDA
  cuda_memset_2d(raw(), pitch, 0, rb, rows);
#endif
}

void Tensor::fill(float v) {
  CUSEG_CHECK(dtype_ == DType::F32, "fill needs float32");
  if (device_ == Device::CPU) {
    CUSEG_CHECK(is_contiguous(), "fill of a strided view");
    float* p = f32();
    for (int64_t i = 0, n = numel(); i < n; ++i) p[i] = v;
    return;
  }
  Tensor h = Tensor::empty(shape_, dtype_, Device::CPU);
  h.fill(v);
  copy_from(h);
}

void Tensor::record_stream(Stream s) const {
  if (storage_) memory_pool(storage_->device).record_stream(storage_->ptr, s);
}

bool cuda_available() {
#if CUSEG_HAVE_CUDA
  return cuda_device_count() > 0;
#else
  return false;
#endif
}

}  // namespace cuseg
