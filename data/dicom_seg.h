// DICOM Segmentation (SEG) objects: writing a label map as a binary SEG that references the
// CT series it was computed from, and reading one back (through DCMTK's dcmseg, kept inside
// data/dicom_seg.cpp; builds configured with CUSEG_WITH_DCMTK=OFF compile
// data/dicom_seg_nodcmtk.cpp instead, whose functions throw a clear error).
//
// What the writer produces (DICOM PS3.3 A.51, Segmentation IOD):
// - Patient, Study and Frame of Reference taken over from the source series (same Study
//   Instance UID, same Frame of Reference UID); a new Series and SOP Instance (UIDs generated
//   under DCMTK's root), modality SEG.
// - One segment per label value 1..N (see liver_segments()); segments do not overlap, so
//   label value = segment number. Binary segmentation (1 bit per pixel), AUTOMATIC algorithm.
// - One frame per source slice and per segment (empty slices included), so the object spans
//   exactly the source grid. Shared functional groups: Pixel Measures (PixelSpacing = row
//   spacing \ column spacing, SliceThickness and SpacingBetweenSlices = the k spacing) and
//   Plane Orientation (the source's ImageOrientationPatient). Per frame: Plane Position (the
//   ImagePositionPatient of the source slice, as stored there), Segment Identification, Frame
//   Content (dimension index values: segment number, slice 1..K) and Derivation Image, which
//   references the source slice's SOP Class and Instance UIDs.
// - Common Instance Reference: the source Series Instance UID and every source SOP instance.
// A frame's pixel (r, c) is voxel (i = c, j = r, k) of the ITK grid of the series, the
// convention data/image.h uses (i along ImageOrientationPatient's row direction).
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "cuseg/data/image.h"

namespace cuseg {
namespace data {

// A coded concept (DICOM Code Sequence Macro): code value, coding scheme, meaning.
struct CodedConcept {
  std::string value, scheme, meaning;
  bool operator==(const CodedConcept& o) const {
    return value == o.value && scheme == o.scheme && meaning == o.meaning;
  }
};

struct SegmentDefinition {
  int label = 0;                       // label value in the mask = segment number
  std::string name;                    // Segment Label
  std::string description;             // Segment Description
  CodedConcept category, type;         // Segmented Property Category / Type
  CodedConcept anatomic_region;        // Anatomic Region Sequence (empty value: none)
  std::array<uint8_t, 3> display_rgb;  // written as Recommended Display CIELab Value
};

// cuseg's two segments, coded with SNOMED CT (scheme SCT) concepts from the DICOM context
// groups for segmentations (PS3.16):
//   1 liver:  category 91723000 "Anatomical Structure" (CID 7150),
//             type 10200004 "Liver" (CID 7151 / 7154, SNOMED CT "Liver structure").
//   2 tumour: category 49755003 "Morphologically Abnormal Structure" (CID 7150),
//             type 108369006 "Neoplasm" (CID 7151 / 7159, SNOMED CT "Neoplasm"),
//             anatomic region 10200004 "Liver": together "neoplasm of the liver". SNOMED CT's
//             pre-coordinated 126851005 "Neoplasm of liver" is a disorder (clinical finding)
//             concept, not a body or morphologic structure, and is in none of DICOM's
//             segmentation property type context groups, so it is not used as the type.
// The liver segment is label 1 only (liver without tumour): segments are disjoint, as the
// mask's labels are.
const std::vector<SegmentDefinition>& liver_segments();

struct DicomSegOptions {
  std::string series_description = "cuseg liver and liver tumour segmentation";
  int series_number = 901;
  std::string algorithm_name = "cuseg 3-D U-Net";
  std::string software_version;         // empty: "cuseg <version of this build>"
  std::string content_label = "CUSEG";  // Content Label (CS: capitals, digits, '_', <= 16)
};

// Writes `mask` as a DICOM SEG referencing the DICOM series in `series_dir` (the first series
// GDCM finds there, as read_dicom_series() reads it). `mask` must lie on exactly that series'
// grid (same_grid). Every source slice must map to one k of the grid (its
// ImagePositionPatient projected on the slice normal, within 1% of the slice spacing) and
// every k to one slice; otherwise an error names the folder and the file. Labels outside
// `segments` are an error. Atomic: temp + rename. Throws cuseg::Error naming the path.
void write_dicom_seg(const LabelMap& mask, const std::string& series_dir, const std::string& path,
                     const DicomSegOptions& options = {},
                     const std::vector<SegmentDefinition>& segments = liver_segments());

// A SEG read back (for checks and tests).
struct SegmentInfo {
  int number = 0;
  std::string label, algorithm_type;  // algorithm type: MANUAL, SEMIAUTOMATIC or AUTOMATIC
  CodedConcept category, type, anatomic_region;
};
struct DicomSegContents {
  std::string sop_class_uid, sop_instance_uid, series_instance_uid, study_instance_uid,
      frame_of_reference_uid, modality, patient_id;
  std::string referenced_series_uid;              // Common Instance Reference
  std::vector<std::string> referenced_instances;  // its SOP Instance UIDs
  std::vector<SegmentInfo> segments;
  // The frames as a label map: the grid is rebuilt from the functional groups (columns, rows,
  // PixelSpacing, ImageOrientationPatient, and the frames' ImagePositionPatient, which must lie
  // on evenly spaced planes along the normal); each voxel holds the number of the segment whose
  // frame sets it (0 if none; where segments overlap, the highest number).
  LabelMap labels;
  // Per slice k of `labels`: the SOP Instance UID its frames' Derivation Image references
  // (empty when a slice has no frame or no reference).
  std::vector<std::string> source_instance_per_slice;
  int frames = 0;
};
DicomSegContents read_dicom_seg(const std::string& path);

// Identity of a DICOM series (same series choice as read_dicom_series), read with DCMTK:
// its UIDs and its SOP Instance UIDs indexed by k of the series' grid (the mapping the writer
// uses).
struct DicomSeriesInfo {
  std::string study_instance_uid, series_instance_uid, frame_of_reference_uid, patient_id;
  std::vector<std::string> instance_per_slice;
};
DicomSeriesInfo dicom_series_info(const std::string& series_dir);

}  // namespace data
}  // namespace cuseg
