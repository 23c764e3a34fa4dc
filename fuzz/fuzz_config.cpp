// Run configs: load_config on a YAML file with --set overrides (strict schema, types and value
// checks, relative paths resolved against the config's folder). A config that loads must also
// load again from its own resolved YAML (what a run saves and --resume reads) and resolve to
// the same text. Input: the YAML file, then optionally kSeparator and one override per line.
#include <sstream>

#include "cuseg/pipeline/config.h"
#include "fuzz_util.h"

using namespace cuseg_fuzz;

namespace {
// The resolved YAML without its first line, which names where it came from.
std::string body(const std::string& yaml) {
  const size_t nl = yaml.find('\n');
  return nl == std::string::npos ? yaml : yaml.substr(nl + 1);
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto parts = split(data, size, 2);
  const fs::path dir = scratch() / "configs", p = dir / "run.yaml";
  fs::create_directories(dir);
  write_file(p, parts[0]);
  std::vector<std::string> overrides;
  if (parts.size() > 1) {
    std::istringstream ss{std::string(parts[1])};
    for (std::string line; std::getline(ss, line) && overrides.size() < 8;)
      overrides.push_back(line);
  }
  expect_clean([&] {
    cuseg::RunConfig r;
    try {
      r = cuseg::load_config(p.string(), overrides);
    } catch (const cuseg::Error& e) {
      // "--set KEY=..." errors name the override, not the file: the override is the input.
      const std::string msg = e.what();
      if (msg.rfind("--set ", 0) == 0) return;
      throw;
    }
    const fs::path again = scratch() / "resolved.yaml";
    write_file(again, r.resolved_yaml);
    cuseg::RunConfig r2;
    try {
      r2 = cuseg::parse_config(r.resolved_yaml, again.string());
    } catch (const std::exception& e) {
      finding("a resolved config does not load again",
              std::string(e.what()) + "\n" + r.resolved_yaml);
    }
    if (body(r2.resolved_yaml) != body(r.resolved_yaml))
      finding("a resolved config resolves to different text",
              r.resolved_yaml + "\n---- again ----\n" + r2.resolved_yaml);
  });
  return 0;
}
