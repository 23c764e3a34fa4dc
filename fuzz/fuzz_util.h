// Shared by the fuzz targets (fuzz/CMakeLists.txt).
//
// The oracle, beyond what ASan and UBSan catch: a reader may refuse an input only by throwing
// cuseg::Error whose message names the input (a path inside this process's scratch folder, which
// holds every file a target writes), as the product's rule for bad input says. Any other
// exception (std::bad_alloc, a JSON or YAML library error, an ITK exception that escaped) or a
// message that names no file is a finding: the target prints it and aborts, so libFuzzer keeps
// the input.
#pragma once
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "cuseg/core/check.h"

namespace cuseg_fuzz {

namespace fs = std::filesystem;

// Inputs made of several files separate them with this line (the dictionaries in fuzz/dict/
// hold it, so mutations can make and remove parts).
inline constexpr std::string_view kSeparator = "\n@@cuseg-fuzz-part@@\n";

// Reads limited to 16 MiB: a header may ask for anything, the read must refuse it beforehand.
inline constexpr uint64_t kReadLimitBytes = uint64_t(16) << 20;

// A scratch folder per process, on tmpfs when there is one (CUSEG_FUZZ_TMP overrides), removed
// at exit.
inline const fs::path& scratch() {
  static const fs::path dir = [] {
    fs::path base;
    if (const char* e = std::getenv("CUSEG_FUZZ_TMP"))
      base = e;
    else if (fs::is_directory("/dev/shm"))
      base = "/dev/shm";
    else
      base = fs::temp_directory_path();
    fs::path d = base / ("cuseg_fuzz_" + std::to_string(getpid()));
    fs::remove_all(d);
    fs::create_directories(d);
    std::atexit([] {
      std::error_code ec;
      fs::remove_all(scratch(), ec);
    });
    return d;
  }();
  return dir;
}

// A fresh, empty folder inside the scratch folder.
inline fs::path fresh_dir(const std::string& name) {
  const fs::path d = scratch() / name;
  std::error_code ec;
  fs::remove_all(d, ec);
  fs::create_directories(d);
  return d;
}

inline void write_file(const fs::path& p, std::string_view bytes) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), std::streamsize(bytes.size()));
}

inline std::vector<std::string_view> split(const uint8_t* data, size_t size, size_t max_parts) {
  std::string_view s(reinterpret_cast<const char*>(data), size);
  std::vector<std::string_view> parts;
  while (parts.size() + 1 < max_parts) {
    const size_t at = s.find(kSeparator);
    if (at == std::string_view::npos) break;
    parts.push_back(s.substr(0, at));
    s.remove_prefix(at + kSeparator.size());
  }
  parts.push_back(s);
  return parts;
}

[[noreturn]] inline void finding(const char* what, const std::string& detail) {
  std::fprintf(stderr, "\ncuseg fuzz finding: %s: %s\n", what, detail.c_str());
  std::abort();
}

// Runs f; a refusal must be a cuseg::Error naming a file of this input.
template <class F>
void expect_clean(F&& f) {
  try {
    f();
  } catch (const cuseg::Error& e) {
    const std::string msg = e.what();
    if (msg.find(scratch().string()) == std::string::npos)
      finding("an error message that names no input file", msg);
  } catch (const std::exception& e) {
    finding("an exception other than cuseg::Error", e.what());
  } catch (...) {
    finding("a non-standard exception", "(unknown type)");
  }
}

}  // namespace cuseg_fuzz
