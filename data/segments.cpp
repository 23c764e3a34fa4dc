// cuseg's segment definitions for DICOM SEG (see dicom_seg.h; compiled with or without DCMTK).
#include "cuseg/data/dicom_seg.h"

namespace cuseg {
namespace data {

const std::vector<SegmentDefinition>& liver_segments() {
  static const std::vector<SegmentDefinition> segments = {
      {1,
       "Liver",
       "Liver without tumour (cuseg label 1)",
       {"91723000", "SCT", "Anatomical Structure"},
       {"10200004", "SCT", "Liver"},
       {"", "", ""},
       {40, 220, 60}},
      {2,
       "Liver tumour",
       "Liver tumour (cuseg label 2)",
       {"49755003", "SCT", "Morphologically Abnormal Structure"},
       {"108369006", "SCT", "Neoplasm"},
       {"10200004", "SCT", "Liver"},
       {240, 40, 40}},
  };
  return segments;
}

}  // namespace data
}  // namespace cuseg
