// Run configuration: schema = the default YAML below; files and --set overrides are merged onto
// it with strict key and type checks (see config.h).
#include "cuseg/pipeline/config.h"

#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "cuseg/core/check.h"

namespace fs = std::filesystem;

namespace cuseg {

namespace {

// The reference recipe (docs/ARCHITECTURE.md) is the default, so configs/liver.yaml and this
// schema agree key for key. Keys whose default is null are optional settings that are off.
const char* kSchema = R"(# cuseg run configuration (every key, with its default)
data:
  dir: data/Task03_Liver        # Decathlon folder (dataset.json or imagesTr/ + labelsTr/)
  phantom:
    generate: false             # write the synthetic phantom dataset into dir when missing
    cases: 24
    size: [128, 128, 64]        # voxels (x, y, z)
    seed: 0
  val_fraction: 0.11            # 118 cases -> 105 train / 13 validation
  split_seed: 0
  classes: 3                    # 0 background, 1 liver, 2 tumour
  cache: true                   # keep preprocessed volumes in memory between epochs (host pipeline)
  pipeline: auto                # training patches: device (CUDA kernels, volumes on the GPU) |
                                # host (same fused op on queue.num_workers threads) | auto (device
                                # when training on CUDA)
  storage: i16                  # training volumes held as i16 (+ scale: at most range/131068 off)
                                # | bf16 | f32 (exact)
  device_budget_mib: 0          # device memory for resident volumes (0: 40% of the GPU); the rest
                                # is streamed from page-locked host memory
preprocess:
  orientation: RAS              # reorient (axis permutation/flips only) before anything else
  resample_inplane: [256, 256]  # resample x, y to this size (same field of view); null = off
  crop_or_pad: [256, 256, 200]  # centre crop/pad (torchio rule); null = off
  pad_value: 0                  # HU, or "minimum" (the image's minimum)
  clip: null                    # [lo, hi] HU window applied before rescaling; null = off
  rescale: [-1.0, 1.0]          # RescaleIntensity output range
  percentiles: [0.0, 100.0]     # RescaleIntensity input cut-offs
augment:
  random_affine: true
  scales: [0.9, 1.1]
  degrees: 10
sampler:
  patch: [96, 96, 96]           # voxels (x, y, z)
  label_probabilities: {0: 0.2, 1: 0.3, 2: 0.5}
queue:
  max_length: 40
  samples_per_volume: 5
  num_workers: 2
model:
  in_channels: 1
  classes: 3
  filters: [32, 64, 128, 256]
train:
  epochs: 100
  batch_size: 2
  lr: 1.0e-4
  class_weights: [1.0, 1.0, 3.0]
  val_patches_per_volume: 5     # fixed validation patches per volume (same every epoch)
  dice_every: 5                 # epochs between whole-volume validation Dice; 0 = never
  preview_every: 1              # epochs between preview PNGs; 0 = never
  log_every: 10                 # steps between progress lines and metrics records
  seed: 0
  device: auto                  # auto | cuda | cpu
  precision: fp32               # fp32 | bf16 (bf16: channels-last mixed precision, fp32 master
                                # weights; filters must be multiples of 8; on the CPU it runs
                                # the bf16 oracle, slower than fp32)
  threads: 0                    # CPU threads (0 = all cores)
  deterministic: true           # same bits run to run: CUDA uses only deterministic cuDNN
                                # algorithms; the CPU always is, for a given thread count
  nonfinite_loss: stop          # stop | skip: a batch whose loss is NaN/Inf stops training
                                # (last good checkpoint kept), or is skipped (no update)
dist:                           # data-parallel ranks (engine_train --dist auto under a launcher)
  timeout_s: 600                # a collective waiting longer stops every rank (a rank died/hangs)
  bucket_mib: 25                # gradients averaged in buckets of this size during backward
inference:
  patch: [96, 96, 96]
  overlap: 8
  batch: 4
  mode: crop                    # crop | average | hann | gaussian (nnU-Net, sigma = patch / 8)
  precision: null               # fp32 | bf16; null = train.precision (aggregation is fp32)
)";

// Keys whose children are free (any key allowed, values checked on extraction).
const std::set<std::string> kFreeMaps = {"sampler.label_probabilities"};

struct Ctx {
  YAML::Node root;
  std::map<std::string, std::string> origin;  // leaf key -> file path or "--set"
  std::string default_origin;
};

std::string kind_name(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Scalar:
      return "a scalar";
    case YAML::NodeType::Null:
      return "null";
    default:
      return "undefined";
  }
}

