#!/usr/bin/python3
"""Writes a synthetic CT, MR or PET series with known geometry and values, for
the series-to-volume tests (scp/pixels/).

  gen_series.py OUT_DIR [--modality CT|MR|PT] [--layout single|enhanced|legacy]
                [--slices N] [--rows R] [--columns C] [--pixel-spacing ROW,COL]
                [--spacing MM] [--orientation axial|coronal|sagittal|oblique]
                [--defect none|tilt|gap|duplicate|mixed-orientation|nonuniform|two-acquisitions]
                [--stack-by default|echo|time] [--quirk none|modality-lut|rgb|short-pixel-data]
                [--pet-units BQML|CNTS] [--decay START|ADMIN|NONE] [--no-weight]
                [--lesion X,Y,Z,R,ADD ...] [--shuffle] [--seed S]

single: one Part 10 file per slice (CT, MR or PET Image Storage).
enhanced / legacy: one Enhanced (or Legacy Converted Enhanced) CT/MR/PET
object, geometry in the functional groups: Pixel Measures and Plane
Orientation shared, Plane Position and Frame Content per frame, Pixel Value
Transformation shared for CT with a per-frame override on every other frame
(intercept -1000 instead of -1024, stored values moved to match), per frame
for PET.

Geometry: slice k (along the normal) has its first pixel at
  origin + offset_k * normal, normal = row x column,
with offset_k = k * spacing (nonuniform: spacing + 0.5 mm for the second half).
axial: row (1,0,0), column (0,1,0). coronal: row (1,0,0), column (0,0,-1).
sagittal: row (0,1,0), column (0,0,-1). oblique: row (0.6,0.8,0), column
(-0.48,0.36,-0.8), normal (-0.64,0.48,0.6). Files and frames are written in
shuffled order with --shuffle, Instance Numbers in that order.

Values, at slice offset z (mm), row j, column i:
  CT: HU = -500 + 4 z + 3 j - 2 i (stored + 1024, Rescale Intercept -1024)
  MR: 100 + 4 z + j + i (no rescale)
  PT: Bq/ml = (1000 + 10 j + 7 i) x slope_k with Rescale Slope
      slope_k = 0.5 + 0.25 k differing per slice (stored 1000 + 10 j + 7 i).
  two-acquisitions: the second stack at the same positions, values + 100
  (PET: stored + 100), told apart by --stack-by:
    default: Acquisition Number 1, 2 (single) or Temporal Position Index 1, 2
             (enhanced)
    echo:    Echo Numbers 1, 2 (single) or the MR Echo Sequence's Effective
             Echo Time 10, 20 (enhanced)
    time:    Frame Reference Time 0, 1000 (single PET) or Temporal Position
             Identifier 1, 2 (single CT/MR) or Temporal Position Index 1, 2

PET: Units BQML, Decay Correction START, F-18 (half-life 6586.2 s), 370 MBq
injected 60 min before the series time, 70 kg; or --pet-units CNTS with
Philips' SUV Scale Factor (7053,1000) = 0.000321.

--phantom ct|mr|pet takes the values from tools/models/phantom3d.py (a
cartoon trunk with 0-3 lesions, --phantom-lesions N to choose, seeded by
--seed) instead of the formula: voxel (k, j, i) of the phantom is pixel
(j, i) of slice k. CT stored as HU + 1024; MR scaled to 0-4000; PET
converted from SUV back to Bq/ml (or counts) with a slope per slice. The
manifest's lesions then give each lesion's centre in LPS mm, its radii and
its voxel count. The reference volume models read these.

--lesion (repeatable) adds ADD to the stored value of every pixel whose
centre lies within R mm of the point (X, Y, Z) (LPS mm): a sphere of known
size and place, ADD HU brighter on CT, ADD more before the PET slope.

--quirk spoils the first file written: a Modality LUT Sequence, Samples per
Pixel 3 (RGB), or Pixel Data shorter than Rows x Columns needs.

Manifest OUT_DIR/manifest.json: the files, the expected volume geometry
(origin, row, column, normal, spacing [z, y, x], depth, rows, columns), the
sources in normal order, suv_scale (the factor from Bq/ml to SUVbw, computed
here independently) and the value formula.
"""
import argparse
import json
import math
import os
import random
import sys
import uuid

