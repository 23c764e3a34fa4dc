// Synthetic abdominal CT phantom: the demo's default dataset, written as a Decathlon-style
// folder (dataset.json, imagesTr/liver_N.nii.gz int16 HU, labelsTr/liver_N.nii.gz uint8) so the
// whole real I/O path is exercised.
//
// Anatomy per axial slice (HU): air -1000 outside an elliptic body; subcutaneous fat (-100);
// a muscle wall (+50); an abdominal cavity of fat/bowel (-60..+20, smoothly varying); spine
// (vertebral body +350 core / +900 cortex, spinal canal +15) with paraspinal muscles; ribs
// (+800) around the wall; aorta (+150) and IVC (+120); kidneys (+140) and spleen (+50) on the
// left; the liver (+50..+70) in the right upper abdomen with a random lobulated shape; 0-3
// tumours inside the liver (hypo- or hyper-dense by 45-80 HU, radius >= 4 voxels on every
// axis, ~20% of cases without tumour); Gaussian noise (sigma 8-14 HU).
// The volume is RAS (ITK direction diag(-1, -1, 1)), centred on the world origin; spacing is
// 360 / X mm in-plane and 192 / Z mm between slices (2.8125 x 2.8125 x 3 mm at 128x128x64).
// Deterministic: a case depends only on (seed, case index, size).
#pragma once
#include <array>
#include <cstdint>
#include <string>

#include "cuseg/data/image.h"

namespace cuseg {
namespace data {

struct PhantomConfig {
  std::array<int, 3> size{128, 128, 64};  // voxels (i, j, k)
  uint64_t seed = 0;
};

struct PhantomCase {
  Image ct;        // HU, integral values (stored as int16)
  LabelMap label;  // 0 background, 1 liver, 2 tumour
  int tumours = 0;
};

PhantomCase make_phantom(const PhantomConfig& cfg, int case_index);

// Writes cases 0..n-1 as imagesTr/liver_<i>.nii.gz + labelsTr/liver_<i>.nii.gz and a Decathlon
// dataset.json (labels 0 background, 1 liver, 2 cancer). Creates `dir`; overwrites the files.
void write_phantom_dataset(const std::string& dir, int cases, const PhantomConfig& cfg);

}  // namespace data
}  // namespace cuseg
