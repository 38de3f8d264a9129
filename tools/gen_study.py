#!/usr/bin/python3
"""Writes realistic synthetic chest-radiograph studies as DICOM, with a manifest.

  gen_study.py OUT_DIR [--studies N] [--images-per-study K] [--lesion yes|no|random]
               [--modality CR|DX] [--size 512] [--syntax explicit|implicit|jpeg-ls|rle|j2k|jpeg-lossless]
               [--monochrome1] [--seed S] [--manifest manifest.json] [--jobs J]

Pixels come from tools/models/phantom.py, the generator the reference model
synthetic-nodule-demo was trained on. Each study is one made-up patient: the
first image is a fresh phantom, further views of the same study are that
phantom shifted by up to 3 % of the image and given fresh noise, so all views
show the same patient and the same nodule (if any). Files are
OUT_DIR/study-<n>/img-<k>.dcm (n, k from 1). CR is Computed Radiography Image
Storage, DX is Digital X-Ray Image Storage - For Presentation; both are meant to
pass dciodvfy without errors.

Uncompressed syntaxes are written by pydicom; jpeg-ls, rle and jpeg-lossless
by DCMTK's dcmcjpls, dcmcrle and dcmcjpeg (lossless), j2k by GDCM's
gdcmconv --j2k (lossless). All are lossless, so the pixel values are the same
in every syntax.

The output is a function of the arguments and --seed alone (UIDs too: they are
2.25 UUID UIDs drawn from the seeded generator); without --seed a random seed
is drawn and recorded in the manifest. Studies are generated in parallel
(--jobs, default: all CPUs).

Manifest (JSON, default OUT_DIR/manifest.json):
  {"seed": S, "modality": "CR", "sop_class_uid": "...", "syntax": "explicit", "transfer_syntax_uid": "...",
   "size": 512, "photometric": "MONOCHROME2", "images_per_study": K,
   "studies": [{"study_uid", "patient_name", "patient_id", "issuer", "accession",
                "birth_date", "sex", "study_date", "lesion": bool,
                "instances": [{"path": "study-1/img-1.dcm" (relative to OUT_DIR),
                               "sop_instance_uid", "series_uid", "view_position",
                               "lesion": {"row", "col", "radius"} or null}]}]}
Lesion coordinates are pixel indices of the stored image (centre of the
top-left pixel is (0, 0)); radius in pixels.

Uses Debian's python3-pydicom and python3-numpy, and the DCMTK/GDCM command
line tools for compressed syntaxes.
"""
import argparse
import datetime
import json
import os
import secrets
import shutil
import subprocess
import sys
import uuid
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "models"))
import phantom  # noqa: E402  (tools/models/phantom.py)

SOP_CLASS = {
    "CR": "1.2.840.10008.5.1.4.1.1.1",      # Computed Radiography Image Storage
    "DX": "1.2.840.10008.5.1.4.1.1.1.1",    # Digital X-Ray Image Storage - For Presentation
}

# syntax name -> (transfer syntax UID of the output, converter argv prefix or None)
SYNTAXES = {
    "explicit": (ExplicitVRLittleEndian, None),
    "implicit": (ImplicitVRLittleEndian, None),
    "jpeg-ls": ("1.2.840.10008.1.2.4.80", ["dcmcjpls"]),
    "rle": ("1.2.840.10008.1.2.5", ["dcmcrle"]),
    "jpeg-lossless": ("1.2.840.10008.1.2.4.70", ["dcmcjpeg"]),
    "j2k": ("1.2.840.10008.1.2.4.90", ["gdcmconv", "--j2k"]),
}