import numpy as np
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "models"))
import phantom3d  # noqa: E402

CLASSIC = {"CT": "1.2.840.10008.5.1.4.1.1.2", "MR": "1.2.840.10008.5.1.4.1.1.4", "PT": "1.2.840.10008.5.1.4.1.1.128"}
ENHANCED = {"CT": "1.2.840.10008.5.1.4.1.1.2.1", "MR": "1.2.840.10008.5.1.4.1.1.4.1", "PT": "1.2.840.10008.5.1.4.1.1.130"}
LEGACY = {"CT": "1.2.840.10008.5.1.4.1.1.2.2", "MR": "1.2.840.10008.5.1.4.1.1.4.4", "PT": "1.2.840.10008.5.1.4.1.1.128.1"}
ORIGIN = (-100.5, 20.25, 30.0)
HALF_LIFE = 6586.2
DOSE = 370e6
WEIGHT = 70.0
PHILIPS_FACTOR = 0.000321


def uid(rng):
    return "2.25.%d" % uuid.UUID(int=rng.getrandbits(128)).int


def fmt(v):
    return ("%.6f" % v).rstrip("0").rstrip(".") or "0"


def cross(a, b):
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


def rotate_about(v, axis, angle):
    # Rodrigues' rotation of v about the unit vector axis.
    c, s = math.cos(angle), math.sin(angle)
    d = sum(v[i] * axis[i] for i in range(3))
    x = cross(axis, v)
    return tuple(v[i] * c + x[i] * s + axis[i] * d * (1 - c) for i in range(3))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--modality", choices=["CT", "MR", "PT"], default="CT")
    ap.add_argument("--layout", choices=["single", "enhanced", "legacy"], default="single")
    ap.add_argument("--slices", type=int, default=12)
    ap.add_argument("--rows", type=int, default=10)
    ap.add_argument("--columns", type=int, default=14)
    ap.add_argument("--pixel-spacing", default="0.8,0.6")
    ap.add_argument("--spacing", type=float, default=2.5)
    ap.add_argument("--orientation", choices=["axial", "coronal", "sagittal", "oblique"],
                    default="oblique")
    ap.add_argument("--defect", default="none",
                    choices=["none", "tilt", "gap", "duplicate", "mixed-orientation", "nonuniform", "two-acquisitions"])
    ap.add_argument("--stack-by", choices=["default", "echo", "time"], default="default")
    ap.add_argument("--quirk", choices=["none", "modality-lut", "rgb", "short-pixel-data"], default="none")
    ap.add_argument("--pet-units", choices=["BQML", "CNTS"], default="BQML")
    ap.add_argument("--decay", choices=["START", "ADMIN", "NONE"], default="START")
    ap.add_argument("--no-weight", action="store_true")
    ap.add_argument("--lesion", action="append", default=[], help="X,Y,Z,R,ADD: a sphere in LPS mm")
    ap.add_argument("--phantom", choices=["ct", "mr", "pet"],
                    help="values from tools/models/phantom3d.py instead of the formula")
    ap.add_argument("--phantom-lesions", type=int, default=None, help="lesions in the phantom (default 0-3)")
    ap.add_argument("--shuffle", action="store_true")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    if a.phantom and (phantom3d.MODALITY[a.phantom] != a.modality or a.lesion or a.defect == "two-acquisitions"):
        ap.error("--phantom needs the matching --modality, no --lesion and a single stack")
    rng = random.Random(a.seed)
    os.makedirs(a.out, exist_ok=True)

    row_sp, col_sp = (float(x) for x in a.pixel_spacing.split(","))
    if a.orientation == "axial":
        row, col = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0)
    elif a.orientation == "coronal":
        row, col = (1.0, 0.0, 0.0), (0.0, 0.0, -1.0)
    elif a.orientation == "sagittal":
        row, col = (0.0, 1.0, 0.0), (0.0, 0.0, -1.0)
    else:
        row, col = (0.6, 0.8, 0.0), (-0.48, 0.36, -0.8)
    normal = cross(row, col)
    n = a.slices
    offsets = []
    z = 0.0
    for k in range(n):
        offsets.append(z)
        z += a.spacing + (0.5 if a.defect == "nonuniform" and k >= n // 2 else 0.0)

    # Every slice: (stack, k, offset, position, row, col)
    stacks = 2 if a.defect == "two-acquisitions" else 1
    slices = []
    for stack in range(stacks):
        for k in range(n):
            if a.defect == "gap" and k == n // 2:
                continue
            pos = [ORIGIN[i] + offsets[k] * normal[i] for i in range(3)]
            r, c = row, col
            if a.defect == "tilt":
                shift = offsets[k] * math.tan(math.radians(15))
                pos = [pos[i] + shift * col[i] for i in range(3)]
            if a.defect == "mixed-orientation" and k == n - 1:
                r, c = rotate_about(row, normal, math.radians(10)), rotate_about(col, normal, math.radians(10))
            slices.append({"stack": stack, "k": k, "offset": offsets[k], "pos": pos, "row": r, "col": c})
            if a.defect == "duplicate" and k == n // 2:
                slices.append(dict(slices[-1]))

    suv_scale = 1.0
    if a.modality == "PT":
        if a.pet_units == "CNTS":
            suv_scale = PHILIPS_FACTOR
        elif a.decay == "ADMIN":
            suv_scale = WEIGHT * 1000 / DOSE
        else:
            suv_scale = WEIGHT * 1000 / (DOSE * math.exp(-math.log(2) * 3600 / HALF_LIFE))

    phantom = None
    if a.phantom:
        phantom = phantom3d.generate(np.random.default_rng(a.seed), a.phantom, lesion_count=a.phantom_lesions,
                                     spacing=(a.spacing, row_sp, col_sp), shape=(n, a.rows, a.columns))
        # MR has no physical scale: stored values spread over 0-4000 whatever the phantom's scale.
        mr_scale = 4000.0 / max(float(phantom.voxels.max()), 1e-6) if a.modality == "MR" else 1.0

    study, series, frame_of_reference = uid(rng), uid(rng), uid(rng)
    jj, ii = np.meshgrid(np.arange(a.rows), np.arange(a.columns), indexing="ij")
    lesions = [tuple(float(v) for v in spec.split(",")) for spec in a.lesion]

    def lesion_add(s):
        # Pixel (j, i) of the slice lies at pos + i * col_sp * row + j * row_sp * col.
        add = np.zeros((a.rows, a.columns))
        for x, y, z, r, value in lesions:
            d2 = sum((s["pos"][c] + ii * col_sp * s["row"][c] + jj * row_sp * s["col"][c] - (x, y, z)[c]) ** 2
                     for c in range(3))
            add += np.where(d2 <= r * r, value, 0.0)
        return add

    def stored_and_rescale(s, per_frame_override=False):
        px, slope, intercept = stored_and_rescale_plain(s, per_frame_override)
        if lesions:
            px = np.rint(px + lesion_add(s)).astype(np.uint16)
        return px, slope, intercept

    def stored_and_rescale_plain(s, per_frame_override=False):
        if phantom is not None:
            return stored_from_phantom(phantom.voxels[s["k"]], per_frame_override)
        if a.modality == "CT":
            hu = -500 + 4 * s["offset"] + 3 * jj - 2 * ii + 100 * s["stack"]
            intercept = -1000 if per_frame_override else -1024
            return np.rint(hu - intercept).astype(np.uint16), 1.0, float(intercept)
        if a.modality == "MR":
            return np.rint(100 + 4 * s["offset"] + jj + ii + 100 * s["stack"]).astype(np.uint16), None, None
        slope = 0.5 + 0.25 * s["k"]
        return (1000 + 10 * jj + 7 * ii + 100 * s["stack"]).astype(np.uint16), slope, 0.0

    def stored_from_phantom(values, per_frame_override):
        if a.modality == "CT":
            intercept = -1000 if per_frame_override else -1024
            return np.clip(np.rint(values - intercept), 0, 65535).astype(np.uint16), 1.0, float(intercept)
        if a.modality == "MR":
            return np.clip(np.rint(values * mr_scale), 0, 65535).astype(np.uint16), None, None
        # PET: SUV back to Bq/ml (or counts), with a slope per slice that
        # spreads each slice's range over 0-30000 as scanners do.
        activity = np.maximum(values, 0) / suv_scale
        slope = max(float(activity.max()) / 30000.0, 1e-3)
        return np.rint(activity / slope).astype(np.uint16), slope, 0.0

    def base(ds, sop_class, sop_instance):
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = sop_instance
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame_of_reference
        ds.PatientName, ds.PatientID = "Volume^Synthetic", "VOL%d" % a.seed
        ds.StudyID, ds.AccessionNumber = "S%d" % a.seed, "ACC%d" % a.seed
        ds.BodyPartExamined = "CHEST"
        ds.Modality = a.modality
        if phantom is not None:
            ds.SeriesNumber, ds.SeriesDescription = 2, "Synthetic phantom %s" % a.modality
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20260105"
        ds.StudyTime, ds.SeriesTime, ds.ContentTime = "101500", "103000", "103000"
        ds.Rows, ds.Columns = a.rows, a.columns
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        if a.modality == "PT":
            ds.Units = a.pet_units
            ds.DecayCorrection = a.decay
            ds.CorrectedImage = ["ATTN", "DECY"]
            if not a.no_weight:
                ds.PatientWeight = fmt(WEIGHT)
            radio = Dataset()
            radio.RadionuclideTotalDose = fmt(DOSE)
            radio.RadionuclideHalfLife = fmt(HALF_LIFE)
            radio.RadiopharmaceuticalStartDateTime = "20260105093000"
            radio.RadiopharmaceuticalStartTime = "093000"
            ds.RadiopharmaceuticalInformationSequence = Sequence([radio])
            ds.AcquisitionDate, ds.AcquisitionTime = "20260105", "103000"
            if a.pet_units == "CNTS":
                block = ds.private_block(0x7053, "Philips PET Private Group", create=True)
                block.add_new(0x00, "DS", fmt(PHILIPS_FACTOR))

    def save(ds, name):
        if a.quirk != "none" and not files:
            if a.quirk == "modality-lut":
                lut = Dataset()
                lut.LUTDescriptor = [4096, 0, 16]
                lut.ModalityLUTType = "HU"
                lut.LUTData = np.arange(4096, dtype=np.uint16).tobytes()
                ds.ModalityLUTSequence = Sequence([lut])
            elif a.quirk == "rgb":
                ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
                ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
                ds.PixelData = bytes(a.rows * a.columns * 3 * int(ds.get("NumberOfFrames", 1)))
            else:
                ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = "1.2.826.0.1.3680043.10.1337.1"
        fds = FileDataset(name, ds, file_meta=meta, preamble=b"\0" * 128)
        fds.is_little_endian, fds.is_implicit_VR = True, False
        fds.save_as(os.path.join(a.out, name), write_like_original=False)

    order = list(range(len(slices)))
    if a.shuffle:
        rng.shuffle(order)
    files, sources = [], {}
    if a.layout == "single":
        for number, idx in enumerate(order, start=1):
            s = slices[idx]
            ds = Dataset()
            s["sop"] = uid(rng)
            base(ds, CLASSIC[a.modality], s["sop"])
            s["frame"] = 0
            ds.InstanceNumber = number
            ds.AcquisitionNumber = s["stack"] + 1 if a.stack_by == "default" else 1
            if a.stack_by == "echo":
                ds.EchoNumbers = s["stack"] + 1
            elif a.stack_by == "time" and a.modality == "PT":
                ds.FrameReferenceTime = str(1000 * s["stack"])
            elif a.stack_by == "time":
                ds.TemporalPositionIdentifier = s["stack"] + 1
            ds.ImagePositionPatient = [fmt(v) for v in s["pos"]]
            ds.ImageOrientationPatient = [fmt(v) for v in s["row"] + s["col"]]
            ds.PixelSpacing = [fmt(row_sp), fmt(col_sp)]
            ds.SliceThickness = fmt(a.spacing)
            px, slope, intercept = stored_and_rescale(s)
            if slope is not None:
                ds.RescaleSlope, ds.RescaleIntercept = fmt(slope), fmt(intercept)
                if a.modality == "CT":
                    ds.RescaleType = "HU"
            ds.PixelData = px.tobytes()
            name = "slice-%03d.dcm" % number
            save(ds, name)
            files.append(name)
    else:
        ds = Dataset()
        sop = uid(rng)
        base(ds, (ENHANCED if a.layout == "enhanced" else LEGACY)[a.modality], sop)
        ds.InstanceNumber = 1
        ds.NumberOfFrames = len(slices)
        shared = Dataset()
        measures = Dataset()
        measures.PixelSpacing = [fmt(row_sp), fmt(col_sp)]
        measures.SliceThickness = fmt(a.spacing)
        shared.PixelMeasuresSequence = Sequence([measures])
        if a.defect != "mixed-orientation":
            orient = Dataset()
            orient.ImageOrientationPatient = [fmt(v) for v in row + col]
            shared.PlaneOrientationSequence = Sequence([orient])
        if a.modality == "CT":
            pvt = Dataset()
            pvt.RescaleIntercept, pvt.RescaleSlope, pvt.RescaleType = "-1024", "1", "HU"
            shared.PixelValueTransformationSequence = Sequence([pvt])
        ds.SharedFunctionalGroupsSequence = Sequence([shared])
        per_frame, frames = [], []
        for number, idx in enumerate(order, start=1):
            s = slices[idx]
            s["sop"], s["frame"] = sop, number
            item = Dataset()
            pos = Dataset()
            pos.ImagePositionPatient = [fmt(v) for v in s["pos"]]
            item.PlanePositionSequence = Sequence([pos])
            if a.defect == "mixed-orientation":
                orient = Dataset()
                orient.ImageOrientationPatient = [fmt(v) for v in s["row"] + s["col"]]
                item.PlaneOrientationSequence = Sequence([orient])
            content = Dataset()
            content.StackID = "1"
            content.InStackPositionNumber = s["k"] + 1
            content.TemporalPositionIndex = 1 if a.stack_by == "echo" else s["stack"] + 1
            if a.stack_by == "echo":
                echo = Dataset()
                echo.EffectiveEchoTime = 10 * (s["stack"] + 1)
                item.MREchoSequence = Sequence([echo])
            content.FrameAcquisitionNumber = 1
            item.FrameContentSequence = Sequence([content])
            override = a.modality == "CT" and number % 2 == 0
            px, slope, intercept = stored_and_rescale(s, per_frame_override=override)
            if override or a.modality == "PT":
                pvt = Dataset()
                pvt.RescaleIntercept, pvt.RescaleSlope = fmt(intercept), fmt(slope)
                pvt.RescaleType = "HU" if a.modality == "CT" else "BQML"
                item.PixelValueTransformationSequence = Sequence([pvt])
            per_frame.append(item)
            frames.append(px)
        ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
        ds.PixelData = np.stack(frames).tobytes()
        save(ds, "enhanced.dcm")
        files.append("enhanced.dcm")

    volumes = []
    for stack in range(stacks):
        in_stack = sorted((s for s in slices if s["stack"] == stack), key=lambda s: s["offset"])
        volumes.append({
            "sources": [{"sop_instance_uid": s["sop"], "frame_number": s["frame"], "offset_mm": s["offset"],
                         "k": s["k"]} for s in in_stack],
        })
    manifest = {
        "modality": a.modality, "layout": a.layout, "defect": a.defect, "files": files,
        "rows": a.rows, "columns": a.columns, "depth": n,
        "origin": list(ORIGIN), "row": list(row), "column": list(col), "normal": list(normal),
        "spacing": [a.spacing, row_sp, col_sp], "suv_scale": suv_scale, "volumes": volumes,
        "lesions": ([{"centre": list(l[:3]), "radius": l[3], "add": l[4]} for l in lesions] if phantom is None else
                    [{"centre": [ORIGIN[c] + les["centre_mm"][2] * row[c] + les["centre_mm"][1] * col[c]
                                 + les["centre_mm"][0] * normal[c] for c in range(3)],
                      "radius": les["radius_mm"], "radii_mm": les["radii_mm"], "voxels": les["voxels"],
                      "host": les["host"], "value": les["value"]} for les in phantom.lesions]),
        "value": ("tools/models/phantom3d.py %s, seed %d" % (a.phantom, a.seed)) if phantom else {"CT": "-500 + 4 z + 3 j - 2 i + 100 stack", "MR": "100 + 4 z + j + i + 100 stack",
                  "PT": "(1000 + 10 j + 7 i + 100 stack) (0.5 + 0.25 k) suv_scale"}[a.modality],
    }
    with open(os.path.join(a.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)


if __name__ == "__main__":
    main()
