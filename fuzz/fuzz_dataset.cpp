// Dataset discovery: dataset.json (Decathlon and nnU-Net v2 forms), imagesTr/labelsTr pairing,
// loose folders, the integrity check's handling of the files found, and the split file
// (splits.json, reused when present). Input, in parts separated by kSeparator:
//   [0] dataset.json (no file when empty)
//   [1] files to create, one relative path per line (empty files; a trailing '/' makes a folder)
//   [2] splits.json (no file when empty)
#include <sstream>

#include "cuseg/data/dataset.h"
#include "fuzz_util.h"

using namespace cuseg_fuzz;

namespace {
// Paths the input may create: relative, no "..", not too deep or long.
bool acceptable(const std::string& rel) {
  if (rel.empty() || rel.size() > 96 || rel[0] == '/' || rel.find('\0') != std::string::npos)
    return false;
  int depth = 0;
  for (const auto& part : fs::path(rel)) {
    if (part == ".." || part == ".") return false;
    ++depth;
  }
  return depth <= 3;
}

bool inside(const std::string& p, const fs::path& root) {
  const std::string r = root.string() + "/";
  return p.rfind(r, 0) == 0 && p.find("/../") == std::string::npos;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const fs::path root = fresh_dir("dataset");
  const auto parts = split(data, size, 3);
  if (!parts[0].empty()) write_file(root / "dataset.json", parts[0]);
  if (parts.size() > 1) {
    std::istringstream ss{std::string(parts[1])};
    int n = 0;
    for (std::string line; std::getline(ss, line) && n < 16;) {
      if (!acceptable(line)) continue;
      std::error_code ec;
      const fs::path p = root / line;
      fs::create_directories(line.back() == '/' ? p : p.parent_path(), ec);
      if (line.back() != '/' && !ec && !fs::exists(p, ec)) write_file(p, "");
      ++n;
    }
  }
  if (parts.size() > 2 && !parts[2].empty()) write_file(root / "splits.json", parts[2]);

  namespace d = cuseg::data;
  expect_clean([&] {
    const d::Dataset ds = d::discover(root.string());
    std::vector<std::string> ids;
    int checked = 0;
    for (const auto& c : ds.cases) {
      ids.push_back(c.id);
      // The integrity check reports problems, it never throws; only files of this input.
      if (checked < 4 && inside(c.image, root) && (c.label.empty() || inside(c.label, root))) {
        d::check_case(c, 3);
        ++checked;
      }
    }
    if (ids.size() >= 2) d::load_or_create_split((root / "splits.json").string(), ids, 0.2, 0);
  });
  return 0;
}