LAST_NAMES = [
    "SMITH", "JOHNSON", "WILLIAMS", "BROWN", "JONES", "GARCIA", "MILLER", "DAVIS", "RODRIGUEZ",
    "MARTINEZ", "HERNANDEZ", "LOPEZ", "WILSON", "ANDERSON", "THOMAS", "TAYLOR", "MOORE", "JACKSON",
    "MARTIN", "LEE", "THOMPSON", "WHITE", "HARRIS", "CLARK", "LEWIS", "ROBINSON", "WALKER", "YOUNG",
    "ALLEN", "KING", "WRIGHT", "SCOTT", "NGUYEN", "HILL", "FLORES", "GREEN", "ADAMS", "NELSON",
    "BAKER", "HALL", "MUELLER", "SCHMIDT", "SCHNEIDER", "FISCHER", "WEBER", "MEYER", "WAGNER",
    "BECKER", "DUBOIS", "MOREAU", "LAURENT", "ROSSI", "RUSSO", "FERRARI", "KOWALSKI", "NOWAK",
    "JANSEN", "DEVRIES", "OBRIEN", "MURPHY", "KELLY", "SATO", "SUZUKI", "TANAKA", "KIM", "PARK",
]
FIRST_NAMES = {
    "F": ["MARY", "PATRICIA", "JENNIFER", "LINDA", "ELIZABETH", "BARBARA", "SUSAN", "JESSICA",
          "SARAH", "KAREN", "NANCY", "LISA", "MARGARET", "SANDRA", "ASHLEY", "EMILY", "ANNA",
          "MARIA", "SOFIA", "CLAIRE", "HELEN", "RUTH", "JULIA", "IRENE", "EVA"],
    "M": ["JAMES", "ROBERT", "JOHN", "MICHAEL", "DAVID", "WILLIAM", "RICHARD", "JOSEPH", "THOMAS",
          "CHARLES", "DANIEL", "MATTHEW", "ANTHONY", "MARK", "PAUL", "STEVEN", "ANDREW", "PETER",
          "HANS", "PIERRE", "MARCO", "JAN", "LUKAS", "HIROSHI", "MIN"],
}
REFERRERS = ["OKAFOR^AMARA", "LINDQVIST^ERIK", "PATEL^RAVI", "MORENO^LUCIA", "CHEN^WEI",
             "HOFFMANN^KLAUS", "BERNARD^CLAIRE", "SILVA^JOAO"]
INSTITUTIONS = ["Synthetic General Hospital", "Riverside Synthetic Clinic", "St. Nowhere Medical Center",
                "Demo University Hospital"]
ISSUER = "SECONDREAD-DEMO"
VIEWS = ["PA", "LL", "AP"]
VIEW_CODES = {  # DX View Position -> CID 4010 code, as pydicom tabulates the standard
    "PA": codes.cid4010.PosteroAnterior,
    "LL": codes.cid4010.LeftLateral,
    "AP": codes.cid4010.AnteroPosterior,
}


def uid(rng):
    """A 2.25 UID from a UUID (version 4 layout) drawn from the seeded generator."""
    return "2.25.%d" % uuid.UUID(bytes=bytes(rng.integers(0, 256, 16, dtype=np.uint8)), version=4).int


def pick(rng, items):
    return items[int(rng.integers(0, len(items)))]


def views_for(k):
    return [VIEWS[i % len(VIEWS)] for i in range(k)]


def study_demographics(rng, n):
    sex = "F" if rng.random() < 0.5 else "M"
    study_date = datetime.date(2026, 1, 5) + datetime.timedelta(days=int(rng.integers(0, 300)))
    age = int(rng.integers(25, 91))
    birth = study_date - datetime.timedelta(days=age * 365 + int(rng.integers(0, 365)))
    age = study_date.year - birth.year - ((study_date.month, study_date.day) < (birth.month, birth.day))
    hh, mm, ss = int(rng.integers(7, 19)), int(rng.integers(0, 60)), int(rng.integers(0, 60))
    return {
        "patient_name": "%s^%s" % (pick(rng, LAST_NAMES), pick(rng, FIRST_NAMES[sex])),
        "patient_id": "P%08d" % int(rng.integers(0, 10 ** 8)),
        "issuer": ISSUER,
        "accession": "ACC%07d" % int(rng.integers(0, 10 ** 7)),
        "birth_date": birth.strftime("%Y%m%d"),
        "age": "%03dY" % age,
        "sex": sex,
        "study_date": study_date.strftime("%Y%m%d"),
        "study_time": "%02d%02d%02d" % (hh, mm, ss),
        "study_id": str(1000 + n),
        "referrer": pick(rng, REFERRERS),
        "institution": pick(rng, INSTITUTIONS),
        "field_mm": float(rng.uniform(350.0, 430.0)),
    }


def shifted_view(rng, base, lesion, size):
    """Another view of the same patient: base moved by up to 3 % and re-noised."""
    limit = max(1, int(round(0.03 * size)))
    dy, dx = (int(v) for v in rng.integers(-limit, limit + 1, 2))
    padded = np.pad(base, ((limit, limit), (limit, limit)), mode="edge")
    view = padded[limit - dy:limit - dy + base.shape[0], limit - dx:limit - dx + base.shape[1]]
    noisy = view.astype(np.float32) + rng.normal(0.0, 6.0, view.shape).astype(np.float32)
    pixels = np.clip(np.rint(noisy), 0, phantom.MAX_STORED).astype(np.uint16)
    moved = None
    if lesion is not None:
        moved = dict(lesion, row=lesion["row"] + dy, col=lesion["col"] + dx)
    return pixels, moved


