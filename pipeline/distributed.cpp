// Data-parallel training glue (see distributed.h).
#include "cuseg/pipeline/distributed.h"

#include "cuseg/core/check.h"

namespace cuseg {

DistEnv TrainDist::environment(const std::string& mode) {
  if (mode == "none") return DistEnv{};
  CUSEG_REQUIRE(mode == "auto", "--dist " << mode << ": expected auto or none");
  return detect_dist_env();
}

TrainDist::TrainDist(const DistEnv& env, Context& ctx, double timeout_s) : env_(env) {
  if (env.distributed()) comm_ = make_communicator(ctx, env, CommOptions{timeout_s});
}

TrainDist::~TrainDist() = default;

void TrainDist::attach(UNet3D& net, Adam& adam, double bucket_mib) {
  if (!comm_) return;
  std::vector<Param*> params = net.parameters();
  // Adam's moments ride along as parameters of their own for the broadcast and the check.
  // (No gradient, no bf16 copy: only the value travels.)
  auto moment = [](const std::string& name, const Tensor& value) {
    Param m;
    m.name = name;
    m.value = value;
    return m;
  };
  std::vector<Param> moments;
  moments.reserve(2 * params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    moments.push_back(moment(params[i]->name + ".exp_avg", adam.exp_avg()[i]));
    moments.push_back(moment(params[i]->name + ".exp_avg_sq", adam.exp_avg_sq()[i]));
  }
  std::vector<Param*> all = params;
  for (Param& m : moments) all.push_back(&m);
  broadcast_parameters(*comm_, all);
  // The step counter too (bias correction): every rank must agree.
  double steps[2] = {double(adam.steps()), -double(adam.steps())};
  comm_->allreduce_host(steps, 2, ReduceOp::Max);
  CUSEG_CHECK(steps[0] == -steps[1] && steps[0] == double(adam.steps()),
              "ranks disagree on the optimiser step count (" << adam.steps() << " here)");
  sync_ = std::make_unique<GradientSync>(*comm_, params, size_t(bucket_mib * 1024 * 1024));
  GradientSync* sync = sync_.get();
  net.set_grad_ready_hook([sync](Context& c, const Param& p) { sync->mark_ready(c, &p); });
}

void TrainDist::begin_backward() {
  if (sync_) sync_->begin();
}

void TrainDist::finish_backward(Context& ctx) {
  if (sync_) sync_->finish(ctx);
}

double TrainDist::last_sync_wait_s() const {
  return sync_ ? sync_->finish_wait_seconds() : 0.0;
}

void TrainDist::sum(std::vector<double>& v) {
  if (comm_ && !v.empty()) comm_->allreduce_host(v.data(), v.size(), ReduceOp::Sum);
}

double TrainDist::average(double x) {
  if (comm_) comm_->allreduce_host(&x, 1, ReduceOp::Average);
  return x;
}

void TrainDist::barrier() {
  if (comm_) comm_->barrier();
}

}  // namespace cuseg