std::string known_keys(const YAML::Node& schema) {
  std::string s;
  for (const auto& kv : schema) s += (s.empty() ? "" : ", ") + kv.first.as<std::string>();
  return s;
}

// Merges `user` onto `dst` (which starts as the schema), checking keys and container kinds.
void merge(YAML::Node dst, const YAML::Node& user, const std::string& prefix,
           const std::string& origin, Ctx& c) {
  for (const auto& kv : user) {
    // YAML allows lists and mappings as keys ("? [a, b]: 1"); a config key is a plain name.
    if (!kv.first.IsScalar())
      CUSEG_THROW(origin << ": a key " << (prefix.empty() ? "" : "under '" + prefix + "' ") << "is "
                         << kind_name(kv.first) << "; expected a plain name");
    const std::string key = kv.first.Scalar();
    const std::string path = prefix.empty() ? key : prefix + "." + key;
    const YAML::Node& cdst = dst;
    if (!cdst[key]) {
      CUSEG_THROW(origin << ": unknown key '" << path << "' (known keys"
                         << (prefix.empty() ? "" : " of '" + prefix + "'") << ": "
                         << known_keys(dst) << ")");
    }
    YAML::Node d = dst[key];
    const YAML::Node& u = kv.second;
    if (d.IsMap() && !kFreeMaps.count(path)) {
      if (!u.IsMap())
        CUSEG_THROW(origin << ": key '" << path << "' must be a mapping, got " << kind_name(u));
      merge(d, u, path, origin, c);
      continue;
    }
    if (d.IsSequence() && !(u.IsSequence() || u.IsNull()))
      CUSEG_THROW(origin << ": key '" << path << "' must be a list, got '" << YAML::Dump(u) << "'");
    if (d.IsScalar() && !(u.IsScalar() || u.IsNull()))
      CUSEG_THROW(origin << ": key '" << path << "' must be a single value, got " << kind_name(u));
    if (kFreeMaps.count(path) && !u.IsMap())
      CUSEG_THROW(origin << ": key '" << path << "' must be a mapping, got " << kind_name(u));
    dst[key] = YAML::Clone(u);
    c.origin[path] = origin;
  }
}

YAML::Node lookup(const Ctx& c, const std::string& path) {
  // Const access only: yaml-cpp's non-const operator[] would insert missing keys, and Node
  // assignment rebinds, so walk with a chain of fresh handles.
  std::vector<YAML::Node> chain{c.root};
  std::stringstream ss(path);
  for (std::string part; std::getline(ss, part, '.');) {
    const YAML::Node& parent = chain.back();
    chain.push_back(parent[part]);
  }
  return chain.back();
}

std::string where(const Ctx& c, const std::string& path) {
  auto it = c.origin.find(path);
  return it == c.origin.end() ? c.default_origin : it->second;
}

template <class T>
T scalar(const Ctx& c, const std::string& path, const char* expected) {
  const YAML::Node n = lookup(c, path);
  try {
    if (!n.IsScalar()) throw YAML::Exception(YAML::Mark::null_mark(), "not a scalar");
    return n.as<T>();
  } catch (const YAML::Exception&) {
    CUSEG_THROW(where(c, path) << ": key '" << path << "' must be " << expected << ", got '"
                               << (n.IsScalar() ? n.Scalar() : kind_name(n)) << "'");
  }
}
int get_int(const Ctx& c, const std::string& p) {
  return scalar<int>(c, p, "an integer");
}
double get_num(const Ctx& c, const std::string& p) {
  return scalar<double>(c, p, "a number");
}
bool get_bool(const Ctx& c, const std::string& p) {
  return scalar<bool>(c, p, "true or false");
}
std::string get_str(const Ctx& c, const std::string& p) {
  return scalar<std::string>(c, p, "a string");
}
uint64_t get_u64(const Ctx& c, const std::string& p) {
  return scalar<uint64_t>(c, p, "a non-negative integer");
}

