// Tensor: a typed, strided view of pooled device memory.
//
// Layout convention: 5-D activations are NCDHW with W fastest. Views may have a batch
// stride larger than C*D*H*W (channel slices for zero-copy concat); everything inside one
// batch element is packed. Storage comes from the device's MemoryPool and is shared by
// views (shared_ptr), so a view keeps its parent's memory alive.
//
// The bf16 path stores activations channels-last (NDHWC, C fastest). Dims stay in NCDHW order
// (as cuDNN takes them) and the layout is in the strides: {D*H*W*C, 1, H*W*C, W*C, C} for a
// packed tensor (empty_channels_last); a channel slice keeps the wider tensor's strides, so
// its voxel stride (strides[4]) is larger than its channel count. cl<T>() gives kernels that
// view; vol() refuses it.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cuseg/engine/memory.h"
#include "cuseg/kernels/bf16.h"
#include "cuseg/kernels/common.h"

namespace cuseg {

enum class DType { F32, BF16, F16, U8, I32 };
// Everything cuseg knows about a dtype, in one table (engine/tensor.cpp): adding a dtype is
// one enum value and one row there.
struct DTypeInfo {
  DType dtype;
  size_t size;              // bytes per element
  const char* name;         // "float32": messages and reports
  const char* safetensors;  // the safetensors format's code: "F32"
};
const DTypeInfo& dtype_info(DType t);
// The dtype whose safetensors code is `code`; nullptr when none is.
const DTypeInfo* dtype_from_safetensors(const std::string& code);
inline size_t dtype_size(DType t) {
  return dtype_info(t).size;
}
inline const char* dtype_name(DType t) {
  return dtype_info(t).name;
}

struct Storage {
  void* ptr = nullptr;
  size_t bytes = 0;
  Device device = Device::CPU;
  Storage(size_t bytes, Device d);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
};

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& s);
int64_t shape_numel(const Shape& s);

class Tensor {
 public:
  Tensor() = default;
  static Tensor empty(const Shape& shape, DType dt = DType::F32, Device dev = Device::CPU);
  static Tensor zeros(const Shape& shape, DType dt = DType::F32, Device dev = Device::CPU);
  // 5-D [N, C, D, H, W] in channels-last order (see the file comment).
  static Tensor empty_channels_last(const Shape& shape, DType dt, Device dev);
  // Any strides over a storage that spans them (non-negative strides).
  static Tensor empty_strided(const Shape& shape, const Shape& strides, DType dt, Device dev);
  // Zeros in t's dtype, device and layout. When t is a channel slice [0, c) of a wider
  // channels-last tensor (the bf16 logits are [0, classes) of a buffer padded to a multiple of
  // 8 channels), the result is the same slice of a new zeroed buffer of the wider shape, so
  // its padding channels are 0 too.
  static Tensor zeros_like(const Tensor& t);

  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  const Shape& strides() const { return strides_; }
  int ndim() const { return int(shape_.size()); }
  int64_t dim(int i) const { return shape_[i < 0 ? i + ndim() : i]; }
  int64_t numel() const { return shape_numel(shape_); }
  size_t nbytes() const { return size_t(numel()) * dtype_size(dtype_); }
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  bool is_contiguous() const;
  // Channels-last 5-D layout: strides[1] == 1 and the voxel stride >= C (possibly a slice).
  bool is_channels_last() const;
  // Strides order the elements densely (one block of numel() elements, some permutation).
  bool is_dense() const;

  void* raw() const;
  template <class T>
  T* data() const {
    return static_cast<T*>(raw());
  }
  float* f32() const;  // checks dtype == F32

  // View of channels [c0, c1) of an N x C x ... tensor (shares storage).
  Tensor channel_slice(int64_t c0, int64_t c1) const;
  // View of rows [n0, n1) of the first dimension (e.g. batch elements; shares storage).
  Tensor batch_slice(int64_t n0, int64_t n1) const;
  // Same storage, new shape (contiguous tensors only).
  Tensor reshape(const Shape& shape) const;
  // Same storage, offset and strides, another shape; throws unless every element of the result
  // lies inside the storage. Widens a channel slice back to its buffer (e.g. the bf16 logits
  // [0, classes) to all their padded channels).
  Tensor as_shape(const Shape& shape) const;

  // The Vol view used by kernels (5-D float, packed within each batch element).
  Vol vol() const;
  // The channels-last view (5-D, is_channels_last()); T is float or bf16 and must match the
  // dtype (const T for reading).
  template <class T>
  VolCL<T> cl() const;

  // Copies (contiguous or batch-strided, or dense with equal strides) between any devices;
  // shapes must match.
  void copy_from(const Tensor& src);
  // Whole contiguous tensor from / to plain host memory of nbytes() bytes (a memcpy on the
  // CPU, one host <-> device copy on CUDA, counted in transfer_stats()).
  void copy_from_host(const void* src, size_t bytes);
  void copy_to_host(void* dst, size_t bytes) const;
  Tensor to(Device dev) const;
  Tensor clone() const { return to(device_); }
  void zero();
  void fill(float v);  // F32 only

  // Declares that work queued on `s` uses this tensor's storage, so that the pool does not
  // hand the memory to another stream before that work is done (engine/memory.h). Needed
  // whenever a tensor allocated on one stream is used on another (copy or NCCL streams).
  void record_stream(Stream s) const;

 private:
  // View of [a, b) along dimension `dim` (shares storage); `what` names the slice in errors.
  Tensor slice(int dim, int64_t a, int64_t b, const char* what) const;

  std::shared_ptr<Storage> storage_;
  int64_t offset_ = 0;  // elements
  Shape shape_, strides_;
  DType dtype_ = DType::F32;
  Device device_ = Device::CPU;
};

// Whether a CUDA device answers (false in CPU-only builds or without a driver/GPU).
bool cuda_available();

}  // namespace cuseg
