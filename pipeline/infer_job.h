// engine_infer's work as a library call (apps/engine_infer.cpp is only its command line):
// find the inputs, read each CT and check it, segment it (pipeline/inference.h), write the
// mask safely, compare with a reference, and describe everything in JSON.
//
// INPUT may be a NIfTI/NRRD/MHA file, a DICOM series folder, or a folder of image files (then
// OUTPUT is a folder, masks are named <case>.nii.gz, and a bad case is reported and skipped).
// Masks are uint8 on exactly the input grid, or (DICOM series input) a DICOM Segmentation
// object referencing the series; each is written to a temporary name, read back and checked,
// then renamed, so a failed case never leaves a partial file. The same holds for the class
// probabilities (--probabilities: one 4-D NIfTI per case, data::write_probabilities).
#pragma once
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "cuseg/data/image.h"
#include "cuseg/data/metrics.h"
#include "cuseg/pipeline/inference.h"

namespace cuseg {

// Case id of an image file: the name without its image extension and nnU-Net's _0000 suffix.
std::string case_id(const std::string& path);
// A visible file whose name ends in an image extension (data::image_extension).
bool is_image_file(const std::string& path);

// Reads a CT: an image file or a DICOM series folder. The readers' header checks come first
// (data/image.h: a read that does not fit `limits` is refused before any voxel buffer exists).
// Every value must be finite; for NIfTI the stored payload is scanned as well, because ITK's
// reader turns NaN/Inf into 0 silently.
data::Image read_ct(const std::string& path, const data::ReadLimits& limits = {});
// Reads a reference label map for `ct` (read from ct_path): same grid, labels < classes.
data::LabelMap read_reference(const std::string& path, const data::Image& ct,
                              const std::string& ct_path, int classes,
                              const data::ReadLimits& limits = {});
// Writes `mask` to a temporary sibling (".partial-<name>", same extension so the same format),
// reads it back, checks uint8 and the grid `expected`, then renames it to `path`. On any
// failure the temporary file is removed and the error rethrown: never a partial mask.
void write_mask_verified(const data::LabelMap& mask, const std::string& path,
                         const data::Geometry& expected);
// The same for a DICOM SEG referencing the series in `series_dir` (data/dicom_seg.h): read back
// with DCMTK, it must hold the mask's voxels on the grid `expected`.
void write_dicom_seg_verified(const data::LabelMap& mask, const std::string& series_dir,
                              const std::string& path, const data::Geometry& expected);
// The same for class probabilities (data::write_probabilities: 4-D NIfTI, scaled uint8): read
// back, it must be 4-D with one map per class on the grid `expected`.
void write_probabilities_verified(const std::vector<data::Image>& classes, const std::string& path,
                                  const data::Geometry& expected);

enum class MaskFormat { Image, DicomSeg };  // --output-type nifti | dicom-seg

struct InferJob {
  std::string input;    // CT file, DICOM series folder, or folder of CT files
  std::string output;   // mask file (single input) or folder (folder input)
  std::string preview;  // x.png (axial montage) or x.gif (every slice, animated) for a single
                        // input; a folder for folder input; "" = none
  std::string preview_format = "png";  // folder input: png or gif previews
  // Class probabilities (--probabilities): a .nii.gz / .nii file for a single input, a folder
  // (<case>.nii.gz inside) for folder input; "" = none. Sets segment.probabilities.
  std::string probabilities;
  MaskFormat format = MaskFormat::Image;  // DicomSeg: DICOM series input only
  std::string ref;      // reference label file (single) or folder of <case>.<ext>; "" = none
  std::string stats;    // JSON stats file; "" = none
  std::string summary;  // summary JSON (with ref); "" = OUTPUT/summary.json or <out>_summary.json
  SegmentOptions segment;
  double seconds_before = 0;  // time already spent (model loading), added to seconds_wall
};

struct CaseResult {
  // reference / preview / probabilities "" when none
  std::string id, input, output, reference, preview, probabilities;
  data::Geometry input_grid;
  std::string orientation;  // of the input, e.g. "LPS"
  InferencePlan plan;
  StageTimes times;  // "read", segment()'s stages, "write", "preview"
  TransferStats transfers;
  // Per structure: liver (label >= 1, the LiTS convention: tumour included), liver without
  // tumour (label 1), tumour (label 2; its components are the lesions).
  data::StructureStats liver, parenchyma, tumour;
  // Structures that reach the first or last slice of some axis ("liver", "tumour"): they may
  // continue outside the scan, so their volume is a lower bound.
  std::vector<std::string> touches_border;
  std::optional<data::CaseMetrics> metrics;  // with a reference
  double peak_device_pool_mib = 0, peak_rss_mib = 0;
};

struct InferJobResult {
  bool folder = false;
  std::vector<CaseResult> done;
  std::vector<std::pair<std::string, std::string>> skipped;  // (input file, why)
  std::string stats_path, summary_path;                      // written files ("" = none)
  double mean_dice_liver = 0, mean_dice_tumour = 0;          // when summary_path is set
  // engine_infer's exit status: 0 all cases done, 3 some cases of a folder were skipped,
  // 1 a folder with no case done.
  int exit_code() const;
};

// Called as each case finishes (or is skipped), so a front end can print progress.
struct InferJobProgress {
  std::function<void(const CaseResult&)> done;
  std::function<void(const std::string& input, const std::string& why)> skipped;
};

// Runs the job with a loaded model. Errors that concern the job as a whole (no such input,
// a bad output name, an empty folder, a single case that fails) throw cuseg::Error and write
// nothing; in a folder a failing case is skipped and reported.
InferJobResult run_infer_job(LoadedModel& model, Context& ctx, const InferJob& job,
                             const InferJobProgress& progress = {});

// JSON texts (also written by run_infer_job when the job names the files).
// One case: sizes, per-structure statistics, seconds per stage, plan, transfers, memory,
// device, checkpoint.
std::string case_stats_json(const CaseResult& c, const std::string& device,
                            const std::string& checkpoint);
// nnU-Net-like summary of the cases with metrics: metric_per_case, mean, foreground_mean and
// the LiTS global Dice.
std::string summary_json(const std::vector<CaseResult>& cases);

}  // namespace cuseg