def base_dataset(sop_uid, modality, demo, study_uid, series_uid, k, view, args, pixels, spacing,
                 transfer_syntax):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SOP_CLASS[modality]
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = transfer_syntax
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.is_little_endian = True
    ds.is_implicit_VR = transfer_syntax == ImplicitVRLittleEndian
    mono1 = args.monochrome1
    time_ = demo["study_time"]
    start = datetime.datetime.strptime(demo["study_date"] + time_, "%Y%m%d%H%M%S")
    acq_time = min(start + datetime.timedelta(seconds=30 + 70 * (k - 1)),
                   start.replace(hour=23, minute=59, second=59)).strftime("%H%M%S")

    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SOPClassUID = SOP_CLASS[modality]
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = demo["study_date"]
    ds.SeriesDate = demo["study_date"]
    ds.AcquisitionDate = demo["study_date"]
    ds.ContentDate = demo["study_date"]
    ds.StudyTime = time_
    ds.SeriesTime = acq_time
    ds.AcquisitionTime = acq_time
    ds.ContentTime = acq_time
    ds.AccessionNumber = demo["accession"]
    ds.Modality = modality
    ds.Manufacturer = "secondread synthetic"
    ds.InstitutionName = demo["institution"]
    ds.ReferringPhysicianName = demo["referrer"]
    ds.StationName = "SYNTH-XR1"
    ds.StudyDescription = "CHEST 2 VIEWS" if args.images_per_study >= 2 else "CHEST PA"
    ds.SeriesDescription = "CHEST %s" % view
    ds.ManufacturerModelName = "gen_study.py"
    ds.PatientName = demo["patient_name"]
    ds.PatientID = demo["patient_id"]
    ds.IssuerOfPatientID = demo["issuer"]
    ds.PatientBirthDate = demo["birth_date"]
    ds.PatientSex = demo["sex"]
    ds.PatientAge = demo["age"]
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = view
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = demo["study_id"]
    ds.SeriesNumber = k
    ds.InstanceNumber = 1
    ds.PatientOrientation = ["P", "F"] if view == "LL" else ["L", "F"]
    ds.NumberOfStudyRelatedInstances = args.images_per_study
    ds.ImageLaterality = "U"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1" if mono1 else "MONOCHROME2"
    ds.Rows, ds.Columns = int(pixels.shape[0]), int(pixels.shape[1])
    ds.PixelSpacing = ["%.6g" % spacing] * 2
    ds.ImagerPixelSpacing = ["%.6g" % spacing] * 2
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.WindowCenter = "2048"
    ds.WindowWidth = "4096"
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    if modality == "DX":
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.PixelIntensityRelationship = "LOG"
        ds.PixelIntensityRelationshipSign = 1
        ds.RescaleIntercept = "0"
        ds.RescaleSlope = "1"
        ds.RescaleType = "US"
        ds.PresentationLUTShape = "INVERSE" if mono1 else "IDENTITY"
        ds.DetectorType = "SCINTILLATOR"
        ds.PixelSpacingCalibrationType = "GEOMETRY"
        ds.PixelSpacingCalibrationDescription = "nominal detector spacing"
        ds.AcquisitionContextSequence = Sequence()
        region = Dataset()
        region.CodeValue = "51185008"
        region.CodingSchemeDesignator = "SCT"
        region.CodeMeaning = "Chest"
        ds.AnatomicRegionSequence = Sequence([region])
        ds.PositionerType = "NONE"
        view_code = Dataset()
        code = VIEW_CODES[view]
        view_code.CodeValue = code.value
        view_code.CodingSchemeDesignator = code.scheme_designator
        view_code.CodeMeaning = code.meaning
        view_code.ViewModifierCodeSequence = Sequence()
        ds.ViewCodeSequence = Sequence([view_code])
    else:
        ds.RescaleIntercept = "0"
        ds.RescaleSlope = "1"
        ds.RescaleType = "US"
    stored = (phantom.MAX_STORED - pixels) if mono1 else pixels
    ds.PixelData = np.ascontiguousarray(stored, dtype="<u2").tobytes()
    return ds


