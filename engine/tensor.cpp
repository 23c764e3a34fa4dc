#include "cuseg/engine/tensor.h"

#include <cstring>
#include <sstream>

#include "cuseg/core/check.h"
#if CUSEG_HAVE_CUDA
#include "cuseg/engine/cuda/runtime.h"
#endif

namespace cuseg {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32:
      return 4;
    case DType::BF16:
      return 2;
    case DType::F16:
      return 2;
    case DType::U8:
      return 1;
    case DType::I32:
      return 4;
  }
  return 0;
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32:
      return "float32";
    case DType::BF16:
      return "bfloat16";
    case DType::F16:
      return "float16";
    case DType::U8:
      return "uint8";
    case DType::I32:
      return "int32";
  }
  return "?";
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

bool Tensor::is_contiguous() const {
  return strides_ == packed_strides(shape_);
}

void* Tensor::raw() const {
  CUSEG_CHECK(defined(), "tensor is undefined");
  return static_cast<char*>(storage_->ptr) + offset_ * int64_t(dtype_size(dtype_));
}

float* Tensor::f32() const {
  CUSEG_CHECK(dtype_ == DType::F32, "expected float32, tensor is " << dtype_name(dtype_));
  return data<float>();
}

Tensor Tensor::channel_slice(int64_t c0, int64_t c1) const {
  CUSEG_CHECK(ndim() >= 2 && c0 >= 0 && c1 <= shape_[1] && c0 < c1,
              "bad channel slice [" << c0 << ", " << c1 << ") of " << shape_str(shape_));
  Tensor t = *this;
  t.offset_ = offset_ + c0 * strides_[1];
  t.shape_[1] = c1 - c0;
  return t;
}

Tensor Tensor::batch_slice(int64_t n0, int64_t n1) const {
  CUSEG_CHECK(ndim() >= 1 && n0 >= 0 && n1 <= shape_[0] && n0 < n1,
              "bad batch slice [" << n0 << ", " << n1 << ") of " << shape_str(shape_));
  Tensor t = *this;
  t.offset_ = offset_ + n0 * strides_[0];
  t.shape_[0] = n1 - n0;
  return t;
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

Tensor Tensor::to(Device dev) const {
  Tensor t = empty(shape_, dtype_, dev);
  t.copy_from(*this);
  return t;
}

void Tensor::zero() {
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

bool cuda_available() {
#if CUSEG_HAVE_CUDA
  return cuda_device_count() > 0;
#else
  return false;
#endif
}

}  // namespace cuseg
