#include "cuseg/engine/checkpoint.h"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cuseg/core/atomic_file.h"
#include "cuseg/core/check.h"

namespace fs = std::filesystem;

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

// Where save_checkpoint() puts the optimiser state until the weights are committed.
std::string pending_state_path(const std::string& checkpoint_path) {
  return optimizer_state_path(checkpoint_path) + ".next";
}

std::string parent_folder(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? std::string(".") : path.substr(0, slash + 1);
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

  AtomicFile out(path);
  unsigned char lenbuf[8];
  for (int i = 0; i < 8; ++i) lenbuf[i] = static_cast<unsigned char>(hlen >> (8 * i));
  out.write(lenbuf, 8);
  out.write(h);
  for (const auto& nt : tensors) out.write(nt.tensor.raw(), nt.tensor.nbytes());
  out.commit();
}

// Nothing in the file is trusted: the header length is bounded by the file size (and 100 MiB),
// every extent product is overflow-checked, every tensor's bytes must lie inside the data
// section, and the tensors must tile the data section exactly once. All of that is checked
// from the header alone, before any tensor memory exists, so the tensors together allocate
// exactly the data section's size, never more than the file holds.
std::vector<NamedTensor> read_safetensors(const std::string& path, Metadata* meta) {
  std::error_code ec;
  CUSEG_REQUIRE(fs::is_regular_file(path, ec), "cannot open checkpoint " << path << ": not a file");
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
  CUSEG_REQUIRE(in.good(), path << ": cannot read the safetensors header");
  json header;
  try {
    header = json::parse(h);
  } catch (const std::exception& e) {
    CUSEG_THROW(path << ": safetensors header is not valid JSON (" << e.what() << ")");
  }
  CUSEG_REQUIRE(header.is_object(), path << ": safetensors header is not a JSON object");
  const uint64_t data_bytes = fsize - 8 - hlen;

  struct Entry {
    std::string name;
    DType dtype;
    Shape shape;
    uint64_t begin, end;
  };
  std::vector<Entry> entries;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      CUSEG_REQUIRE(it->is_object(), path << ": safetensors __metadata__ is not a JSON object "
                                             "(expected {\"key\": \"value\", ...})");
      if (meta)
        for (auto m = it->begin(); m != it->end(); ++m)
          (*meta)[m.key()] = m->is_string() ? m->get<std::string>() : m->dump();
      continue;
    }
    const json& e = it.value();
    Entry en;
    en.name = it.key();
    const DTypeInfo* info = e.is_object() && e.contains("dtype") && e["dtype"].is_string()
                                ? dtype_from_safetensors(e["dtype"].get<std::string>())
                                : nullptr;
    CUSEG_REQUIRE(info && e.contains("shape") && e["shape"].is_array() &&
                      e.contains("data_offsets") && e["data_offsets"].is_array() &&
                      e["data_offsets"].size() == 2 && e["data_offsets"][0].is_number_unsigned() &&
                      e["data_offsets"][1].is_number_unsigned(),
                  path << ": bad safetensors entry for '" << it.key()
                       << "' (expected {\"dtype\": F32|U8|I32|BF16|F16, \"shape\": [...], "
                          "\"data_offsets\": [begin, end]})");
    en.dtype = info->dtype;
    // Bytes of the tensor, overflow-checked. The product of the non-zero extents must stay
    // below 2^62 even for an empty tensor (zero extent), so that no later stride or element
    // count computed from the shape can overflow.
    uint64_t nonzero = 1;
    bool empty = false;
    for (const auto& d : e["shape"]) {
      const uint64_t n = d.is_number_unsigned() ? d.get<uint64_t>() : 0;
      CUSEG_REQUIRE(d.is_number_unsigned() && (n == 0 || nonzero <= (uint64_t(1) << 62) / n),
                    path << ": bad shape for '" << it.key()
                         << "' (expected a list of non-negative integers whose product is below "
                            "2^62)");
      en.shape.push_back(int64_t(n));
      if (n == 0)
        empty = true;
      else
        nonzero *= n;
    }
    const uint64_t dsize = dtype_size(en.dtype);
    const bool fits = empty || nonzero <= data_bytes / dsize;
    const uint64_t want = empty ? 0 : fits ? nonzero * dsize : 0;
    en.begin = e["data_offsets"][0].get<uint64_t>();
    en.end = e["data_offsets"][1].get<uint64_t>();
    CUSEG_REQUIRE(fits && en.begin <= en.end && en.end <= data_bytes && en.end - en.begin == want,
                  path << ": tensor '" << it.key() << "' of shape " << shape_str(en.shape) << " "
                       << e["dtype"].get<std::string>() << " has data_offsets [" << en.begin << ", "
                       << en.end << ") within " << data_bytes
                       << " data bytes: truncated or corrupted file");
    entries.push_back(std::move(en));
  }
  // The byte buffer must be covered exactly once (the format forbids holes and overlaps).
  std::vector<const Entry*> order;
  for (const auto& en : entries) order.push_back(&en);
  std::sort(order.begin(), order.end(), [](const Entry* a, const Entry* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  uint64_t pos = 0;
  for (const Entry* en : order) {
    CUSEG_REQUIRE(en->begin == pos, path << ": safetensors data has a hole or overlap at byte "
                                         << pos << ": corrupted file");
    pos = en->end;
  }
  CUSEG_REQUIRE(pos == data_bytes, path << ": " << data_bytes - pos
                                        << " trailing bytes after the last tensor: corrupted file");

  std::vector<NamedTensor> out;
  for (const auto& en : entries) {
    Tensor t = Tensor::empty(en.shape, en.dtype, Device::CPU);
    in.seekg(std::streamoff(8 + hlen + en.begin));
    in.read(static_cast<char*>(t.raw()), std::streamsize(en.end - en.begin));
    CUSEG_REQUIRE(in.good(), path << ": read failed for tensor '" << en.name << "'");
    out.push_back({en.name, t});
  }
  return out;
}

void save_checkpoint(const std::string& path, const std::vector<Param*>& params,
                     const Metadata& meta, const Adam* opt) {
  std::vector<NamedTensor> ts;
  for (const Param* p : params) ts.push_back({p->name, reverse_spatial(p->value.to(Device::CPU))});
  Metadata m = meta;
  m["format"] = "pt";
  m["cuseg.kernel_axes"] = "IJK (torchio order; engine tensors are DHW = KJI)";
  if (!opt) {
    write_safetensors(path, ts, m);
    return;
  }
  // The pair is committed by the weights file. The optimiser state goes first to the pending
  // name "<stem>.optim.safetensors.next"; once the new weights are in place it is renamed over
  // "<stem>.optim.safetensors". Killed between the two, the folder holds new weights and the
  // pending state, which load_checkpoint() recognises by its step (the weights' metadata
  // "optimizer_step"); killed before the weights, the old pair is untouched.
  Adam& a = const_cast<Adam&>(*opt);
  std::vector<NamedTensor> os;
  for (size_t i = 0; i < params.size(); ++i) {
    os.push_back({"exp_avg." + params[i]->name, a.exp_avg()[i].to(Device::CPU)});
    os.push_back({"exp_avg_sq." + params[i]->name, a.exp_avg_sq()[i].to(Device::CPU)});
  }
  const Metadata om = {{"step", std::to_string(opt->steps())},
                       {"lr", std::to_string(a.config().lr)},
                       {"beta1", std::to_string(a.config().beta1)},
                       {"beta2", std::to_string(a.config().beta2)},
                       {"eps", std::to_string(a.config().eps)}};
  const std::string state = optimizer_state_path(path), pending = pending_state_path(path);
  write_safetensors(pending, os, om);
  m["optimizer_step"] = std::to_string(opt->steps());
  write_safetensors(path, ts, m);
  if (std::rename(pending.c_str(), state.c_str()) != 0)
    CUSEG_THROW(state << ": cannot rename " << pending << " into place (" << std::strerror(errno)
                      << ")");
  fsync_folder(parent_folder(path));
}

Metadata load_checkpoint(const std::string& path, const std::vector<Param*>& params, Adam* opt) {
  Metadata meta;
  auto ts = read_safetensors(path, &meta);
  std::map<std::string, Tensor> by_name;
  for (auto& nt : ts) by_name[nt.name] = nt.tensor;
  for (Param* p : params) {
    auto it = by_name.find(p->name);
    CUSEG_REQUIRE(it != by_name.end(), path << ": missing parameter '" << p->name << "'");
    CUSEG_REQUIRE(it->second.dtype() == DType::F32,
                  path << ": parameter '" << p->name << "' is stored as "
                       << dtype_name(it->second.dtype()) << ", expected float32 (F32)");
    Tensor t = reverse_spatial(it->second);
    CUSEG_REQUIRE(t.shape() == p->value.shape(),
                  path << ": parameter '" << p->name << "' has shape "
                       << shape_str(it->second.shape()) << ", model expects (stored order) "
                       << shape_str(reverse_spatial(Tensor::empty(p->value.shape())).shape()));
    p->value.copy_from(t);
    p->copy_stale = true;  // a bf16 copy is refreshed before the next forward
  }
  CUSEG_REQUIRE(by_name.size() == params.size(),
                path << ": holds " << by_name.size() << " tensors, the model has " << params.size()
                     << " parameters (a different network configuration?)");
  if (opt) {
    // The optimiser state that belongs to these weights: the pending file when a save was
    // interrupted after the weights were committed, else the companion file (see
    // save_checkpoint). Weights without "optimizer_step" (older files) take the companion.
    const std::string state = optimizer_state_path(path), pending = pending_state_path(path);
    const auto want = meta.find("optimizer_step");
    std::string found;  // "file (step s)" of candidates that did not match, for the message
    for (const std::string& f : {pending, state}) {
      if (!std::ifstream(f).good()) continue;
      Metadata om;
      auto os = read_safetensors(f, &om);
      CUSEG_REQUIRE(om.count("step"), f << ": no 'step' in metadata");
      const std::string& st = om["step"];
      int64_t step = -1;
      const auto res = std::from_chars(st.data(), st.data() + st.size(), step);
      CUSEG_REQUIRE(res.ec == std::errc() && res.ptr == st.data() + st.size() && step >= 0,
                    f << ": metadata 'step' is '" << st << "', expected a whole number >= 0");
      if (want != meta.end() && st != want->second) {
        found += " " + f + " (step " + om["step"] + ")";
        continue;
      }
      std::map<std::string, Tensor> ob;
      for (auto& nt : os) ob[nt.name] = nt.tensor;
      for (size_t i = 0; i < params.size(); ++i) {
        for (int which = 0; which < 2; ++which) {
          const std::string n = (which ? "exp_avg_sq." : "exp_avg.") + params[i]->name;
          auto it = ob.find(n);
          CUSEG_REQUIRE(it != ob.end() && it->second.shape() == params[i]->value.shape() &&
                            it->second.dtype() == DType::F32,
                        f << ": missing or mis-shaped optimiser tensor '" << n
                          << "' (expected float32 of shape " << shape_str(params[i]->value.shape())
                          << ")");
          (which ? opt->exp_avg_sq()[i] : opt->exp_avg()[i]).copy_from(it->second);
        }
      }
      opt->set_steps(step);
      // Finish the interrupted save (best effort: a read-only folder keeps the pending name,
      // which the next load finds again).
      if (f == pending && std::rename(pending.c_str(), state.c_str()) == 0) {
        try {
          fsync_folder(parent_folder(path));
        } catch (const Error&) {
        }
      }
      found.clear();
      break;
    }
    CUSEG_REQUIRE(found.empty(),
                  path << ": weights saved at optimiser step " << want->second
                       << " but the optimiser state found is from another step:" << found);
  }
  return meta;
}

}  // namespace cuseg
