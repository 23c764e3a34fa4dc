#!/usr/bin/env python3
"""Independent check of a DICOM SEG written by `engine_infer --output-type dicom-seg`.

Reads the SEG with highdicom/pydicom (not DCMTK, which cuseg writes it with), the NIfTI mask
written by `engine_infer` for the same input with nibabel (not ITK), and the source DICOM
series with pydicom, then checks that
  - every SEG voxel lands on a voxel of the NIfTI grid (world positions: the SEG's affine in
    LPS, the NIfTI affine in RAS, within 1e-3 voxel) and the labels agree voxel for voxel,
    over the whole grid (segment number = label value; segments must not overlap);
  - the SEG spans the NIfTI grid (same shape, spacing within 1e-4 mm);
  - study, frame of reference and patient are the source series', the referenced series is
    the source series, every source instance is referenced, and each frame's Derivation
    Image references the source slice at the frame's ImagePositionPatient;
  - segment 1 is SNOMED CT 10200004 "Liver", segment 2 SNOMED CT 108369006 "Neoplasm" with
    anatomic region 10200004 "Liver".

Usage: check_dicom_seg.py SEG.dcm MASK.nii.gz SERIES_DIR
Needs: numpy, nibabel, pydicom, highdicom (not part of the product; exit status 77 = "skip"
when one is missing, so a test runner can report the check as skipped). Exit 0 = passed,
1 = a check failed (each failure is printed).
"""
import os
import sys

try:
    import highdicom as hd
    import nibabel as nib
    import numpy as np
    import pydicom
except ImportError as e:  # pragma: no cover - depends on the environment
    print(f"check_dicom_seg: skipped, missing Python package: {e.name}")
    sys.exit(77)

LIVER = ("10200004", "SCT")
NEOPLASM = ("108369006", "SCT")


def code(seq):
    return (str(seq[0].CodeValue), str(seq[0].CodingSchemeDesignator)) if seq else None


def main(seg_path, nii_path, series_dir):
    failures = []

    def expect(ok, what):
        if not ok:
            failures.append(what)
            print("FAIL:", what)

    seg = hd.seg.segread(seg_path)
    ds = pydicom.dcmread(seg_path)
    expect(ds.Modality == "SEG", f"modality {ds.Modality}")

    # --- segments
    segs = {int(s.SegmentNumber): s for s in ds.SegmentSequence}
    expect(sorted(segs) == [1, 2], f"segment numbers {sorted(segs)}")
    if 1 in segs:
        expect(code(segs[1].SegmentedPropertyTypeCodeSequence) == LIVER, "segment 1 type")
    if 2 in segs:
        expect(code(segs[2].SegmentedPropertyTypeCodeSequence) == NEOPLASM, "segment 2 type")
        expect(code(segs[2].get("AnatomicRegionSequence", [])) == LIVER, "segment 2 region")

    # --- voxels and geometry
    vol = seg.get_volume(combine_segments=True, relabel=False)  # values = segment numbers
    labels = np.asarray(vol.array)                    # (slices, rows, columns)
    aff_lps = np.asarray(vol.affine, dtype=np.float64)  # (slice, row, column, 1) -> LPS mm
    nii = nib.load(nii_path)
    mask = np.asarray(nii.dataobj).astype(np.int64)   # (i, j, k)
    ras_to_index = np.linalg.inv(nii.affine.astype(np.float64))
    lps_to_ras = np.diag([-1.0, -1.0, 1.0, 1.0])
    to_nii = ras_to_index @ lps_to_ras @ aff_lps      # SEG index -> NIfTI index
    expect(labels.size == mask.size, f"SEG has {labels.size} voxels, NIfTI {mask.size}")
    # Each SEG axis must map onto one NIfTI axis (a permutation with flips), at integers.
    idx = np.indices(labels.shape).reshape(3, -1)
    pts = to_nii @ np.vstack([idx, np.ones((1, idx.shape[1]))])
    ijk = np.rint(pts[:3]).astype(np.int64)
    off = np.abs(pts[:3] - ijk).max() if ijk.size else 0.0
    expect(off < 1e-3, f"SEG voxels are {off:.2e} voxel off the NIfTI grid")
    inside = np.all((ijk >= 0) & (ijk < np.array(mask.shape)[:, None]), axis=0)
    expect(inside.all(), f"{(~inside).sum()} SEG voxels fall outside the NIfTI grid")
    if inside.all() and labels.size == mask.size:
        seen = np.zeros(mask.shape, dtype=bool)
        seen[ijk[0], ijk[1], ijk[2]] = True
        expect(seen.all(), "the SEG does not cover every NIfTI voxel")
        got = mask[ijk[0], ijk[1], ijk[2]]
        want = labels.reshape(-1).astype(np.int64)
        bad = int((got != want).sum())
        expect(bad == 0, f"{bad} voxels differ between the SEG and the NIfTI mask")
        print(f"voxels: {labels.size} compared, labels "
              f"{ {int(v): int(c) for v, c in zip(*np.unique(want, return_counts=True))} }, "
              f"{bad} differ")
    sp_nii = np.sqrt((nii.affine[:3, :3] ** 2).sum(axis=0))
    sp_seg = np.sqrt((aff_lps[:3, :3] ** 2).sum(axis=0))
    expect(np.allclose(sorted(sp_nii), sorted(sp_seg), atol=1e-4),
           f"spacing SEG {sp_seg} vs NIfTI {sp_nii}")

    # --- references to the source series
    files = [os.path.join(series_dir, f) for f in sorted(os.listdir(series_dir))]
    src = [pydicom.dcmread(f, stop_before_pixels=True) for f in files if os.path.isfile(f)]
    src = [s for s in src if "SOPInstanceUID" in s]
    expect(len(src) > 0, "no DICOM files in the series folder")
    if src:
        s0 = src[0]
        expect(ds.StudyInstanceUID == s0.StudyInstanceUID, "study instance UID")
        expect(ds.FrameOfReferenceUID == s0.FrameOfReferenceUID, "frame of reference UID")
        expect(ds.get("PatientID", "") == s0.get("PatientID", ""), "patient ID")
        expect(ds.SeriesInstanceUID != s0.SeriesInstanceUID, "the SEG reuses the CT series UID")
        ref = ds.ReferencedSeriesSequence[0]
        expect(ref.SeriesInstanceUID == s0.SeriesInstanceUID, "referenced series UID")
        referenced = {r.ReferencedSOPInstanceUID for r in ref.ReferencedInstanceSequence}
        expect(referenced == {s.SOPInstanceUID for s in src}, "referenced instances")
        by_uid = {s.SOPInstanceUID: s for s in src}
        mismatched = 0
        for fr in ds.PerFrameFunctionalGroupsSequence:
            uid = fr.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
            pos = np.array(fr.PlanePositionSequence[0].ImagePositionPatient, dtype=float)
            s = by_uid.get(uid)
            if s is None or not np.allclose(pos, np.array(s.ImagePositionPatient, float),
                                            atol=1e-4):
                mismatched += 1
        expect(mismatched == 0, f"{mismatched} frames reference a slice at another position")
        print(f"references: {len(referenced)} source instances, "
              f"{len(ds.PerFrameFunctionalGroupsSequence)} frames")
    print("check_dicom_seg:", "FAILED" if failures else "passed", seg_path)
    return 1 if failures else 0


if __name__ == "__main__":
    if len(sys.argv) != 4:
        print(__doc__)
        sys.exit(2)
    sys.exit(main(*sys.argv[1:]))
