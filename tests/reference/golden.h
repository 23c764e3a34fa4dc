// Reader for the PyTorch golden files written by tests/reference/make_golden.py, and the
// comparison helper the golden tests use (as llm.c's test: per tensor, a budget
// tol + |ref| * rel per element, printing the max abs diff and the % of the budget used).
//
// Format "CUSEGREF v1", little-endian:
//   char magic[8] = "CUSEGREF"; uint32 version = 1; uint32 count;
//   count records: uint32 name_len; char name[name_len]; uint32 dtype (0 float32, 1 int64,
//   2 float64); uint32 ndim; int64 dims[ndim]; raw data (prod(dims) elements, 1 if ndim 0).
// Tensors are NCDHW exactly as PyTorch holds them (W fastest). A malformed file (bad magic,
// version, sizes, truncation, trailing bytes, duplicate names) throws std::runtime_error
// naming the path.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace golden {

// One tensor; exactly one of f (float32), i (int64), d (float64) holds its data.
struct GoldenTensor {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> f;
  std::vector<int64_t> i;
  std::vector<double> d;

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    return n;
  }
  // Element k as double, whatever the dtype.
  double at(int64_t k) const {
    if (!f.empty()) return f[size_t(k)];
    if (!d.empty()) return d[size_t(k)];
    return double(i[size_t(k)]);
  }
  // The value of a one-element tensor.
  double scalar() const {
    if (numel() != 1) throw std::runtime_error("golden tensor " + name + " is not a scalar");
    return at(0);
  }
};

using GoldenFile = std::map<std::string, GoldenTensor>;

namespace detail {

inline std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t k = 0; k < s.size(); ++k) r += (k ? "," : "") + std::to_string(s[k]);
  return r + "]";
}

// Bounds-checked little-endian cursor over the file's bytes (x86/ARM hosts are LE).
struct Cursor {
  const std::string& path;
  const std::vector<char>& buf;
  size_t pos = 0;

  [[noreturn]] void fail(const std::string& what) const {
    throw std::runtime_error("golden file " + path + ": " + what + " (at byte " +
                             std::to_string(pos) + " of " + std::to_string(buf.size()) + ")");
  }
  void need(size_t n, const char* what) const {
    if (n > buf.size() - pos) fail(std::string("truncated while reading ") + what);
  }
  template <class T>
  T get(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, buf.data() + pos, sizeof(T));
    pos += sizeof(T);
    return v;
  }
  void bytes(void* dst, size_t n, const char* what) {
    need(n, what);
    if (n) std::memcpy(dst, buf.data() + pos, n);
    pos += n;
  }
};

}  // namespace detail

