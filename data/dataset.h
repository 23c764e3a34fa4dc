// Dataset discovery (Decathlon folders and loose CT files), deterministic train/validation
// splits, the integrity check run before training, and the in-memory volume cache.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cuseg/data/image.h"

namespace cuseg {
namespace data {

struct CaseFiles {
  std::string id;     // e.g. "liver_12"
  std::string image;  // path
  std::string label;  // path, empty when the case has no label
};

struct Dataset {
  std::string root;
  std::string source;  // "dataset.json", "imagesTr/labelsTr pairs" or "loose files"
  std::vector<CaseFiles> cases;
  std::map<int, std::string> labels;  // class index -> name (default 0/1/2 liver task)
  std::vector<std::string> notes;     // skipped files, unpaired images, ...
};

// Decathlon folder: dataset.json when present ("training" pairs, "labels", or nnU-Net v2's
// "file_ending"); otherwise imagesTr/ + labelsTr/ paired by name, accepting liver_N.nii.gz and
// liver_N_0000.nii.gz for images. Hidden files and AppleDouble "._*" files are skipped.
Dataset discover_decathlon(const std::string& dir);
// Loose folder: every readable image file; a file named <stem>_<suffix> next to <stem> is taken
// as <stem>'s label map (e.g. ct.nii.gz + ct_liver.nii.gz).
Dataset discover_loose(const std::string& dir);
// Decathlon when dir holds dataset.json or imagesTr/, loose files otherwise.
Dataset discover(const std::string& dir);

// ---------------------------------------------------------------- splits
struct Split {
  uint64_t seed = 0;
  std::vector<std::string> train, val;
};
// Sorted ids, shuffled with a portable seeded Fisher-Yates; the first round(n * val_fraction)
// (at least 1 when n >= 2) are validation. 118 cases at the default 0.11 -> 105 / 13.
Split make_split(std::vector<std::string> ids, double val_fraction = 0.11, uint64_t seed = 0);
void write_split(const Split& s, const std::string& path);
Split read_split(const std::string& path);
// Reuses `path` when it exists (and checks that it names exactly these ids), otherwise makes
// and writes a new split.
Split load_or_create_split(const std::string& path, const std::vector<std::string>& ids,
                           double val_fraction = 0.11, uint64_t seed = 0);

// ---------------------------------------------------------------- integrity
struct Problem {
  std::string file;
  std::string what;  // what was found and what was expected
};
// Checks one case: both files readable (the readers' own checks: complete, sane header, fits
// memory), 3-D scalar, image values finite, label values exact integers within
// [0, num_classes), image/label size and geometry agree (ITK tolerances). NaN/Inf are seen in
// every format: for NIfTI the readers restore what ITK's reader replaces with 0 (data/image.h).
std::vector<Problem> check_case(const CaseFiles& c, int num_classes = 3);
std::vector<Problem> check_dataset(const Dataset& d, int num_classes = 3);

// ---------------------------------------------------------------- cache
// Decoded volumes kept in memory so epochs do not re-read and re-decompress files. Images whose
// values are all integers in int16 range (CT in HU) are stored as int16 (half the memory);
// others as float. Thread-safe; a case is decoded once even when requested concurrently.
class VolumeCache {
 public:
  struct Entry {
    Geometry geo;
    std::vector<int16_t> i16;  // used when exact
    std::vector<float> f32;    // otherwise
    LabelMap label;            // empty v when the case has no label
    Image image() const;       // decoded float copy
  };
  std::shared_ptr<const Entry> get(const CaseFiles& c);
  size_t bytes() const;
  size_t size() const;

 private:
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<Entry>> entries_;
  std::map<std::string, std::shared_ptr<std::once_flag>> once_;
};

}  // namespace data
}  // namespace cuseg
