// DICOM SEG writer and reader through DCMTK's dcmseg (see dicom_seg.h). DCMTK stays inside
// this file: data/dicom_seg.h exposes plain types only.
#include "cuseg/data/dicom_seg.h"

// DCMTK wants its configuration header first.
#include "dcmtk/config/osconfig.h"
// clang-format off
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/dcmfg/fgderimg.h"
#include "dcmtk/dcmfg/fgfracon.h"
#include "dcmtk/dcmfg/fgpixmsr.h"
#include "dcmtk/dcmfg/fgplanor.h"
#include "dcmtk/dcmfg/fgplanpo.h"
#include "dcmtk/dcmfg/fgseg.h"
#include "dcmtk/dcmiod/cielabutil.h"
#include "dcmtk/dcmiod/iodreferences.h"
#include "dcmtk/dcmiod/modcommoninstanceref.h"
#include "dcmtk/dcmseg/segdoc.h"
#include "dcmtk/dcmseg/segment.h"
#include "dcmtk/dcmseg/segutils.h"
#include "dcmtk/oflog/oflog.h"
// clang-format on

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>

#include "cuseg/core/check.h"

namespace fs = std::filesystem;

namespace cuseg {
namespace data {

namespace {

// DCMTK logs warnings to stderr through oflog; our own errors carry what matters, so only its
// errors are let through (set once per process).
void quiet_dcmtk_log() {
  static std::once_flag once;
  std::call_once(once, [] { OFLog::configure(OFLogger::ERROR_LOG_LEVEL); });
}

void check(const OFCondition& c, const std::string& path, const std::string& what) {
  if (c.bad()) CUSEG_THROW(path << ": DICOM SEG: " << what << ": " << c.text());
}

std::string fmt(double x) {
  char b[64];
  std::snprintf(b, sizeof b, "%.10g", x);
  return b;
}

std::string get_string(DcmItem& item, const DcmTagKey& tag, long pos = 0) {
  OFString v;
  if (item.findAndGetOFString(tag, v, pos).bad()) return "";
  return v.c_str();
}

// What the writer needs from one source slice.
struct SourceSlice {
  std::string file, sop_class, sop_instance, series_uid;
  std::array<std::string, 3> position_text;  // ImagePositionPatient as stored
  std::array<double, 3> position{};
};

struct SourceSeries {
  std::vector<SourceSlice> slices;  // indexed by k of the series grid
  std::string first_file, study_uid, series_uid, frame_of_reference_uid, patient_id;
};

std::array<double, 3> column(const Geometry& g, int a) {
  return {g.direction[size_t(a)], g.direction[size_t(3 + a)], g.direction[size_t(6 + a)]};
}
double dot(const std::array<double, 3>& a, const std::array<double, 3>& b) {
  return a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
}

// Reads the series' headers and maps every file to its k on `g` (the series' grid).
SourceSeries scan_series(const std::string& dir, const Geometry& g) {
  SourceSeries s;
  const std::vector<std::string> files = dicom_series_files(dir);
  CUSEG_REQUIRE(int(files.size()) == g.size[2], dir << ": the DICOM series has " << files.size()
                                                    << " files but the grid has " << g.size[2]
                                                    << " slices");
  s.slices.resize(files.size());
  std::vector<bool> seen(files.size(), false);
  const auto c0 = column(g, 0), c1 = column(g, 1), c2 = column(g, 2);
  for (const std::string& f : files) {
    DcmFileFormat ff;
    check(ff.loadFileUntilTag(f.c_str(), EXS_Unknown, EGL_noChange, DCM_MaxReadLength,
                              ERM_autoDetect, DCM_PixelData),
          f, "cannot read the source slice");
    DcmDataset& ds = *ff.getDataset();
    SourceSlice sl;
    sl.file = f;
    sl.sop_class = get_string(ds, DCM_SOPClassUID);
    sl.sop_instance = get_string(ds, DCM_SOPInstanceUID);
    sl.series_uid = get_string(ds, DCM_SeriesInstanceUID);
    CUSEG_REQUIRE(!sl.sop_class.empty() && !sl.sop_instance.empty(),
                  f << ": source slice without SOP Class / Instance UID");
    Uint16 rows = 0, cols = 0;
    ds.findAndGetUint16(DCM_Rows, rows);
    ds.findAndGetUint16(DCM_Columns, cols);
    CUSEG_REQUIRE(int(rows) == g.size[1] && int(cols) == g.size[0],
                  f << ": slice is " << cols << "x" << rows << " (columns x rows), the grid "
                    << g.size[0] << "x" << g.size[1]);
    for (int a = 0; a < 3; ++a) {
      Float64 v = 0;
      check(ds.findAndGetFloat64(DCM_ImagePositionPatient, v, a), f, "no ImagePositionPatient");
      sl.position[size_t(a)] = v;
      sl.position_text[size_t(a)] = get_string(ds, DCM_ImagePositionPatient, a);
    }
    std::array<double, 6> iop{};
    for (int a = 0; a < 6; ++a) {
      Float64 v = 0;
      check(ds.findAndGetFloat64(DCM_ImageOrientationPatient, v, a), f,
            "no ImageOrientationPatient");
      iop[size_t(a)] = v;
    }
    // Tolerance 1e-4: ImageOrientationPatient is decimal text (DS, 16 characters).
    for (int a = 0; a < 3; ++a)
      CUSEG_REQUIRE(std::fabs(iop[size_t(a)] - c0[size_t(a)]) < 1e-4 &&
                        std::fabs(iop[size_t(3 + a)] - c1[size_t(a)]) < 1e-4,
                    f << ": ImageOrientationPatient differs from the series grid's direction");
    std::array<double, 3> d{};
    for (int a = 0; a < 3; ++a) d[size_t(a)] = sl.position[size_t(a)] - g.origin[size_t(a)];
    const double kf = dot(d, c2) / g.spacing[2];
    const long k = std::lround(kf);
    // 1% of a voxel: slices of one series lie on the grid ITK built from their positions.
    CUSEG_REQUIRE(std::fabs(kf - double(k)) < 0.01 && k >= 0 && k < g.size[2] &&
                      std::fabs(dot(d, c0)) < 0.01 * g.spacing[0] &&
                      std::fabs(dot(d, c1)) < 0.01 * g.spacing[1],
                  f << ": ImagePositionPatient (" << fmt(sl.position[0]) << ", "
                    << fmt(sl.position[1]) << ", " << fmt(sl.position[2])
                    << ") is not on a slice of the series grid");
    CUSEG_REQUIRE(!seen[size_t(k)], f << ": a second file for slice " << k
                                      << " (first: " << s.slices[size_t(k)].file << ")");
    seen[size_t(k)] = true;
    if (s.first_file.empty()) {
      s.first_file = f;
      s.study_uid = get_string(ds, DCM_StudyInstanceUID);
      s.series_uid = sl.series_uid;
      s.patient_id = get_string(ds, DCM_PatientID);
      s.frame_of_reference_uid = get_string(ds, DCM_FrameOfReferenceUID);
    }
    s.slices[size_t(k)] = sl;
  }
  return s;
}

}  // namespace

DicomSeriesInfo dicom_series_info(const std::string& series_dir) {
  quiet_dcmtk_log();
  const Image img = read_dicom_series(series_dir);
  const SourceSeries s = scan_series(series_dir, img.geo);
  DicomSeriesInfo info;
  info.study_instance_uid = s.study_uid;
  info.series_instance_uid = s.series_uid;
  info.frame_of_reference_uid = s.frame_of_reference_uid;
  info.patient_id = s.patient_id;
  for (const auto& sl : s.slices) info.instance_per_slice.push_back(sl.sop_instance);
  return info;
}

void write_dicom_seg(const LabelMap& mask, const std::string& series_dir, const std::string& path,
                     const DicomSegOptions& options,
                     const std::vector<SegmentDefinition>& segments) {
  quiet_dcmtk_log();
  const Geometry& g = mask.geo;
  CUSEG_REQUIRE(int64_t(mask.v.size()) == g.numel(), path << ": mask buffer has " << mask.v.size()
                                                          << " values, geometry needs "
                                                          << g.numel());
  CUSEG_REQUIRE(g.size[0] <= 65535 && g.size[1] <= 65535,
                path << ": slices larger than 65535 pixels cannot be stored in DICOM");
  for (size_t s = 0; s < segments.size(); ++s)
    CUSEG_CHECK(segments[s].label == int(s) + 1, "segment definitions must be labels 1..N");
  for (size_t n = 0; n < mask.v.size(); ++n)
    CUSEG_REQUIRE(mask.v[n] <= segments.size(),
                  path << ": mask value " << int(mask.v[n]) << " at voxel " << n
                       << " has no segment (expected 0.." << segments.size() << ")");
  {
    const Image src = read_dicom_series(series_dir);
    std::string why;
    CUSEG_REQUIRE(same_grid(src.geo, g, &why), path << ": the mask is not on the grid of the DICOM "
                                                       "series in "
                                                    << series_dir << ": " << why);
  }
  const SourceSeries src = scan_series(series_dir, g);

  const std::string version = options.software_version.empty()
                                  ? std::string("cuseg ") + CUSEG_VERSION
                                  : options.software_version;
  // Equipment: every field must be non-empty (dcmseg); there is no device serial number.
  IODGeneralEquipmentModule::EquipmentInfo equipment("cuseg", "cuseg engine_infer", "none",
                                                     version.c_str());
  ContentIdentificationMacro content("1", options.content_label.c_str(), "Liver and liver tumour",
                                     "");
  DcmSegmentation* raw = nullptr;
  check(DcmSegmentation::createBinarySegmentation(raw, Uint16(g.size[1]), Uint16(g.size[0]),
                                                  equipment, content),
        path, "cannot create the segmentation");
  std::unique_ptr<DcmSegmentation> doc(raw);

  // Patient, Study and Frame of Reference of the source; the SEG is a new series.
  check(doc->importHierarchy(src.first_file.c_str(), OFTrue, OFTrue, OFTrue, OFFalse), path,
        "cannot take over patient / study / frame of reference from " + src.first_file);
  char uid[100];
  check(
      doc->getSeries().setSeriesInstanceUID(dcmGenerateUniqueIdentifier(uid, SITE_SERIES_UID_ROOT)),
      path, "series UID");
  check(doc->getSeries().setSeriesNumber(std::to_string(options.series_number).c_str()), path,
        "series number");
  check(doc->getSeries().setSeriesDescription(options.series_description.c_str()), path,
        "series description");
  check(doc->getSOPCommon().setSOPInstanceUID(
            dcmGenerateUniqueIdentifier(uid, SITE_INSTANCE_UID_ROOT)),
        path, "SOP instance UID");

  // Segments 1..N, in label order (segment number = label value).
  for (const SegmentDefinition& def : segments) {
    DcmSegment* seg = nullptr;
    check(DcmSegment::create(
              seg, def.name.c_str(),
              CodeSequenceMacro(def.category.value.c_str(), def.category.scheme.c_str(),
                                def.category.meaning.c_str()),
              CodeSequenceMacro(def.type.value.c_str(), def.type.scheme.c_str(),
                                def.type.meaning.c_str()),
              DcmSegTypes::SAT_AUTOMATIC, options.algorithm_name.c_str()),
          path, "segment " + def.name);
    std::unique_ptr<DcmSegment> owned(seg);
    check(seg->setSegmentDescription(def.description.c_str()), path, "segment description");
    if (!def.anatomic_region.value.empty())
      check(seg->getGeneralAnatomyCode().getAnatomicRegion().set(
                def.anatomic_region.value.c_str(), def.anatomic_region.scheme.c_str(),
                def.anatomic_region.meaning.c_str()),
            path, "anatomic region");
    double L = 0, a = 0, b = 0;
    IODCIELabUtil::rgb2DicomLab(L, a, b, def.display_rgb[0] / 255.0, def.display_rgb[1] / 255.0,
                                def.display_rgb[2] / 255.0);
    check(seg->setRecommendedDisplayCIELabValue(Uint16(std::lround(L)), Uint16(std::lround(a)),
                                                Uint16(std::lround(b))),
          path, "display colour");
    Uint16 number = 0;
    check(doc->addSegment(seg, number), path, "cannot add segment " + def.name);
    owned.release();  // the document owns it now
    CUSEG_CHECK(number == def.label, "segment " << def.name << " got number " << number);
  }

  // Dimensions: segment number, then the plane position.
  const std::string dim_uid = dcmGenerateUniqueIdentifier(uid, SITE_INSTANCE_UID_ROOT);
  IODMultiframeDimensionModule& dims = doc->getDimensions();
  check(dims.addDimensionIndex(DCM_ReferencedSegmentNumber, dim_uid.c_str(),
                               DCM_SegmentIdentificationSequence, "ReferencedSegmentNumber"),
        path, "dimension (segment)");
  check(dims.addDimensionIndex(DCM_ImagePositionPatient, dim_uid.c_str(), DCM_PlanePositionSequence,
                               "ImagePositionPatient"),
        path, "dimension (position)");

  // Shared functional groups: orientation and pixel measures of the grid.
  const auto c0 = column(g, 0), c1 = column(g, 1);
  std::unique_ptr<FGPlaneOrientationPatient> orient(FGPlaneOrientationPatient::createMinimal(
      fmt(c0[0]).c_str(), fmt(c0[1]).c_str(), fmt(c0[2]).c_str(), fmt(c1[0]).c_str(),
      fmt(c1[1]).c_str(), fmt(c1[2]).c_str()));
  CUSEG_CHECK(orient, path << ": plane orientation group");
  check(doc->addForAllFrames(*orient), path, "plane orientation");
  FGPixelMeasures measures;
  check(measures.setPixelSpacing((fmt(g.spacing[1]) + "\\" + fmt(g.spacing[0])).c_str()), path,
        "pixel spacing");
  check(measures.setSliceThickness(fmt(g.spacing[2]).c_str()), path, "slice thickness");
  check(measures.setSpacingBetweenSlices(fmt(g.spacing[2]).c_str()), path, "slice spacing");
  check(doc->addForAllFrames(measures), path, "pixel measures");

  // Frames: every segment x every slice (empty slices included: the SEG spans the grid).
  const size_t plane = size_t(g.size[0]) * size_t(g.size[1]);
  std::vector<Uint8> pixels(plane);
  FGFrameContent content_fg;
  for (const SegmentDefinition& def : segments)
    for (int k = 0; k < g.size[2]; ++k) {
      const SourceSlice& sl = src.slices[size_t(k)];
      const uint8_t* m = mask.v.data() + size_t(k) * plane;
      for (size_t n = 0; n < plane; ++n) pixels[n] = m[n] == def.label ? 1 : 0;
      std::unique_ptr<FGPlanePosPatient> pos(FGPlanePosPatient::createMinimal(
          sl.position_text[0].c_str(), sl.position_text[1].c_str(), sl.position_text[2].c_str()));
      CUSEG_CHECK(pos, path << ": plane position group");
      check(content_fg.setDimensionIndexValues(Uint32(def.label), 0), path, "dimension index");
      check(content_fg.setDimensionIndexValues(Uint32(k + 1), 1), path, "dimension index");
      FGDerivationImage derivation;
      DerivationImageItem* item = nullptr;
      check(derivation.addDerivationImageItem(CodeSequenceMacro("113076", "DCM", "Segmentation"),
                                              "", item),
            path, "derivation");
      auto* source = new SourceImageItem();
      item->getSourceImageItems().push_back(source);  // owned by the derivation item
      check(source->getPurposeOfReferenceCode().set("121322", "DCM",
                                                    "Source image for image processing "
                                                    "operation"),
            path, "purpose of reference");
      check(source->getImageSOPInstanceReference().setReferencedSOPClassUID(sl.sop_class.c_str()),
            path, "source SOP class");
      check(source->getImageSOPInstanceReference().setReferencedSOPInstanceUID(
                sl.sop_instance.c_str()),
            path, "source SOP instance");
      OFVector<FGBase*> per_frame;
      per_frame.push_back(pos.get());
      per_frame.push_back(&content_fg);
      per_frame.push_back(&derivation);
      check(doc->addFrame(pixels.data(), Uint16(def.label), per_frame), path,
            "cannot add the frame of segment " + def.name + ", slice " + std::to_string(k));
    }

  // Common Instance Reference: the source series and every instance of it.
  IODReferences refs;
  for (const SourceSlice& sl : src.slices) {
    // IODReferences takes ownership only when it accepts the reference (its UIDs are valid);
    // a refused one stays ours, and the source file is named.
    std::unique_ptr<IODImageReference> ref(
        new IODImageReference(src.patient_id.c_str(), src.study_uid.c_str(), sl.series_uid.c_str(),
                              sl.sop_instance.c_str(), sl.sop_class.c_str()));
    CUSEG_REQUIRE(refs.add(ref.get()),
                  sl.file << ": cannot reference this source slice in " << path
                          << " (invalid Patient ID or Study / Series / SOP UIDs?); expected the "
                             "files of one valid DICOM series");
    ref.release();  // owned by refs now
  }
  CUSEG_REQUIRE(doc->getCommonInstanceReference().addReferences(refs, src.study_uid.c_str()) ==
                    src.slices.size(),
                path << ": cannot reference the source instances");

  // Atomic write: temp name beside the target, then rename.
  const fs::path p(path);
  if (p.has_parent_path()) fs::create_directories(p.parent_path());
  const std::string tmp = (p.parent_path() / ("." + p.filename().string() + ".tmp")).string();
  const OFCondition saved = doc->saveFile(tmp.c_str(), EXS_LittleEndianExplicit);
  std::error_code ec;
  if (saved.bad()) {
    fs::remove(tmp, ec);
    CUSEG_THROW(path << ": cannot write the DICOM SEG: " << saved.text());
  }
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp, ec);
    CUSEG_THROW(path << ": cannot write (rename failed)");
  }
}

