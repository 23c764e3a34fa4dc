#!/usr/bin/env python3
"""Prints what a DICOM SEG written by `engine_infer --output-type dicom-seg` contains: its SOP
class, type and size, how it relates to the source CT series (study, frame of reference,
referenced series and instances), each segment with its SNOMED CT codes, and the first frame's
segment, source slice and position.

Usage: summarize_dicom_seg.py SEG.dcm SERIES_DIR
Needs: pydicom (not part of the product; the README's DICOM SEG example was printed by it).
For a full check against the NIfTI mask use check_dicom_seg.py.
"""
import os
import sys

try:
    import pydicom
except ImportError:  # pragma: no cover - depends on the environment
    print("summarize_dicom_seg: needs the Python package pydicom")
    sys.exit(77)


def main(seg_path, series_dir):
    ds = pydicom.dcmread(seg_path)
    series = {}  # SOPInstanceUID -> file name
    first = None
    for name in sorted(os.listdir(series_dir)):
        d = pydicom.dcmread(os.path.join(series_dir, name), stop_before_pixels=True)
        series[d.SOPInstanceUID] = name
        first = first or d
    same = lambda a, b: "same as the CT series" if a == b else "DIFFERENT from the CT series"
    print("SOPClassUID        ", ds.SOPClassUID, f"({ds.SOPClassUID.name})")
    print("Modality           ", ds.Modality, "| SegmentationType", ds.SegmentationType)
    print("Rows x Columns     ", ds.Rows, "x", ds.Columns, "| NumberOfFrames", ds.NumberOfFrames)
    print("StudyInstanceUID   ", same(ds.StudyInstanceUID, first.StudyInstanceUID))
    print("FrameOfReferenceUID", same(ds.FrameOfReferenceUID, first.FrameOfReferenceUID))
    print("SeriesInstanceUID  ", "new" if ds.SeriesInstanceUID != first.SeriesInstanceUID else "SAME")
    ref = ds.ReferencedSeriesSequence[0]
    print("ReferencedSeries   ",
          "the CT series" if ref.SeriesInstanceUID == first.SeriesInstanceUID else "ANOTHER series",
          f"({len(ref.ReferencedInstanceSequence)} of its {len(series)} instances)")
    for s in ds.SegmentSequence:
        c = s.SegmentedPropertyCategoryCodeSequence[0]
        t = s.SegmentedPropertyTypeCodeSequence[0]
        line = (f"Segment {s.SegmentNumber} '{s.SegmentLabel}': {s.SegmentAlgorithmType} "
                f"'{s.SegmentAlgorithmName}', category {c.CodingSchemeDesignator} {c.CodeValue} "
                f"'{c.CodeMeaning}', type {t.CodingSchemeDesignator} {t.CodeValue} '{t.CodeMeaning}'")
        if "AnatomicRegionSequence" in s:
            a = s.AnatomicRegionSequence[0]
            line += f", region {a.CodingSchemeDesignator} {a.CodeValue} '{a.CodeMeaning}'"
        print(line)
    f0 = ds.PerFrameFunctionalGroupsSequence[0]
    src = f0.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
    print("Frame 1            ", "segment", f0.SegmentIdentificationSequence[0].ReferencedSegmentNumber,
          "| derived from", series.get(src, "AN INSTANCE NOT IN THE SERIES"),
          "| ImagePositionPatient", [str(v) for v in f0.PlanePositionSequence[0].ImagePositionPatient])
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2]))
