// The backend table: every op is registered ONCE per backend, in one table per device
// (the idea of ggml's backends: a table of op functions per backend and a supports_op query).
//
//   - An op is a struct of its arguments (engine/backend_ops.h), e.g. op::Conv3dForward
//     {x, w, b, y, relu}. The struct names the op (kId, kName), says what it returns
//     (Result) and carries the op's ONE shape/device check, check(ctx), shared by every
//     backend (defined in engine/ops.cpp).
//   - A Backend maps op ids to functions `Result fn(Context&, const Op&)`, optionally with a
//     predicate `bool supports(const Op&)` for ops that a backend implements only for some
//     arguments (e.g. a bf16 or channels-last variant). engine/backend_cpu.cpp fills the CPU
//     table, which is always built and is the reference every other backend is tested
//     against; engine/cuda/backend_cuda.cpp fills the CUDA table, built only with
//     CUSEG_HAVE_CUDA.
//   - run_op(ctx, op) checks the op, then calls the function of ctx's backend. Asking a
//     backend for an op it does not have throws, naming the op and the backend.
//
// Adding an op: an id in OpId, an argument struct in engine/backend_ops.h with its check()
// in engine/ops.cpp, one add<>() line per backend that implements it, and (optionally) a
// public function in engine/ops.h. docs/ARCHITECTURE.md ("Backends") says the same.
#pragma once
#include <array>
#include <cstddef>
#include <string>
#include <vector>

#include "cuseg/core/check.h"
#include "cuseg/engine/context.h"

namespace cuseg {

// One id per op of the table (index into every backend's table).
enum class OpId : int {
  Conv3dForward,
  Conv3dBackward,
  BiasRelu,
  ReluForward,
  ReluBackward,
  MaxPool3dForward,
  MaxPool3dBackward,
  Upsample2xForward,
  Upsample2xBackward,
  AddInplace,
  LabelHistogram,
  CrossEntropy,
  ArgmaxChannels,
  AdamStep,
  CropOrPad,
  GridAggregate,
  GridAggregateFinalize,
  RescaleIntensity,
  AffinePatchPresence,
  AffinePatch,
  Minmax,
  Mirror,
  SoftmaxMirrorAccumulate,
  // bf16 channels-last ops of the mixed-precision path (engine/precision.h).
  Conv3dForwardBf16,
  Conv3dBackwardBf16,
  MaxPool3dForwardBf16,
  MaxPool3dBackwardBf16,
  Upsample2xForwardBf16,
  Upsample2xBackwardBf16,
  CrossEntropyBf16,
  ArgmaxChannelsBf16,
  ConvertLayout,
  FilterCopy,
  Count
};
constexpr int kOpCount = int(OpId::Count);

class Backend {
 public:
  template <class Op>
  using Fn = typename Op::Result (*)(Context&, const Op&);
  template <class Op>
  using Pred = bool (*)(const Op&);

  Backend(Device device, const char* name) : device_(device), name_(name) {}
  Device device() const { return device_; }
  const char* name() const { return name_; }

  // Registers op Op (once: a second registration is a programming error). `supports`, when
  // given, narrows the op to the arguments this backend handles.
  template <class Op>
  void add(Fn<Op> fn, Pred<Op> supports = nullptr) {
    Entry& e = entries_[size_t(Op::kId)];
    CUSEG_CHECK(e.fn == nullptr, name_ << " backend: " << Op::kName << " registered twice");
    CUSEG_CHECK(fn != nullptr, name_ << " backend: " << Op::kName << " without a function");
    e.fn = reinterpret_cast<AnyFn>(fn);
    e.supports = reinterpret_cast<AnyFn>(supports);
    e.name = Op::kName;
  }

  // Whether the op is registered at all / for these arguments.
  bool has(OpId id) const { return entries_[size_t(id)].fn != nullptr; }
  template <class Op>
  bool supports(const Op& op) const {
    const Entry& e = entries_[size_t(Op::kId)];
    return e.fn && (!e.supports || reinterpret_cast<Pred<Op>>(e.supports)(op));
  }
  // Names of the registered ops, in OpId order.
  std::vector<std::string> op_names() const;

  // Calls the registered function (no check(): run_op() does that).
  template <class Op>
  typename Op::Result call(Context& ctx, const Op& op) const {
    CUSEG_CHECK(supports(op), Op::kName << " is not supported by the " << name_ << " backend"
                                        << (has(Op::kId) ? " for these arguments" : ""));
    return reinterpret_cast<Fn<Op>>(entries_[size_t(Op::kId)].fn)(ctx, op);
  }

 private:
  // Function pointers of different types are stored as one type and cast back to the type
  // they were registered with (a round trip the language guarantees).
  using AnyFn = void (*)();
  struct Entry {
    AnyFn fn = nullptr;
    AnyFn supports = nullptr;
    const char* name = nullptr;
  };
  Device device_;
  const char* name_;
  std::array<Entry, kOpCount> entries_{};
};

// The table of a device: CPU always; CUDA in CUDA builds (throws otherwise).
const Backend& backend(Device d);
// Whether device d's backend runs this op with these arguments (false for a device this
// build has no backend for).
bool backend_available(Device d);
template <class Op>
bool supports_op(Device d, const Op& op) {
  return backend_available(d) && backend(d).supports(op);
}

// Checks the op (its one shape/device check), then runs it on ctx's backend.
template <class Op>
typename Op::Result run_op(Context& ctx, const Op& op) {
  op.check(ctx);
  return backend(ctx.device()).call(ctx, op);
}

// The tables themselves (engine/backend_cpu.cpp, engine/cuda/backend_cuda.cpp).
const Backend& cpu_backend();
#if CUSEG_HAVE_CUDA
const Backend& cuda_backend();
#endif

}  // namespace cuseg