def make_study(task):
    """Writes one study; returns its manifest entry. Runs in a worker process."""
    args, n, out_dir = task
    rng = np.random.default_rng([args.seed, n, 0])
    demo = study_demographics(rng, n)
    if args.lesion == "random":
        has_lesion = bool(rng.random() < 0.5)
    else:
        has_lesion = args.lesion == "yes"
    study_uid = uid(rng)
    spacing = round(demo["field_mm"] / args.size, 6)
    transfer_syntax, converter = SYNTAXES[args.syntax]
    study_dir = os.path.join(out_dir, "study-%d" % n)
    os.makedirs(study_dir, exist_ok=True)

    base, base_lesion = phantom.generate(np.random.default_rng([args.seed, n, 1]), size=args.size,
                                         lesion=has_lesion)
    instances = []
    for k, view in enumerate(views_for(args.images_per_study), start=1):
        if k == 1:
            pixels, lesion = base, base_lesion
        else:
            pixels, lesion = shifted_view(np.random.default_rng([args.seed, n, k + 1]), base, base_lesion,
                                          args.size)
        series_uid, sop_uid = uid(rng), uid(rng)
        uncompressed = ExplicitVRLittleEndian if converter else transfer_syntax
        ds = base_dataset(sop_uid, args.modality, demo, study_uid, series_uid, k, view, args, pixels,
                          spacing, uncompressed)
        rel = "study-%d/img-%d.dcm" % (n, k)
        path = os.path.join(out_dir, rel)
        if converter is None:
            ds.save_as(path, write_like_original=False)
        else:
            tmp = path + ".raw"
            ds.save_as(tmp, write_like_original=False)
            try:
                subprocess.run(converter + [tmp, path], check=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
            except subprocess.CalledProcessError as e:
                raise RuntimeError("%s failed: %s" % (converter[0], e.stderr.decode(errors="replace").strip()))
            finally:
                if os.path.exists(tmp):
                    os.remove(tmp)
        instances.append({
            "path": rel,
            "sop_instance_uid": sop_uid,
            "series_uid": series_uid,
            "view_position": view,
            "lesion": None if lesion is None else {
                "row": round(lesion["row"], 3), "col": round(lesion["col"], 3),
                "radius": round(lesion["radius"], 3)},
        })
    return {
        "study_uid": study_uid,
        "patient_name": demo["patient_name"],
        "patient_id": demo["patient_id"],
        "issuer": demo["issuer"],
        "accession": demo["accession"],
        "birth_date": demo["birth_date"],
        "sex": demo["sex"],
        "study_date": demo["study_date"],
        "lesion": has_lesion,
        "instances": instances,
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out_dir", metavar="OUT_DIR")
    p.add_argument("--studies", type=int, default=1)
    p.add_argument("--images-per-study", type=int, default=1)
    p.add_argument("--lesion", choices=["yes", "no", "random"], default="random")
    p.add_argument("--modality", choices=["CR", "DX"], default="CR")
    p.add_argument("--size", type=int, default=512, help="rows and columns (at least 32)")
    p.add_argument("--syntax", choices=list(SYNTAXES), default="explicit")
    p.add_argument("--monochrome1", action="store_true",
                   help="write MONOCHROME1 (inverted stored values) instead of MONOCHROME2")
    p.add_argument("--seed", type=int, default=None, help="default: random, recorded in the manifest")
    p.add_argument("--manifest", default=None, help="default: OUT_DIR/manifest.json")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes")
    args = p.parse_args(argv)
    if args.studies < 1 or args.images_per_study < 1:
        p.error("--studies and --images-per-study must be at least 1")
    if args.size < 32:
        p.error("--size must be at least 32")
    if args.seed is None:
        args.seed = secrets.randbits(63)
    if args.seed < 0:
        p.error("--seed must be non-negative")
    converter = SYNTAXES[args.syntax][1]
    if converter and shutil.which(converter[0]) is None:
        p.error("--syntax %s needs %s on PATH" % (args.syntax, converter[0]))

    out_dir = os.path.abspath(args.out_dir)
    os.makedirs(out_dir, exist_ok=True)
    tasks = [(args, n, out_dir) for n in range(1, args.studies + 1)]
    jobs = max(1, min(args.jobs, args.studies))
    if jobs == 1:
        studies = [make_study(t) for t in tasks]
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            studies = list(pool.map(make_study, tasks))

    manifest = {
        "seed": args.seed,
        "modality": args.modality,
        "sop_class_uid": SOP_CLASS[args.modality],
        "syntax": args.syntax,
        "transfer_syntax_uid": str(SYNTAXES[args.syntax][0]),
        "size": args.size,
        "photometric": "MONOCHROME1" if args.monochrome1 else "MONOCHROME2",
        "images_per_study": args.images_per_study,
        "studies": studies,
    }
    manifest_path = args.manifest or os.path.join(out_dir, "manifest.json")
    with open(manifest_path, "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