inline GoldenFile load_golden(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("golden file " + path + ": cannot open");
  std::vector<char> buf((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  detail::Cursor c{path, buf};

  char magic[8];
  c.bytes(magic, 8, "magic");
  if (std::memcmp(magic, "CUSEGREF", 8) != 0) c.fail("bad magic (expected CUSEGREF)");
  const uint32_t version = c.get<uint32_t>("version");
  if (version != 1) c.fail("unsupported version " + std::to_string(version) + " (expected 1)");
  const uint32_t count = c.get<uint32_t>("count");
  if (count > 1000000) c.fail("implausible tensor count " + std::to_string(count));

  GoldenFile out;
  for (uint32_t r = 0; r < count; ++r) {
    GoldenTensor t;
    const uint32_t name_len = c.get<uint32_t>("name length");
    if (name_len == 0 || name_len > 4096) c.fail("bad name length " + std::to_string(name_len));
    t.name.resize(name_len);
    c.bytes(&t.name[0], name_len, "name");
    const uint32_t dtype = c.get<uint32_t>("dtype");
    if (dtype > 2) c.fail(t.name + ": unknown dtype " + std::to_string(dtype));
    const uint32_t ndim = c.get<uint32_t>("ndim");
    if (ndim > 8) c.fail(t.name + ": bad ndim " + std::to_string(ndim));
    int64_t n = 1;
    for (uint32_t k = 0; k < ndim; ++k) {
      const int64_t dim = c.get<int64_t>("dims");
      if (dim < 0 || (dim > 0 && n > std::numeric_limits<int64_t>::max() / 8 / dim))
        c.fail(t.name + ": bad dimension " + std::to_string(dim));
      t.shape.push_back(dim);
      n *= dim;
    }
    const size_t esize = dtype == 0 ? 4 : 8;
    const size_t nbytes = size_t(n) * esize;
    c.need(nbytes, ("data of " + t.name).c_str());
    if (dtype == 0) {
      t.f.resize(size_t(n));
      c.bytes(t.f.data(), nbytes, "data");
    } else if (dtype == 1) {
      t.i.resize(size_t(n));
      c.bytes(t.i.data(), nbytes, "data");
    } else {
      t.d.resize(size_t(n));
      c.bytes(t.d.data(), nbytes, "data");
    }
    const std::string name = t.name;
    if (!out.emplace(name, std::move(t)).second) c.fail("duplicate tensor name " + name);
  }
  if (c.pos != buf.size()) c.fail("trailing bytes after " + std::to_string(count) + " tensors");
  return out;
}

// The named tensor; throws (naming it) when the file lacks it.
inline const GoldenTensor& get(const GoldenFile& file, const std::string& name) {
  auto it = file.find(name);
  if (it == file.end()) throw std::runtime_error("golden tensor " + name + " not in file");
  return it->second;
}

// Largest |ref| (for tolerances scaled to a tensor's magnitude).
inline double max_abs(const GoldenTensor& ref) {
  double m = 0;
  for (int64_t k = 0; k < ref.numel(); ++k) m = std::fmax(m, std::fabs(ref.at(k)));
  return m;
}

// Checks |got[k] - ref[k]| <= tol + |ref[k]| * rel for every element (NaN fails), prints
//   name  n  max abs diff (where, got, ref)  % of the budget used  tol/rel  OK|FAIL
// and returns a GoogleTest result listing the first failing elements by NCDHW index.
inline ::testing::AssertionResult compare(const std::string& name, const float* got, int64_t n,
                                          const GoldenTensor& ref, double tol, double rel) {
  if (n != ref.numel())
    return ::testing::AssertionFailure()
           << name << ": got " << n << " elements, reference " << ref.name << " "
           << detail::shape_str(ref.shape) << " has " << ref.numel();
  if (n == 0) return ::testing::AssertionSuccess();
  auto index_str = [&](int64_t k) {
    std::vector<int64_t> idx(ref.shape.size());
    for (size_t a = ref.shape.size(); a-- > 0;) {
      idx[a] = ref.shape[a] ? k % ref.shape[a] : 0;
      k = ref.shape[a] ? k / ref.shape[a] : 0;
    }
    return detail::shape_str(idx);
  };
  double max_diff = 0, max_frac = 0;
  int64_t worst = 0, bad = 0;
  bool has_nan = false;
  std::ostringstream fails;
  for (int64_t k = 0; k < n; ++k) {
    const double r = ref.at(k), g = got[k];
    const double diff = std::fabs(g - r);
    const double budget = tol + std::fabs(r) * rel;
    const bool ok = diff <= budget;  // false for NaN
    if (std::isnan(diff)) {
      if (!has_nan) has_nan = true, max_diff = diff, worst = k;
    } else if (!has_nan && diff > max_diff) {
      max_diff = diff, worst = k;
    }
    if (ok && budget > 0) max_frac = std::fmax(max_frac, diff / budget);
    if (!ok) {
      if (bad < 8)
        fails << "\n    " << name << index_str(k) << ": got " << g << ", expected " << r
              << ", |diff| " << diff << " > budget " << budget;
      ++bad;
    }
  }
  char used[32];
  if (bad)
    std::snprintf(used, sizeof used, "FAIL");
  else if (tol == 0 && rel == 0)
    std::snprintf(used, sizeof used, "exact");
  else
    std::snprintf(used, sizeof used, "%.1f%%", 100.0 * max_frac);
  char line[512];
  std::snprintf(line, sizeof line,
                "  %-34s n=%-7lld max|diff| %.3e at %s (got %.7g, ref %.7g)  budget used %s  "
                "[tol %.2e + %.0e*|ref|]  %s\n",
                name.c_str(), (long long)n, max_diff, index_str(worst).c_str(), double(got[worst]),
                ref.at(worst), used, tol, rel, bad ? "FAIL" : "OK");
  const std::string s = line;
  std::fputs(s.c_str(), stdout);
  std::fflush(stdout);
  if (!bad) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << name << ": " << bad << " of " << n << " elements outside tol " << tol << " + |ref|*"
         << rel << fails.str();
}

inline ::testing::AssertionResult compare(const std::string& name, const std::vector<float>& got,
                                          const GoldenTensor& ref, double tol, double rel) {
  return compare(name, got.data(), int64_t(got.size()), ref, tol, rel);
}

}  // namespace golden