namespace {

CodedConcept concept_of(CodeSequenceMacro& c) {
  OFString v, s, m;
  c.getCodeValue(v);
  c.getCodingSchemeDesignator(s);
  c.getCodeMeaning(m);
  return {v.c_str(), s.c_str(), m.c_str()};
}

}  // namespace

DicomSegContents read_dicom_seg(const std::string& path) {
  quiet_dcmtk_log();
  CUSEG_REQUIRE(fs::is_regular_file(path), path << ": no such DICOM SEG file");
  DicomSegContents out;
  Uint16 rows = 0, cols = 0;
  {
    // Plain attributes first (UIDs and references), from the dataset itself.
    DcmFileFormat ff;
    check(ff.loadFileUntilTag(path.c_str(), EXS_Unknown, EGL_noChange, DCM_MaxReadLength,
                              ERM_autoDetect, DCM_PixelData),
          path, "cannot read the file");
    DcmDataset& ds = *ff.getDataset();
    out.sop_class_uid = get_string(ds, DCM_SOPClassUID);
    out.sop_instance_uid = get_string(ds, DCM_SOPInstanceUID);
    out.series_instance_uid = get_string(ds, DCM_SeriesInstanceUID);
    out.study_instance_uid = get_string(ds, DCM_StudyInstanceUID);
    out.frame_of_reference_uid = get_string(ds, DCM_FrameOfReferenceUID);
    out.modality = get_string(ds, DCM_Modality);
    out.patient_id = get_string(ds, DCM_PatientID);
    ds.findAndGetUint16(DCM_Rows, rows);
    ds.findAndGetUint16(DCM_Columns, cols);
    DcmItem* series_item = nullptr;
    if (ds.findAndGetSequenceItem(DCM_ReferencedSeriesSequence, series_item, 0).good() &&
        series_item) {
      out.referenced_series_uid = get_string(*series_item, DCM_SeriesInstanceUID);
      DcmItem* inst = nullptr;
      for (long n = 0;
           series_item->findAndGetSequenceItem(DCM_ReferencedInstanceSequence, inst, n).good() &&
           inst;
           ++n)
        out.referenced_instances.push_back(get_string(*inst, DCM_ReferencedSOPInstanceUID));
    }
  }
  CUSEG_REQUIRE(out.sop_class_uid == UID_SegmentationStorage,
                path << ": not a DICOM SEG (SOP Class UID '" << out.sop_class_uid
                     << "', expected Segmentation Storage " << UID_SegmentationStorage << ")");
  DcmSegmentation* raw = nullptr;
  check(DcmSegmentation::loadFile(path.c_str(), raw), path, "not a readable DICOM SEG");
  std::unique_ptr<DcmSegmentation> doc(raw);
  CUSEG_REQUIRE(doc->getSegmentationType() == DcmSegTypes::ST_BINARY,
                path << ": only binary segmentations are read");
  for (size_t s = 1; s <= doc->getNumberOfSegments(); ++s) {
    DcmSegment* seg = doc->getSegment(s);
    CUSEG_REQUIRE(seg, path << ": segment " << s << " missing");
    SegmentInfo info;
    info.number = int(s);
    OFString label;
    seg->getSegmentLabel(label);
    info.label = label.c_str();
    info.algorithm_type = DcmSegTypes::algoType2OFString(seg->getSegmentAlgorithmType()).c_str();
    info.category = concept_of(seg->getSegmentedPropertyCategoryCode());
    info.type = concept_of(seg->getSegmentedPropertyTypeCode());
    info.anatomic_region = concept_of(seg->getGeneralAnatomyCode().getAnatomicRegion());
    out.segments.push_back(info);
  }

  FGInterface& fg = doc->getFunctionalGroups();
  const size_t frames = doc->getNumberOfFrames();
  out.frames = int(frames);
  CUSEG_REQUIRE(frames > 0 && rows > 0 && cols > 0, path << ": the SEG has no frames");
  auto* measures = dynamic_cast<FGPixelMeasures*>(fg.get(0, DcmFGTypes::EFG_PIXELMEASURES));
  auto* orient =
      dynamic_cast<FGPlaneOrientationPatient*>(fg.get(0, DcmFGTypes::EFG_PLANEORIENTPATIENT));
  CUSEG_REQUIRE(measures && orient, path << ": no pixel measures or plane orientation");
  Float64 row_spacing = 0, col_spacing = 0;
  check(measures->getPixelSpacing(row_spacing, 0), path, "pixel spacing");
  check(measures->getPixelSpacing(col_spacing, 1), path, "pixel spacing");
  std::array<double, 6> iop{};
  check(orient->getImageOrientationPatient(iop[0], iop[1], iop[2], iop[3], iop[4], iop[5]), path,
        "image orientation");
  const std::array<double, 3> r{iop[0], iop[1], iop[2]}, c{iop[3], iop[4], iop[5]};
  const std::array<double, 3> nrm{r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2],
                                  r[0] * c[1] - r[1] * c[0]};
  struct FrameRef {
    std::array<double, 3> pos;
    double along;
    int segment;
    std::string source;
  };
  std::vector<FrameRef> refs(frames);
  for (size_t f = 0; f < frames; ++f) {
    auto* pos =
        dynamic_cast<FGPlanePosPatient*>(fg.get(Uint32(f), DcmFGTypes::EFG_PLANEPOSPATIENT));
    auto* seg = dynamic_cast<FGSegmentation*>(fg.get(Uint32(f), DcmFGTypes::EFG_SEGMENTATION));
    CUSEG_REQUIRE(pos && seg, path << ": frame " << f << " has no plane position or segment");
    FrameRef& fr = refs[f];
    check(pos->getImagePositionPatient(fr.pos[0], fr.pos[1], fr.pos[2]), path, "position");
    fr.along = dot(fr.pos, nrm);
    Uint16 number = 0;
    check(seg->getReferencedSegmentNumber(number), path, "segment number");
    fr.segment = number;
    auto* der =
        dynamic_cast<FGDerivationImage*>(fg.get(Uint32(f), DcmFGTypes::EFG_DERIVATIONIMAGE));
    if (der && !der->getDerivationImageItems().empty() &&
        !der->getDerivationImageItems()[0]->getSourceImageItems().empty()) {
      OFString uid;
      der->getDerivationImageItems()[0]
          ->getSourceImageItems()[0]
          ->getImageSOPInstanceReference()
          .getReferencedSOPInstanceUID(uid);
      fr.source = uid.c_str();
    }
  }
  // The planes: distinct positions along the normal, which must be evenly spaced.
  std::vector<double> along;
  for (const auto& fr : refs) along.push_back(fr.along);
  std::sort(along.begin(), along.end());
  std::vector<double> planes;
  for (double a : along)
    if (planes.empty() || a - planes.back() > 1e-3) planes.push_back(a);  // 1 um: same plane
  double spacing = 0;
  if (planes.size() > 1) {
    spacing = (planes.back() - planes.front()) / double(planes.size() - 1);
    for (size_t q = 1; q < planes.size(); ++q)
      CUSEG_REQUIRE(std::fabs(planes[q] - planes[q - 1] - spacing) < 0.01 * spacing,
                    path << ": frames are not on evenly spaced planes (gap "
                         << planes[q] - planes[q - 1] << " mm vs " << spacing << " mm)");
  } else {
    Float64 thick = 1;
    measures->getSliceThickness(thick);
    spacing = thick;
  }
  Geometry g;
  g.size = {int(cols), int(rows), int(planes.size())};
  g.spacing = {col_spacing, row_spacing, spacing};
  for (int a = 0; a < 3; ++a) {
    g.direction[size_t(3 * a + 0)] = r[size_t(a)];
    g.direction[size_t(3 * a + 1)] = c[size_t(a)];
    g.direction[size_t(3 * a + 2)] = nrm[size_t(a)];
  }
  // Origin: the position of a frame on the first plane.
  for (const auto& fr : refs)
    if (std::fabs(fr.along - planes.front()) <= 1e-3) {
      g.origin = fr.pos;
      break;
    }
  out.labels = LabelMap::make(g, 0);
  out.source_instance_per_slice.assign(planes.size(), "");
  const size_t plane = size_t(cols) * size_t(rows);
  for (size_t f = 0; f < frames; ++f) {
    const FrameRef& fr = refs[f];
    const int k = int(std::lround((fr.along - planes.front()) / (spacing > 0 ? spacing : 1)));
    CUSEG_CHECK(k >= 0 && k < g.size[2], path << ": frame " << f << " off the grid");
    if (!fr.source.empty()) out.source_instance_per_slice[size_t(k)] = fr.source;
    const DcmIODTypes::Frame* packed = doc->getFrame(f);
    CUSEG_REQUIRE(packed, path << ": frame " << f << " has no pixel data");
    std::unique_ptr<DcmIODTypes::Frame> bytes(DcmSegUtils::unpackBinaryFrame(packed, rows, cols));
    CUSEG_REQUIRE(bytes && bytes->length >= plane,
                  path << ": frame " << f << " cannot be unpacked");
    uint8_t* dst = out.labels.v.data() + size_t(k) * plane;
    for (size_t n = 0; n < plane; ++n)
      if (bytes->pixData[n] && uint8_t(fr.segment) > dst[n]) dst[n] = uint8_t(fr.segment);
  }
  return out;
}

}  // namespace data
}  // namespace cuseg
