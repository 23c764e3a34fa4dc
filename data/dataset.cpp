// Dataset discovery, splits, integrity check and volume cache (see data/dataset.h).
#include "cuseg/data/dataset.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "cuseg/core/atomic_file.h"
#include "cuseg/core/check.h"
#include "cuseg/core/random.h"
#include "cuseg/data/image.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace cuseg {
namespace data {
namespace {

bool skipped_name(const std::string& name) {
  return name.empty() || name[0] == '.';
}  // ., ._*

std::vector<std::string> list_images(const fs::path& dir, std::vector<std::string>* notes) {
  std::vector<std::string> out;
  if (!fs::is_directory(dir)) return out;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (skipped_name(name)) {
      if (notes) notes->push_back("skipped hidden/AppleDouble file " + e.path().string());
      continue;
    }
    if (e.is_regular_file() && !image_extension(name).empty()) out.push_back(name);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::map<int, std::string> default_labels() {
  return {{0, "background"}, {1, "liver"}, {2, "tumour"}};
}

std::string nonfinite_message(int64_t bad, int64_t nan, int64_t first, const std::array<int, 3>& s,
                              const std::string& expected) {
  std::ostringstream os;
  os << bad << " voxels are NaN or Inf (first at voxel (" << first % s[0] << ", "
     << first / s[0] % s[1] << ", " << first / (int64_t(s[0]) * s[1]) << ")); " << expected << " ("
     << nan << " NaN, " << bad - nan << " Inf)";
  return os.str();
}

// A case id names one case: two files that give the same id (liver_1.nii next to
// liver_1.nii.gz, or a dataset.json listing a label twice) are an error naming both.
void require_unique_ids(const Dataset& d, const std::string& where) {
  std::map<std::string, const CaseFiles*> seen;
  for (const auto& c : d.cases) {
    auto it = seen.emplace(c.id, &c);
    CUSEG_REQUIRE(it.second, where << ": case '" << c.id << "' appears twice ("
                                   << it.first->second->image << " and " << c.image
                                   << "); expected one image and one label per case");
  }
}

}  // namespace

// ---------------------------------------------------------------- discovery
Dataset discover_decathlon(const std::string& dir) {
  CUSEG_REQUIRE(fs::is_directory(dir), dir << ": not a folder (expected a Decathlon dataset)");
  Dataset d;
  d.root = dir;
  d.labels = default_labels();
  const fs::path root(dir), js = root / "dataset.json";
  std::string file_ending;
  if (fs::exists(js)) {
    json j;
    try {
      std::ifstream f(js);
      f >> j;
    } catch (const std::exception& e) {
      CUSEG_THROW(js.string() << ": not valid JSON: " << e.what());
    }
    if (j.contains("labels") && j["labels"].is_object()) {
      d.labels.clear();
      for (auto it = j["labels"].begin(); it != j["labels"].end(); ++it) {
        try {
          if (it.value().is_number_integer())  // nnU-Net v2: {"liver": 1}
            d.labels[it.value().get<int>()] = it.key();
          else  // Decathlon: {"1": "liver"}
            d.labels[std::stoi(it.key())] = it.value().get<std::string>();
        } catch (const std::exception&) {
          CUSEG_THROW(js.string() << ": label entry '" << it.key()
                                  << "' is neither {\"<index>\": name} nor {name: <index>}");
        }
      }
    }
    if (j.contains("file_ending")) {
      CUSEG_REQUIRE(j["file_ending"].is_string(),
                    js.string() << ": \"file_ending\" must be a string such as \".nii.gz\"");
      file_ending = j["file_ending"].get<std::string>();
    }
    if (j.contains("training") && j["training"].is_array() && !j["training"].empty()) {
      d.source = "dataset.json";
      for (const auto& t : j["training"]) {
        CUSEG_REQUIRE(
            t.is_object() && t.contains("image") && t.contains("label") && t["image"].is_string() &&
                t["label"].is_string(),
            js.string() << ": every training entry needs \"image\" and \"label\" "
                           "paths (strings), e.g. {\"image\": \"./imagesTr/liver_0.nii.gz\", "
                           "\"label\": \"./labelsTr/liver_0.nii.gz\"}");
        CaseFiles c;
        c.image = (root / t["image"].get<std::string>()).lexically_normal().string();
        c.label = (root / t["label"].get<std::string>()).lexically_normal().string();
        std::string name = fs::path(c.label).filename().string();
        const std::string ext = image_extension(name);
        c.id = name.substr(0, name.size() - ext.size());
        if (skipped_name(name)) {
          d.notes.push_back("skipped hidden/AppleDouble entry " + c.label);
          continue;
        }
        d.cases.push_back(c);
      }
      require_unique_ids(d, js.string());
      return d;
    }
  }
  // Pair imagesTr/ and labelsTr/ by name.
  d.source = "imagesTr/labelsTr pairs";
  const auto labels = list_images(root / "labelsTr", &d.notes);
  const auto images = list_images(root / "imagesTr", &d.notes);
  CUSEG_REQUIRE(fs::is_directory(root / "imagesTr"),
                dir << ": no dataset.json training list and no imagesTr/ folder");
  std::set<std::string> used;
  for (const auto& ln : labels) {
    const std::string ext = image_extension(ln);
    if (!file_ending.empty() && ext != file_ending) continue;
    const std::string stem = ln.substr(0, ln.size() - ext.size());
    std::string img;
    for (const std::string& cand : {stem + ext, stem + "_0000" + ext})
      if (std::binary_search(images.begin(), images.end(), cand)) img = cand;
    if (img.empty()) {
      d.notes.push_back("label " + (root / "labelsTr" / ln).string() +
                        " has no image (expected imagesTr/" + stem + ext + " or imagesTr/" + stem +
                        "_0000" + ext + ")");
      continue;
    }
    used.insert(img);
    d.cases.push_back(
        {stem, (root / "imagesTr" / img).string(), (root / "labelsTr" / ln).string()});
  }
  for (const auto& im : images)
    if (!used.count(im))
      d.notes.push_back("image " + (root / "imagesTr" / im).string() +
                        " has no label in labelsTr/");
  // Natural order: liver_2 before liver_10.
  std::sort(d.cases.begin(), d.cases.end(), [](const CaseFiles& a, const CaseFiles& b) {
    auto num = [](const std::string& s) {
      const size_t p = s.find_last_of('_');
      try {
        return p == std::string::npos ? -1L : std::stol(s.substr(p + 1));
      } catch (...) {
        return -1L;
      }
    };
    const long na = num(a.id), nb = num(b.id);
    return na != nb ? na < nb : a.id < b.id;
  });
  require_unique_ids(d, dir);
  return d;
}

Dataset discover_loose(const std::string& dir) {
  CUSEG_REQUIRE(fs::is_directory(dir), dir << ": not a folder");
  Dataset d;
  d.root = dir;
  d.source = "loose files";
  d.labels = default_labels();
  const auto files = list_images(dir, &d.notes);
  // parent[f]: the file with the longest stem that prefixes f's stem followed by '_'.
  auto stem_of = [](const std::string& f) {
    return f.substr(0, f.size() - image_extension(f).size());
  };
  std::map<std::string, std::string> parent;
  std::set<std::string> has_child;
  for (const auto& f : files) {
    const std::string stem = stem_of(f);
    std::string best;
    for (const auto& g : files) {
      const std::string gs = stem_of(g);
      if (gs.size() < stem.size() && stem.compare(0, gs.size(), gs) == 0 &&
          stem[gs.size()] == '_' && gs.size() > stem_of(best).size())
        best = g;
    }
    if (!best.empty()) parent[f] = best, has_child.insert(best);
  }
  // A child without children of its own is its parent's label map (ct_30slices, which has its
  // own ct_30slices_organs, stays an image).
  std::set<std::string> is_label;
  std::map<std::string, std::string> label_of;
  for (const auto& kv : parent) {
    if (has_child.count(kv.first)) continue;
    is_label.insert(kv.first);
    if (!label_of.count(kv.second))
      label_of[kv.second] = kv.first;
    else
      d.notes.push_back("several masks for " + kv.second + ": using " + label_of[kv.second] +
                        ", also found " + kv.first);
  }
  for (const auto& f : files) {
    if (is_label.count(f)) continue;
    CaseFiles c;
    c.id = f.substr(0, f.size() - image_extension(f).size());
    c.image = (fs::path(dir) / f).string();
    if (label_of.count(f)) c.label = (fs::path(dir) / label_of[f]).string();
    d.cases.push_back(c);
  }
  require_unique_ids(d, dir);
  return d;
}

Dataset discover(const std::string& dir) {
  if (fs::exists(fs::path(dir) / "dataset.json") || fs::is_directory(fs::path(dir) / "imagesTr"))
    return discover_decathlon(dir);
  return discover_loose(dir);
}

// ---------------------------------------------------------------- splits
Split make_split(std::vector<std::string> ids, double val_fraction, uint64_t seed) {
  CUSEG_REQUIRE(val_fraction >= 0 && val_fraction < 1,
                "split: validation fraction must be in [0, 1), got " << val_fraction);
  std::sort(ids.begin(), ids.end());
  CUSEG_REQUIRE(std::adjacent_find(ids.begin(), ids.end()) == ids.end(),
                "split: duplicate case ids");
  Rng rng(seed);
  portable_shuffle(ids, rng);
  size_t nval = size_t(std::lround(double(ids.size()) * val_fraction));
  if (val_fraction > 0 && ids.size() >= 2) nval = std::max<size_t>(nval, 1);
  Split s;
  s.seed = seed;
  s.val.assign(ids.begin(), ids.begin() + long(nval));
  s.train.assign(ids.begin() + long(nval), ids.end());
  std::sort(s.val.begin(), s.val.end());
  std::sort(s.train.begin(), s.train.end());
  return s;
}

void write_split(const Split& s, const std::string& path) {
  json j;
  j["seed"] = s.seed;
  j["train"] = s.train;
  j["val"] = s.val;
  std::string text;
  try {
    text = j.dump(2);
  } catch (const json::exception&) {
    // Case ids come from file names, which may be any bytes; JSON holds UTF-8 only.
    CUSEG_THROW(path << ": cannot write the split file: a case id is not valid UTF-8 (a file "
                        "name in another encoding?); expected UTF-8 file names");
  }
  write_file_atomic(path, text + "\n");  // crash-safe: a run folder never holds half a split
}

Split read_split(const std::string& path) {
  json j;
  try {
    std::ifstream f(path);
    CUSEG_REQUIRE(f.good(), path << ": cannot read the split file");
    f >> j;
    Split s;
    s.seed = j.value("seed", uint64_t(0));
    s.train = j.at("train").get<std::vector<std::string>>();
    s.val = j.at("val").get<std::vector<std::string>>();
    return s;
  } catch (const json::exception& e) {
    CUSEG_THROW(path << ": not a split file (expected {\"train\": [...], \"val\": [...]}): "
                     << e.what());
  }
}

Split load_or_create_split(const std::string& path, const std::vector<std::string>& ids,
                           double val_fraction, uint64_t seed) {
  if (fs::exists(path)) {
    Split s = read_split(path);
    std::set<std::string> have(ids.begin(), ids.end()), in_split;
    for (const auto& v : {s.train, s.val})
      for (const auto& id : v) {
        CUSEG_REQUIRE(have.count(id),
                      path << ": case '" << id << "' is in the split but not in the dataset");
        in_split.insert(id);
      }
    for (const auto& id : ids)
      CUSEG_REQUIRE(in_split.count(id), path << ": dataset case '" << id
                                             << "' is missing from the split (delete the file to "
                                                "make a new split)");
    return s;
  }
  Split s = make_split(ids, val_fraction, seed);
  write_split(s, path);
  return s;
}

// ---------------------------------------------------------------- integrity
std::vector<Problem> check_case(const CaseFiles& c, int num_classes) {
  std::vector<Problem> out;
  auto add = [&](const std::string& f, std::string w) {
    if (w.rfind(f + ": ", 0) == 0) w = w.substr(f.size() + 2);  // the file is named already
    out.push_back({f, w});
  };
  Image img;
  bool have_img = false;
  try {
    img = read_image(c.image);
    have_img = true;
  } catch (const std::exception& e) {
    add(c.image, e.what());
  }
  if (have_img) {
    // read_image shows NaN/Inf in every format (for NIfTI it restores what ITK zeroes).
    int64_t bad = 0, nan = 0, first = -1;
    for (size_t n = 0; n < img.v.size(); ++n)
      if (!std::isfinite(img.v[n])) {
        if (first < 0) first = int64_t(n);
        ++bad;
        nan += std::isnan(img.v[n]);
      }
    if (bad)
      add(c.image, nonfinite_message(bad, nan, first, img.geo.size, "expected finite intensities"));
  }
  if (c.label.empty()) return out;
  LabelMap lab;
  try {
    lab = read_label(c.label);
  } catch (const std::exception& e) {
    add(c.label, e.what());
    return out;
  }
  int64_t hist[256] = {};
  for (uint8_t v : lab.v) hist[v]++;
  // One problem per file listing the out-of-range values (first 8) and their voxel counts.
  std::ostringstream os;
  int nbad = 0;
  for (int v = std::max(num_classes, 0); v < 256; ++v)
    if (hist[v]) {
      if (nbad < 8) os << (nbad ? ", " : "") << v << " (" << hist[v] << " voxels)";
      ++nbad;
    }
  if (nbad) {
    std::ostringstream w;
    w << nbad << " label value(s) outside the classes: " << os.str() << (nbad > 8 ? ", ..." : "")
      << "; expected class values 0.." << num_classes - 1;
    add(c.label, w.str());
  }
  if (have_img) {
    std::string why;
    if (!same_grid(img.geo, lab.geo, &why))
      add(c.label, "label grid differs from its image " + c.image + ": " + why +
                       " (expected the same size, spacing, origin and direction)");
  }
  return out;
}

std::vector<Problem> check_dataset(const Dataset& d, int num_classes) {
  std::vector<Problem> out;
  for (const auto& c : d.cases) {
    auto p = check_case(c, num_classes);
    out.insert(out.end(), p.begin(), p.end());
  }
  return out;
}

// ---------------------------------------------------------------- cache
Image VolumeCache::Entry::image() const {
  Image im;
  im.geo = geo;
  if (!i16.empty())
    im.v.assign(i16.begin(), i16.end());
  else
    im.v = f32;
  return im;
}

std::shared_ptr<const VolumeCache::Entry> VolumeCache::get(const CaseFiles& c) {
  const std::string key = c.image + "|" + c.label;
  std::shared_ptr<std::once_flag> once;
  {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = entries_.find(key);
    if (it != entries_.end() && it->second) return it->second;
    auto& o = once_[key];
    if (!o) o = std::make_shared<std::once_flag>();
    once = o;
  }
  std::call_once(*once, [&] {
    auto e = std::make_shared<Entry>();
    Image im = read_image(c.image);
    e->geo = im.geo;
    bool exact = true;
    for (float v : im.v)
      if (!(v >= -32768.f && v <= 32767.f && v == std::floor(v))) {
        exact = false;
        break;
      }
    if (exact)
      e->i16.assign(im.v.begin(), im.v.end());
    else
      e->f32 = std::move(im.v);
    if (!c.label.empty()) e->label = read_label(c.label);
    std::lock_guard<std::mutex> lk(mu_);
    entries_[key] = e;
  });
  std::lock_guard<std::mutex> lk(mu_);
  auto it = entries_.find(key);
  CUSEG_REQUIRE(it != entries_.end(), c.image << ": failed to load into the cache");
  return it->second;
}

size_t VolumeCache::bytes() const {
  std::lock_guard<std::mutex> lk(mu_);
  size_t b = 0;
  for (const auto& kv : entries_)
    b += kv.second->i16.size() * 2 + kv.second->f32.size() * 4 + kv.second->label.v.size();
  return b;
}

size_t VolumeCache::size() const {
  std::lock_guard<std::mutex> lk(mu_);
  return entries_.size();
}

}  // namespace data
}  // namespace cuseg