bool is_null(const Ctx& c, const std::string& path) {
  return lookup(c, path).IsNull();
}

template <class T>
std::vector<T> list(const Ctx& c, const std::string& path, int n, const char* what) {
  const YAML::Node node = lookup(c, path);
  std::vector<T> out;
  bool ok = node.IsSequence() && (n < 0 || int(node.size()) == n);
  if (ok) {
    try {
      for (const auto& e : node) out.push_back(e.as<T>());
    } catch (const YAML::Exception&) {
      ok = false;
    }
  }
  if (!ok) {
    std::ostringstream want;
    want << "a list of " << (n < 0 ? std::string("") : std::to_string(n) + " ") << what;
    CUSEG_THROW(where(c, path) << ": key '" << path << "' must be " << want.str() << ", got '"
                               << YAML::Dump(node) << "'");
  }
  return out;
}

void require(bool ok, const Ctx& c, const std::string& path, const std::string& what) {
  if (!ok) CUSEG_THROW(where(c, path) << ": key '" << path << "': " << what);
}

RunConfig extract(const Ctx& c) {
  RunConfig r;
  r.data_dir = get_str(c, "data.dir");
  r.phantom_generate = get_bool(c, "data.phantom.generate");
  r.phantom_cases = get_int(c, "data.phantom.cases");
  require(r.phantom_cases >= 2, c, "data.phantom.cases", "need at least 2 cases");
  {
    auto v = list<int>(c, "data.phantom.size", 3, "integers");
    r.phantom_size = {v[0], v[1], v[2]};
    require(v[0] >= 16 && v[1] >= 16 && v[2] >= 16, c, "data.phantom.size", "each >= 16");
  }
  r.phantom_seed = get_u64(c, "data.phantom.seed");
  r.val_fraction = get_num(c, "data.val_fraction");
  require(r.val_fraction > 0 && r.val_fraction < 1, c, "data.val_fraction", "must be in (0, 1)");
  r.split_seed = get_u64(c, "data.split_seed");
  r.classes = get_int(c, "data.classes");
  require(r.classes >= 2 && r.classes <= 255, c, "data.classes", "must be in [2, 255]");
  r.cache = get_bool(c, "data.cache");
  r.pipeline = get_str(c, "data.pipeline");
  require(r.pipeline == "auto" || r.pipeline == "device" || r.pipeline == "host", c,
          "data.pipeline", "must be auto, device or host, got '" + r.pipeline + "'");
  {
    const std::string st = get_str(c, "data.storage");
    require(st == "i16" || st == "bf16" || st == "f32", c, "data.storage",
            "must be i16, bf16 or f32, got '" + st + "'");
    r.storage = st;
  }
  r.device_budget_mib = get_num(c, "data.device_budget_mib");
  require(r.device_budget_mib >= 0, c, "data.device_budget_mib", "must be >= 0");

  r.orientation = get_str(c, "preprocess.orientation");
  require(r.orientation.size() == 3, c, "preprocess.orientation", "a 3-letter code like RAS");
  if (!is_null(c, "preprocess.resample_inplane")) {
    auto v = list<int>(c, "preprocess.resample_inplane", 2, "integers");
    require(v[0] > 0 && v[1] > 0, c, "preprocess.resample_inplane", "sizes must be > 0");
    r.resample_inplane = {v[0], v[1]};
  }
  if (!is_null(c, "preprocess.crop_or_pad")) {
    auto v = list<int>(c, "preprocess.crop_or_pad", 3, "integers");
    require(v[0] > 0 && v[1] > 0 && v[2] > 0, c, "preprocess.crop_or_pad", "sizes must be > 0");
    r.crop_or_pad = {v[0], v[1], v[2]};
  }
  {
    const YAML::Node pv = lookup(c, "preprocess.pad_value");
    if (pv.IsScalar() && pv.Scalar() == "minimum") {
      r.pad_with_minimum = true;
    } else {
      r.pad_value = float(scalar<double>(c, "preprocess.pad_value", "a number (HU) or 'minimum'"));
    }
  }
  if (!is_null(c, "preprocess.clip")) {
    auto v = list<double>(c, "preprocess.clip", 2, "numbers (HU)");
    require(v[0] < v[1], c, "preprocess.clip", "lo must be < hi");
    r.clip = true;
    r.clip_lo = float(v[0]);
    r.clip_hi = float(v[1]);
  }
  {
    auto v = list<double>(c, "preprocess.rescale", 2, "numbers");
    require(v[0] < v[1], c, "preprocess.rescale", "min must be < max");
    r.rescale_lo = float(v[0]);
    r.rescale_hi = float(v[1]);
    auto p = list<double>(c, "preprocess.percentiles", 2, "numbers");
    require(0 <= p[0] && p[0] < p[1] && p[1] <= 100, c, "preprocess.percentiles",
            "need 0 <= lo < hi <= 100");
    r.percentile_lo = p[0];
    r.percentile_hi = p[1];
  }

  r.random_affine = get_bool(c, "augment.random_affine");
  {
    auto s = list<double>(c, "augment.scales", 2, "numbers");
    require(0 < s[0] && s[0] <= s[1], c, "augment.scales", "need 0 < lo <= hi");
    r.affine.scale_lo = s[0];
    r.affine.scale_hi = s[1];
    r.affine.max_degrees = get_num(c, "augment.degrees");
    require(r.affine.max_degrees >= 0 && r.affine.max_degrees <= 180, c, "augment.degrees",
            "must be in [0, 180]");
  }

  {
    auto p = list<int>(c, "sampler.patch", 3, "integers");
    require(p[0] > 0 && p[1] > 0 && p[2] > 0, c, "sampler.patch", "sizes must be > 0");
    r.patch = {p[0], p[1], p[2]};
    const YAML::Node lp = lookup(c, "sampler.label_probabilities");
    r.label_probabilities.clear();
    double total = 0;
    for (const auto& kv : lp) {
      int label = -1;
      double prob = -1;
      try {
        label = kv.first.as<int>();
        prob = kv.second.as<double>();
      } catch (const YAML::Exception&) {
      }
      require(label >= 0 && prob >= 0, c, "sampler.label_probabilities",
              "entries must be label: probability with label >= 0 and probability >= 0");
      r.label_probabilities[label] = prob;
      total += prob;
    }
    require(total > 0, c, "sampler.label_probabilities", "at least one probability must be > 0");
  }
  r.queue.max_length = get_int(c, "queue.max_length");
  r.queue.samples_per_volume = get_int(c, "queue.samples_per_volume");
  r.queue.num_workers = get_int(c, "queue.num_workers");
  require(r.queue.samples_per_volume >= 1, c, "queue.samples_per_volume", "must be >= 1");
  require(r.queue.max_length >= r.queue.samples_per_volume, c, "queue.max_length",
          "must be >= queue.samples_per_volume");
  require(r.queue.num_workers >= 1, c, "queue.num_workers", "must be >= 1");

  r.model.in_channels = get_int(c, "model.in_channels");
  require(r.model.in_channels == 1, c, "model.in_channels", "only single-channel CT (1)");
  r.model.classes = get_int(c, "model.classes");
  require(r.model.classes == r.classes, c, "model.classes", "must equal data.classes");
  r.model.filters = list<int>(c, "model.filters", -1, "integers");
  require(r.model.filters.size() >= 1 && r.model.filters.size() <= 7, c, "model.filters",
          "need 1 to 7 levels");
  for (int f : r.model.filters) require(f > 0, c, "model.filters", "filters must be > 0");
  const int div = 1 << (r.model.filters.size() - 1);
  for (int a = 0; a < 3; ++a)
    require(r.patch[a] % div == 0, c, "sampler.patch",
            "each size must be divisible by 2^(levels-1) = " + std::to_string(div));

  r.epochs = get_int(c, "train.epochs");
  require(r.epochs >= 1, c, "train.epochs", "must be >= 1");
  r.batch_size = get_int(c, "train.batch_size");
  require(r.batch_size >= 1, c, "train.batch_size", "must be >= 1");
  r.lr = float(get_num(c, "train.lr"));
  require(r.lr > 0, c, "train.lr", "must be > 0");
  r.class_weights.clear();
  for (double w : list<double>(c, "train.class_weights", r.classes, "numbers (one per class)"))
    r.class_weights.push_back(float(w));
  r.val_patches_per_volume = get_int(c, "train.val_patches_per_volume");
  require(r.val_patches_per_volume >= 1, c, "train.val_patches_per_volume", "must be >= 1");
  r.dice_every = get_int(c, "train.dice_every");
  r.preview_every = get_int(c, "train.preview_every");
  r.log_every = get_int(c, "train.log_every");
  require(r.dice_every >= 0 && r.preview_every >= 0, c, "train.dice_every",
          "dice_every and preview_every must be >= 0");
  require(r.log_every >= 1, c, "train.log_every", "must be >= 1");
  r.seed = get_u64(c, "train.seed");
  r.device = get_str(c, "train.device");
  require(r.device == "auto" || r.device == "cpu" || r.device == "cuda", c, "train.device",
          "must be auto, cuda or cpu");
  r.threads = get_int(c, "train.threads");
  require(r.threads >= 0, c, "train.threads", "must be >= 0");
  r.deterministic = get_bool(c, "train.deterministic");
  r.nonfinite_loss = get_str(c, "train.nonfinite_loss");
  require(r.nonfinite_loss == "stop" || r.nonfinite_loss == "skip", c, "train.nonfinite_loss",
          "must be stop or skip");
  r.dist_timeout_s = get_num(c, "dist.timeout_s");
  require(r.dist_timeout_s > 0, c, "dist.timeout_s", "must be > 0 (seconds)");
  r.dist_bucket_mib = get_num(c, "dist.bucket_mib");
  require(r.dist_bucket_mib > 0, c, "dist.bucket_mib", "must be > 0 (MiB)");
  auto precision = [&](const std::string& key) {
    const std::string v = get_str(c, key);
    require(v == "fp32" || v == "bf16", c, key, "must be fp32 or bf16");
    return parse_precision(v, key);
  };
  r.precision = precision("train.precision");
  if (r.precision == Precision::BF16)
    for (int f : r.model.filters)
      require(f % 8 == 0, c, "model.filters",
              "with precision bf16 every filter count must be a multiple of 8");
  r.infer_precision =
      is_null(c, "inference.precision") ? r.precision : precision("inference.precision");

  {
    auto p = list<int>(c, "inference.patch", 3, "integers");
    for (int a = 0; a < 3; ++a)
      require(p[a] > 0 && p[a] % div == 0, c, "inference.patch",
              "each size must be > 0 and divisible by 2^(levels-1) = " + std::to_string(div));
    r.infer_patch = {p[0], p[1], p[2]};
  }
  r.overlap = get_int(c, "inference.overlap");
  require(r.overlap >= 0 && r.overlap % 2 == 0, c, "inference.overlap", "must be even and >= 0");
  for (int a = 0; a < 3; ++a)
    require(r.overlap < r.infer_patch[a], c, "inference.overlap", "must be < inference.patch");
  r.infer_batch = get_int(c, "inference.batch");
  require(r.infer_batch >= 1, c, "inference.batch", "must be >= 1");
  r.mode = get_str(c, "inference.mode");
  try {
    parse_mode(r.mode);
  } catch (const Error& e) {
    CUSEG_THROW(where(c, "inference.mode") << ": key 'inference.mode': " << e.what());
  }
  return r;
}

