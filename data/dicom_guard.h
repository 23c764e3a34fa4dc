// A bound on what GDCM will allocate (used by data/image_io.cpp; no ITK, no GDCM here).
//
// GDCM trusts the value length of each DICOM element and allocates it before reading: a 2 KB
// file declaring a 4 GB element makes GDCM allocate and zero-fill 4 GB (found by fuzz_dicom),
// and GDCM reads every file of a folder it scans. Debian also builds GDCM with assertions on, so
// some malformed files abort the process (gdcmdump itself aborts on one of pydicom's test files).
// dicom_length_problem() therefore walks a file's element headers (tags, VRs, lengths; values
// are skipped, never read) by the encoding rules of the standard and refuses a file that breaks
// them: a defined length past the end of the file, an explicit-VR element without a valid VR, a
// sequence holding something other than items, a file that ends inside or right after its meta
// information, Samples per Pixel other than 1, 3, 4 (the last three abort GDCM; found by
// fuzz_dicom), a top-level element given twice, and an image pixel module that disagrees with
// the native pixel data: Bits Allocated other than 1 or a multiple of 8 (GDCM asserted on 12-bit
// packed data; fuzz_dicom), Bits Stored 0 or above Bits Allocated, a Number of Frames that is
// not a positive integer, a Photometric Interpretation that is no defined term or disagrees
// with Samples per Pixel (GDCM matched "YBR_FULL_42" as YBR_FULL_422 and read past the pixel
// data; fuzz_dicom), pixel data shorter than the module declares (GDCM copies the declared size
// out of it when it converts pixels). GDCM's heuristics for such files are not relied on.
// A deflated transfer syntax cannot be walked without inflating it; those files go to GDCM
// unchecked.
// Checked against the DICOM files that pydicom and highdicom ship for their tests (the 163
// that pydicom reads without force: implicit and explicit VR, big endian, deflated, JPEG/JPEG
// 2000/RLE, YBR_FULL_422, sequences, UN sequences, DICOMDIR): it refuses five, all broken (two
// truncated, one GDCM cannot read, one gdcmdump aborts on, pydicom's badVR.dcm with Number of
// Frames "1A"), and passes the others.
#pragma once
#include <string>

namespace cuseg {
namespace data {
namespace detail {

// True when the file is a DICOM Part 10 file (the "DICM" magic after the 128-byte preamble).
bool has_dicm_magic(const std::string& path);
// "" when every element length fits the file; otherwise what was found, e.g.
// "element (7fe0,0010) at byte 1234 declares 4294967040 bytes, the file has 512 left".
std::string dicom_length_problem(const std::string& path);

}  // namespace detail
}  // namespace data
}  // namespace cuseg
