#include "cuseg/engine/checkpoint.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cuseg/core/check.h"

namespace cuseg {

namespace {

using json = nlohmann::json;

// Conv kernels: ours [Co, Ci, kD, kH, kW] <-> stored [Co, Ci, kI=kW, kJ=kH, kK=kD].
Tensor reverse_spatial(const Tensor& t) {
  if (t.ndim() != 5) return t;
  const Shape& s = t.shape();
  Tensor out = Tensor::empty({s[0], s[1], s[4], s[3], s[2]}, DType::F32, Device::CPU);
  const float* src = t.f32();
  float* dst = out.f32();
  for (int64_t oc = 0; oc < s[0] * s[1]; ++oc)
    for (int64_t a = 0; a < s[2]; ++a)
      for (int64_t b = 0; b < s[3]; ++b)
        for (int64_t c = 0; c < s[4]; ++c)
          dst[((oc * s[4] + c) * s[3] + b) * s[2] + a] =
              src[((oc * s[2] + a) * s[3] + b) * s[4] + c];
  return out;
}

std::string stem_of(const std::string& path) {
  const std::string ext = ".safetensors";
  if (path.size() > ext.size() && path.compare(path.size() - ext.size(), ext.size(), ext) == 0)
    return path.substr(0, path.size() - ext.size());
  return path;
}

}  // namespace

std::string optimizer_state_path(const std::string& checkpoint_path) {
  return stem_of(checkpoint_path) + ".optim.safetensors";
}

void write_safetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                       const Metadata& meta) {
  json header = json::object();
  size_t offset = 0;
  for (const auto& nt : tensors) {
    CUSEG_CHECK(nt.tensor.device() == Device::CPU && nt.tensor.is_contiguous(),
                "safetensors: tensor " << nt.name << " must be a contiguous CPU tensor");
    CUSEG_CHECK(!header.contains(nt.name), "safetensors: duplicate tensor name " << nt.name);
    const size_t bytes = nt.tensor.nbytes();
    header[nt.name] = {{"dtype", dtype_info(nt.tensor.dtype()).safetensors},
                       {"shape", nt.tensor.shape()},
                       {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  if (!meta.empty()) header["__metadata__"] = meta;
  std::string h = header.dump();
  while (h.size() % 8) h.push_back(' ');  // the format allows trailing spaces; aligns the data
  const uint64_t hlen = h.size();

  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    CUSEG_REQUIRE(out.good(), "cannot open " << tmp << " for writing");
    unsigned char lenbuf[8];
    for (int i = 0; i < 8; ++i) lenbuf[i] = static_cast<unsigned char>(hlen >> (8 * i));
    out.write(reinterpret_cast<const char*>(lenbuf), 8);
    out.write(h.data(), std::streamsize(h.size()));
    for (const auto& nt : tensors)
      out.write(static_cast<const char*>(nt.tensor.raw()), std::streamsize(nt.tensor.nbytes()));
    out.flush();
    if (!out.good()) {
      std::remove(tmp.c_str());
      CUSEG_THROW("write failed for " << tmp << " (disk full?)");
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    CUSEG_THROW("cannot rename " << tmp << " to " << path);
  }
}

std::vector<NamedTensor> read_safetensors(const std::string& path, Metadata* meta) {
  std::ifstream in(path, std::ios::binary);
  CUSEG_REQUIRE(in.good(), "cannot open checkpoint " << path);
  in.seekg(0, std::ios::end);
  const uint64_t fsize = uint64_t(in.tellg());
  in.seekg(0);
  CUSEG_REQUIRE(fsize >= 8, path << ": not a safetensors file (only " << fsize << " bytes)");
  unsigned char lenbuf[8];
  in.read(reinterpret_cast<char*>(lenbuf), 8);
  uint64_t hlen = 0;
  for (int i = 0; i < 8; ++i) hlen |= uint64_t(lenbuf[i]) << (8 * i);
  CUSEG_REQUIRE(hlen <= fsize - 8 && hlen < (uint64_t(100) << 20),
                path << ": safetensors header length " << hlen << " exceeds the file (" << fsize
                     << " bytes): truncated or not a safetensors file");
  std::string h(hlen, '\0');
  in.read(&h[0], std::streamsize(hlen));
  json header;
  try {
    header = json::parse(h);
  } catch (const std::exception& e) {
    CUSEG_THROW(path << ": safetensors header is not valid JSON (" << e.what() << ")");
  }
  CUSEG_REQUIRE(header.is_object(), path << ": safetensors header is not a JSON object");
  const uint64_t data_bytes = fsize - 8 - hlen;
  std::vector<NamedTensor> out;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (meta)
        for (auto m = it->begin(); m != it->end(); ++m)
          (*meta)[m.key()] = m->is_string() ? m->get<std::string>() : m->dump();
      continue;
    }
    const json& e = it.value();
    const DTypeInfo* info = e.is_object() && e.contains("dtype") && e["dtype"].is_string()
                                ? dtype_from_safetensors(e["dtype"].get<std::string>())
                                : nullptr;
    CUSEG_REQUIRE(info && e.contains("shape") && e["shape"].is_array() &&
                      e.contains("data_offsets") && e["data_offsets"].is_array() &&
                      e["data_offsets"].size() == 2,
                  path << ": bad safetensors entry for '" << it.key() << "'");
    const DType dt = info->dtype;
    Shape shape;
    for (const auto& d : e["shape"]) {
      CUSEG_REQUIRE(d.is_number_integer() && d.get<int64_t>() >= 0,
                    path << ": bad shape for '" << it.key() << "'");
      shape.push_back(d.get<int64_t>());
    }
    const uint64_t b = e["data_offsets"][0].get<uint64_t>(),
                   en = e["data_offsets"][1].get<uint64_t>();
    const uint64_t want = uint64_t(shape_numel(shape)) * dtype_size(dt);
    CUSEG_REQUIRE(b <= en && en <= data_bytes && en - b == want,
                  path << ": tensor '" << it.key() << "' has data_offsets [" << b << ", " << en
                       << ") but needs " << want << " bytes within " << data_bytes
                       << " data bytes: truncated or corrupted file");
    Tensor t = Tensor::empty(shape, dt, Device::CPU);
    in.seekg(std::streamoff(8 + hlen + b));
    in.read(static_cast<char*>(t.raw()), std::streamsize(want));
    CUSEG_REQUIRE(in.good(), path << ": read failed for tensor '" << it.key() << "'");
    ranges.emplace_back(b, en);
    out.push_back({it.key(), t});
  }
  // The byte buffer must be covered exactly once (the format forbids holes and overlaps).
  std::sort(ranges.begin(), ranges.end());
  uint64_t pos = 0;
  for (auto& r : ranges) {
    CUSEG_REQUIRE(r.first == pos, path << ": safetensors data has a hole or overlap at byte " << pos
                                       << ": corrupted file");
    pos = r.second;
  }
  CUSEG_REQUIRE(pos == data_bytes, path << ": " << data_bytes - pos
                                        << " trailing bytes after the last tensor: corrupted file");
  return out;
}

void save_checkpoint(const std::string& path, const std::vector<Param*>& params,
                     const Metadata& meta, const Adam* opt) {
  std::vector<NamedTensor> ts;
  for (const Param* p : params) ts.push_back({p->name, reverse_spatial(p->value.to(Device::CPU))});
  Metadata m = meta;
  m["format"] = "pt";
  m["cuseg.kernel_axes"] = "IJK (torchio order; engine tensors are DHW = KJI)";
  if (opt) {
    // Optimiser state first: the weights file is renamed into place last, so a reader never
    // sees new weights with stale state.
    std::vector<NamedTensor> os;
    for (size_t i = 0; i < params.size(); ++i) {
      Adam& a = const_cast<Adam&>(*opt);
      os.push_back({"exp_avg." + params[i]->name, a.exp_avg()[i].to(Device::CPU)});
      os.push_back({"exp_avg_sq." + params[i]->name, a.exp_avg_sq()[i].to(Device::CPU)});
    }
    Adam& a = const_cast<Adam&>(*opt);
    Metadata om = {{"step", std::to_string(opt->steps())},
                   {"lr", std::to_string(a.config().lr)},
                   {"beta1", std::to_string(a.config().beta1)},
                   {"beta2", std::to_string(a.config().beta2)},
                   {"eps", std::to_string(a.config().eps)}};
    write_safetensors(optimizer_state_path(path), os, om);
    m["optimizer_step"] = std::to_string(opt->steps());
  }
  write_safetensors(path, ts, m);
}

Metadata load_checkpoint(const std::string& path, const std::vector<Param*>& params, Adam* opt) {
  Metadata meta;
  auto ts = read_safetensors(path, &meta);
  std::map<std::string, Tensor> by_name;
  for (auto& nt : ts) by_name[nt.name] = nt.tensor;
  for (Param* p : params) {
    auto it = by_name.find(p->name);
    CUSEG_REQUIRE(it != by_name.end(), path << ": missing parameter '" << p->name << "'");
    Tensor t = reverse_spatial(it->second);
    CUSEG_REQUIRE(t.shape() == p->value.shape() && t.dtype() == DType::F32,
                  path << ": parameter '" << p->name << "' has shape "
                       << shape_str(it->second.shape()) << ", model expects (stored order) "
                       << shape_str(reverse_spatial(Tensor::empty(p->value.shape())).shape()));
    p->value.copy_from(t);
  }
  CUSEG_REQUIRE(by_name.size() == params.size(),
                path << ": holds " << by_name.size() << " tensors, the model has " << params.size()
                     << " parameters (a different network configuration?)");
  if (opt) {
    const std::string op = optimizer_state_path(path);
    std::ifstream probe(op);
    if (probe.good()) {
      Metadata om;
      auto os = read_safetensors(op, &om);
      std::map<std::string, Tensor> ob;
      for (auto& nt : os) ob[nt.name] = nt.tensor;
      for (size_t i = 0; i < params.size(); ++i) {
        for (int which = 0; which < 2; ++which) {
          const std::string n = (which ? "exp_avg_sq." : "exp_avg.") + params[i]->name;
          auto it = ob.find(n);
          CUSEG_REQUIRE(it != ob.end() && it->second.shape() == params[i]->value.shape(),
                        op << ": missing or mis-shaped optimiser tensor '" << n << "'");
          (which ? opt->exp_avg_sq()[i] : opt->exp_avg()[i]).copy_from(it->second);
        }
      }
      CUSEG_REQUIRE(om.count("step"), op << ": no 'step' in metadata");
      opt->set_steps(std::stoll(om["step"]));
    }
  }
  return meta;
}

}  // namespace cuseg