YAML::Node load_yaml_text(const std::string& text, const std::string& origin) {
  try {
    YAML::Node n = YAML::Load(text);
    if (n.IsNull()) return YAML::Node(YAML::NodeType::Map);
    if (!n.IsMap()) CUSEG_THROW(origin << ": expected a YAML mapping at the top level");
    return n;
  } catch (const YAML::Exception& e) {
    CUSEG_THROW(origin << ": not valid YAML: " << e.what());
  }
}

}  // namespace

const std::string& default_config_yaml() {
  static const std::string s = kSchema;
  return s;
}

AggregateMode parse_mode(const std::string& s) {
  if (s == "crop") return AggregateMode::Crop;
  if (s == "average") return AggregateMode::Average;
  if (s == "hann") return AggregateMode::Hann;
  if (s == "gaussian") return AggregateMode::Gaussian;
  CUSEG_THROW("unknown aggregation mode '" << s << "' (known: crop, average, hann, gaussian)");
}

const char* mode_name(AggregateMode m) {
  switch (m) {
    case AggregateMode::Crop:
      return "crop";
    case AggregateMode::Average:
      return "average";
    case AggregateMode::Hann:
      return "hann";
    case AggregateMode::Gaussian:
      return "gaussian";
  }
  return "?";
}

namespace {

// Keys that name a file or folder. In a config FILE a relative path is relative to the folder
// of that file (so a config works from any working directory); it is stored in the resolved
// config joined to that folder, as the path from the working directory. Values from --set,
// from the defaults and from stored configs (parse_config) are taken as they are.
const char* kPathKeys[] = {"data.dir"};

RunConfig parse_impl(const std::string& yaml_text, const std::string& origin,
                     const std::string& base_dir, const std::vector<std::string>& overrides) {
  Ctx c;
  c.root = YAML::Load(kSchema);
  c.default_origin = origin + " (default)";
  merge(c.root, load_yaml_text(yaml_text, origin), "", origin, c);
  if (!base_dir.empty()) {
    for (const char* key : kPathKeys) {
      if (where(c, key) != origin) continue;  // not set by the file
      const std::string v = get_str(c, key);
      if (v.empty() || fs::path(v).is_absolute()) continue;
      const std::string joined = (fs::path(base_dir) / v).lexically_normal().string();
      // Write it back through the same chain of handles lookup() walks.
      std::vector<std::string> parts;
      std::stringstream ss(key);
      for (std::string p; std::getline(ss, p, '.');) parts.push_back(p);
      YAML::Node n = c.root[parts[0]];
      for (size_t i = 1; i + 1 < parts.size(); ++i) n = n[parts[i]];
      n[parts.back()] = joined;
    }
  }
  for (const auto& o : overrides) {
    const auto eq = o.find('=');
    if (eq == std::string::npos || eq == 0)
      CUSEG_THROW("--set " << o << ": expected KEY=VALUE, e.g. train.lr=3e-4");
    const std::string key = o.substr(0, eq), value = o.substr(eq + 1);
    YAML::Node v;
    try {
      v = YAML::Load(value);
    } catch (const YAML::Exception& e) {
      CUSEG_THROW("--set " << o << ": value is not valid YAML: " << e.what());
    }
    // Build {a: {b: value}} and merge it like a file, so the same checks apply.
    YAML::Node tree(YAML::NodeType::Map);
    std::vector<std::string> parts;
    std::stringstream ss(key);
    for (std::string p; std::getline(ss, p, '.');) parts.push_back(p);
    YAML::Node leaf = v;
    for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
      YAML::Node m(YAML::NodeType::Map);
      m[*it] = leaf;
      leaf = m;
    }
    merge(c.root, leaf, "", "--set " + key, c);
  }
  RunConfig r = extract(c);
  r.source = origin;
  YAML::Emitter out;
  out << c.root;
  CUSEG_REQUIRE(out.good(), origin << ": the resolved config cannot be written as YAML ("
                                   << out.GetLastError() << ")");
  r.resolved_yaml = std::string("# resolved cuseg config (defaults + ") + origin +
                    (overrides.empty() ? "" : " + --set") + ")\n" + out.c_str() + "\n";
  return r;
}

}  // namespace

RunConfig parse_config(const std::string& yaml_text, const std::string& origin,
                       const std::vector<std::string>& overrides) {
  return parse_impl(yaml_text, origin, "", overrides);
}

RunConfig load_config(const std::string& path, const std::vector<std::string>& overrides) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) CUSEG_THROW(path << ": cannot open the config file");
  std::ifstream f(path);
  if (!f) CUSEG_THROW(path << ": cannot open the config file");
  std::stringstream ss;
  ss << f.rdbuf();
  std::string base = fs::path(path).parent_path().string();
  if (base.empty()) base = ".";
  return parse_impl(ss.str(), path, base, overrides);
}

}  // namespace cuseg
