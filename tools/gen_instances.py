#!/usr/bin/python3
"""Writes synthetic DICOM instances for tests and benchmarks.

  gen_instances.py OUTDIR --kind ct|cr --count N [--study-uid UID] [--seed S]

ct: 512x512x16-bit CT Image Storage (~512 KiB); cr: 2560x2048x16-bit CR Image
Storage (~10 MiB). Files are Explicit VR Little Endian with made-up patient
demographics, one study, one series. Pixel content is deterministic noise.
Uses Debian's python3-pydicom only (no numpy).
"""
import argparse
import os
import random
import sys

import pydicom
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

KINDS = {
    "ct": ("1.2.840.10008.5.1.4.1.1.2", "CT", 512, 512, "CHEST"),
    "cr": ("1.2.840.10008.5.1.4.1.1.1", "CR", 2048, 2560, "CHEST"),
}
ROOT = "1.2.826.0.1.3680043.10.1139."


def make(path, kind, study_uid, series_uid, index, patient_id, accession, pixel_block):
    sop_class, modality, cols, rows, body = KINDS[kind]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid(prefix=ROOT)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(path, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.is_little_endian = True
    ds.is_implicit_VR = False
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"] if kind == "ct" else ["ORIGINAL", "PRIMARY"]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyDate = "20261101"
    ds.StudyTime = "101500"
    ds.AccessionNumber = accession
    ds.Modality = modality
    ds.ReferringPhysicianName = "Referrer^Test"
    ds.StudyDescription = "Synthetic %s study" % modality
    ds.SeriesDescription = "Synthetic %s series" % modality
    ds.PatientName = "Synthetic^Patient"
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.BodyPartExamined = body
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = index + 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    if kind == "ct":
        ds.RescaleIntercept = -1024
        ds.RescaleSlope = 1
        ds.PixelSpacing = [0.7, 0.7]
        ds.SliceThickness = 1.0
    else:
        ds.ImagerPixelSpacing = [0.139, 0.139]
    need = rows * cols * 2
    # Rotate a shared random block so each instance differs without a slow
    # per-pixel Python loop.
    off = (index * 7919) % len(pixel_block)
    data = (pixel_block[off:] + pixel_block[:off])
    ds.PixelData = (data * (need // len(data) + 1))[:need]
    ds.save_as(path, write_like_original=False)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("--kind", choices=sorted(KINDS), default="ct")
    ap.add_argument("--count", type=int, default=10)
    ap.add_argument("--study-uid")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    os.makedirs(a.outdir, exist_ok=True)
    rng = random.Random(a.seed)
    block = bytes((rng.getrandbits(8) & 0x0F) if i % 2 else rng.getrandbits(8) for i in range(1 << 16))
    study = a.study_uid or generate_uid(prefix=ROOT)
    series = generate_uid(prefix=ROOT)
    # One patient and one accession per study, as a modality would send.
    patient_id = "SYN%06d" % rng.randrange(10**6)
    accession = "ACC%06d" % rng.randrange(10**6)
    for i in range(a.count):
        make(os.path.join(a.outdir, "%s_%05d.dcm" % (a.kind, i)), a.kind, study, series, i, patient_id, accession,
             block)
    print(a.outdir)


if __name__ == "__main__":
    sys.exit(main())
