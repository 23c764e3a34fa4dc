// DICOM SEG (data/dicom_seg.h): a label map written as a SEG that references a CT series
// written by write_dicom_series, then read back through DCMTK: the same voxels, the same grid,
// the source's study / frame of reference / instances, and the segments' codes.
// The CT is tests/data/realct/abdomen_ct_3mm_30slices (122 x 101: a frame of 12,322 pixels is
// not a whole number of bytes, so the 1-bit frames of a binary SEG do not start on byte
// boundaries, the case where packing and unpacking go wrong first).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <set>

#include "cuseg/core/check.h"
#include "cuseg/data/dicom_seg.h"
#include "cuseg/data/image.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace cuseg::data;

namespace {

#define CUSEG_REQUIRE_DCMTK()                                                               \
  do {                                                                                      \
    CUSEG_REQUIRE_FILE_IO();                                                                \
    if (!CUSEG_HAVE_DCMTK) GTEST_SKIP() << "built with CUSEG_WITH_DCMTK=OFF: no DICOM SEG"; \
  } while (0)

const std::string kData = CUSEG_TEST_DATA_DIR;

// The CT as a DICOM series, and a label map on the series' grid made from its organ labels
// (liver 5 -> 1; two other organs -> 2, so both segments are non-empty and touch slices
// differently).
struct Fixture {
  fs::path dir, series;
  Image ct;
  LabelMap labels;
};

Fixture make_series(const std::string& name) {
  Fixture f;
  f.dir = scratch_dir("dicom_seg", name);
  f.series = f.dir / "series";
  const Image ct = read_image(kData + "/realct/abdomen_ct_3mm_30slices.nii.gz");
  write_dicom_series(ct, f.series.string());
  f.ct = read_dicom_series(f.series.string());
  const LabelMap organs = read_label(kData + "/realct/abdomen_ct_3mm_30slices_organs.nii.gz");
  std::string why;
  EXPECT_TRUE(same_grid(organs.geo, ct.geo, &why)) << why;
  f.labels = LabelMap::make(f.ct.geo, 0);
  std::set<int> present(organs.v.begin(), organs.v.end());
  present.erase(0);
  present.erase(5);
  const int a = present.empty() ? -1 : *present.begin(),
            b = present.empty() ? -1 : *present.rbegin();
  for (size_t n = 0; n < organs.v.size(); ++n)
    f.labels.v[n] = organs.v[n] == 5 ? 1 : (organs.v[n] == a || organs.v[n] == b) ? 2 : 0;
  return f;
}

}  // namespace

TEST(DicomSeg, RoundTripKeepsVoxelsGeometryAndReferences) {
  CUSEG_REQUIRE_DCMTK();
  const Fixture f = make_series("roundtrip");
  int64_t n1 = 0, n2 = 0;
  for (uint8_t v : f.labels.v) n1 += v == 1, n2 += v == 2;
  ASSERT_GT(n1, 0);
  ASSERT_GT(n2, 0);
  const std::string seg = (f.dir / "seg.dcm").string();
  write_dicom_seg(f.labels, f.series.string(), seg);
  const DicomSegContents c = read_dicom_seg(seg);

  // Voxels: exactly the label map (label value = segment number).
  ASSERT_EQ(c.labels.geo.size, f.labels.geo.size);
  EXPECT_TRUE(c.labels.v == f.labels.v);
  // Geometry: the series grid, within ITK's own same-grid tolerance (1e-6 x spacing).
  std::string why;
  EXPECT_TRUE(same_grid(c.labels.geo, f.ct.geo, &why)) << why;
  // One frame per slice per segment.
  EXPECT_EQ(c.frames, 2 * f.ct.geo.size[2]);

  // Object identity and references: the source's study and frame of reference, a new
  // series, every source instance referenced, each slice's frames derived from its CT slice.
  EXPECT_EQ(c.modality, "SEG");
  EXPECT_EQ(c.sop_class_uid, "1.2.840.10008.5.1.4.1.1.66.4");  // Segmentation Storage
  const DicomSeriesInfo src = dicom_series_info(f.series.string());
  ASSERT_EQ(src.instance_per_slice.size(), size_t(f.ct.geo.size[2]));
  EXPECT_FALSE(src.study_instance_uid.empty());
  EXPECT_FALSE(src.frame_of_reference_uid.empty());
  EXPECT_EQ(c.study_instance_uid, src.study_instance_uid);
  EXPECT_EQ(c.frame_of_reference_uid, src.frame_of_reference_uid);
  EXPECT_EQ(c.referenced_series_uid, src.series_instance_uid);
  EXPECT_NE(c.series_instance_uid, src.series_instance_uid);  // the SEG is a new series
  EXPECT_EQ(c.patient_id, src.patient_id);
  EXPECT_EQ(c.source_instance_per_slice, src.instance_per_slice);
  EXPECT_EQ(std::set<std::string>(c.referenced_instances.begin(), c.referenced_instances.end()),
            std::set<std::string>(src.instance_per_slice.begin(), src.instance_per_slice.end()));
  EXPECT_EQ(c.referenced_instances.size(), src.instance_per_slice.size());

  // Segments: cuseg's two, SNOMED CT coded, automatic.
  const auto& defs = liver_segments();
  ASSERT_EQ(c.segments.size(), defs.size());
  for (size_t s = 0; s < defs.size(); ++s) {
    EXPECT_EQ(c.segments[s].number, defs[s].label);
    EXPECT_EQ(c.segments[s].label, defs[s].name);
    EXPECT_EQ(c.segments[s].algorithm_type, "AUTOMATIC");
    EXPECT_EQ(c.segments[s].category, defs[s].category);
    EXPECT_EQ(c.segments[s].type, defs[s].type);
    EXPECT_EQ(c.segments[s].anatomic_region.value, defs[s].anatomic_region.value);
  }
  EXPECT_EQ(defs[0].type.value, "10200004");   // SNOMED CT Liver
  EXPECT_EQ(defs[1].type.value, "108369006");  // SNOMED CT Neoplasm
  EXPECT_EQ(defs[1].anatomic_region.value, "10200004");
}

