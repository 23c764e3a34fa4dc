// Checkpoints in the safetensors format: 8-byte little-endian header length, a JSON header
// {name: {dtype, shape, data_offsets}, "__metadata__": {string: string}}, then raw
// little-endian tensor bytes. Written crash-safe (core/atomic_file.h: temporary file, fsync,
// rename, fsync of the folder): after an error or a kill the previous file is intact.
//
// Weights are stored under the PyTorch reference module's names in the PyTorch/torchio
// axis order: torchio tensors are (C, I, J, K) while ours are NCDHW with W = I, so a conv
// kernel [Cout, Cin, kD, kH, kW] is stored as [Cout, Cin, kI, kJ, kK] (spatial axes
// reversed). A checkpoint therefore loads with load_state_dict() into the reference module
// and gives the same segmentation on torchio data. Metadata "cuseg.kernel_axes" records it.
// Optimiser state goes to a companion file "<stem>.optim.safetensors" (exp_avg.<name>,
// exp_avg_sq.<name>, metadata step / lr / betas / eps); the weights' metadata "optimizer_step"
// names the step of the state that belongs to them, so a pair torn by a kill between the two
// writes is recognised (save_checkpoint writes the state under a pending name first,
// load_checkpoint takes whichever file matches and refuses a pair that does not).
#pragma once
#include <map>
#include <string>
#include <vector>

#include "cuseg/engine/optim.h"
#include "cuseg/engine/param.h"
#include "cuseg/engine/tensor.h"

namespace cuseg {

using Metadata = std::map<std::string, std::string>;

struct NamedTensor {
  std::string name;
  Tensor tensor;  // CPU
};

// Low level: any float32/uint8/int32 CPU tensors, stored as they are.
void write_safetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                       const Metadata& meta);
// Reads and validates (header length, JSON, dtypes, offsets cover the data exactly, file
// size). Throws cuseg::Error naming the file and the problem.
std::vector<NamedTensor> read_safetensors(const std::string& path, Metadata* meta = nullptr);

// Model weights (+ optional optimiser state companion file).
void save_checkpoint(const std::string& path, const std::vector<Param*>& params,
                     const Metadata& meta, const Adam* opt = nullptr);
// Loads weights into params (on their device) by name; every parameter must be present
// with the right shape. When opt is given and the companion file exists, restores it.
Metadata load_checkpoint(const std::string& path, const std::vector<Param*>& params,
                         Adam* opt = nullptr);

std::string optimizer_state_path(const std::string& checkpoint_path);

}  // namespace cuseg