// An empty mask: frames still span the grid (no voxel set); two SEGs of one series share its
// study, frame of reference and referenced series, and are distinct instances and series.
TEST(DicomSeg, EmptyMaskStillSpansTheGridAndSharesStudy) {
  CUSEG_REQUIRE_DCMTK();
  const Fixture f = make_series("empty");
  const std::string a = (f.dir / "a.dcm").string(), b = (f.dir / "b.dcm").string();
  write_dicom_seg(f.labels, f.series.string(), a);
  write_dicom_seg(LabelMap::make(f.ct.geo, 0), f.series.string(), b);
  const DicomSegContents ca = read_dicom_seg(a), cb = read_dicom_seg(b);
  std::string why;
  EXPECT_TRUE(same_grid(cb.labels.geo, f.ct.geo, &why)) << why;
  for (uint8_t v : cb.labels.v) ASSERT_EQ(v, 0);
  EXPECT_EQ(ca.study_instance_uid, cb.study_instance_uid);
  EXPECT_EQ(ca.frame_of_reference_uid, cb.frame_of_reference_uid);
  EXPECT_EQ(ca.referenced_series_uid, cb.referenced_series_uid);
  EXPECT_NE(ca.sop_instance_uid, cb.sop_instance_uid);
  EXPECT_NE(ca.series_instance_uid, cb.series_instance_uid);
}

TEST(DicomSeg, BadInputsAreClearErrorsWithoutFiles) {
  CUSEG_REQUIRE_DCMTK();
  const Fixture f = make_series("bad");
  auto expect_error = [&](const std::function<void()>& call, const std::string& needle,
                          const fs::path& out) {
    try {
      call();
      ADD_FAILURE() << "no error, expected one naming " << needle;
    } catch (const cuseg::Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(out)) << out;
  };
  // A label without a segment.
  LabelMap three = f.labels;
  three.v[123] = 3;
  const fs::path o1 = f.dir / "three.dcm";
  expect_error([&] { write_dicom_seg(three, f.series.string(), o1.string()); }, "three.dcm", o1);
  // A mask on another grid.
  LabelMap shifted = f.labels;
  shifted.geo.origin[0] += 1.5;
  const fs::path o2 = f.dir / "shifted.dcm";
  expect_error([&] { write_dicom_seg(shifted, f.series.string(), o2.string()); }, "grid", o2);
  // Not a DICOM folder.
  const fs::path empty_dir = f.dir / "not_dicom";
  fs::create_directories(empty_dir);
  std::ofstream(empty_dir / "x.txt") << "not DICOM\n";
  const fs::path o3 = f.dir / "none.dcm";
  expect_error([&] { write_dicom_seg(f.labels, empty_dir.string(), o3.string()); }, "not_dicom",
               o3);
  // Reading something that is not a SEG.
  expect_error([&] { read_dicom_seg((f.series / "IM0000.dcm").string()); }, "IM0000.dcm",
               f.dir / "nothing");
  for (const auto& e : fs::directory_iterator(f.dir))
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();
}
