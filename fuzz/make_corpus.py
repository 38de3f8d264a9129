#!/usr/bin/python3
"""Writes the seed corpora of the fuzz harnesses into fuzz/corpus/<harness>/.

Small, valid inputs of each kind the harnesses take, for libFuzzer to mutate
from. Dataset inputs are one byte (the transfer syntax index of
fuzz/part10_input.cc) followed by the dataset as a sender puts it on the
wire, without preamble or meta header. Compressed seeds come from DCMTK's and
GDCM's command-line codecs. Run with Debian's python3 (pydicom); rerunning
rewrites the corpora.
"""
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian

ROOT = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(ROOT, "corpus")

# fuzz/part10_input.cc's order.
TS_INDEX = {
    "1.2.840.10008.1.2": 0,
    "1.2.840.10008.1.2.1": 1,
    "1.2.840.10008.1.2.2": 2,
    "1.2.840.10008.1.2.1.99": 3,
    "1.2.840.10008.1.2.4.50": 4,
    "1.2.840.10008.1.2.4.51": 5,
    "1.2.840.10008.1.2.4.57": 6,
    "1.2.840.10008.1.2.4.70": 7,
    "1.2.840.10008.1.2.4.80": 8,
    "1.2.840.10008.1.2.4.81": 9,
    "1.2.840.10008.1.2.5": 10,
    "1.2.840.10008.1.2.4.90": 11,
    "1.2.840.10008.1.2.4.91": 12,
}
DEFLATED = "1.2.840.10008.1.2.1.99"


def base(rows=8, columns=8, bits=16, samples=1, photometric="MONOCHROME2", frames=1, signed=0):
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.2.1125.1.1"
    ds.StudyDate = "20240101"
    ds.StudyTime = "120000"
    ds.AccessionNumber = "A1"
    ds.Modality = "CT"
    ds.ReferringPhysicianName = "REF^DOC"
    ds.StudyDescription = "CHEST"
    ds.SeriesDescription = "Thorax 1mm"
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "P1"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.BodyPartExamined = "CHEST"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.2.1125.1.2"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.2.1125.1.3"
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.NumberOfStudyRelatedInstances = 1
    item = Dataset()
    item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    item.ReferencedSOPInstanceUID = "1.2.826.0.1.3680043.2.1125.1.4"
    ds.ReferencedImageSequence = Sequence([item])
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = photometric
    if samples == 3:
        ds.PlanarConfiguration = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.Rows = rows
    ds.Columns = columns
    ds.PixelSpacing = [0.5, 0.5]
    ds.BitsAllocated = bits
    ds.BitsStored = 12 if bits == 16 else bits
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = signed
    if samples == 1:
        ds.RescaleIntercept = -1024 if bits == 16 else 0
        ds.RescaleSlope = 1
        ds.WindowCenter = 40
        ds.WindowWidth = 400
    n = rows * columns * samples * frames
    if bits == 16:
        ds.PixelData = struct.pack("<%dH" % n, *[(i * 37) % 4096 for i in range(n)])
    else:
        ds.PixelData = bytes((i * 13) % 256 for i in range(n))
    return ds


def part10(ds, ts, path):
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ts
    ds.is_little_endian = ts != ExplicitVRBigEndian
    ds.is_implicit_VR = ts == ImplicitVRLittleEndian
    ds.save_as(path, write_like_original=False)


def dataset_bytes(path):
    """The dataset of a Part 10 file: what follows the group 0002 meta header."""
    data = open(path, "rb").read()
    assert data[128:132] == b"DICM", path
    group, element, vr = struct.unpack("<HH2s", data[132:138])
    assert (group, element, vr) == (2, 0, b"UL"), path
    (length,) = struct.unpack("<I", data[140:144])
    ts = pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
    return TS_INDEX[str(ts)], data[144 + length:]


def put(harness, name, content):
    d = os.path.join(CORPUS, harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(content)


def put_dataset(harnesses, name, path):
    index, body = dataset_bytes(path)
    for h in harnesses:
        put(h, name, bytes([index]) + body)


def run(*cmd):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def datasets(tmp):
    structural = ["dataset_structure_fuzzer", "dataset_reader_fuzzer"]
    everything = structural + ["pixel_decoder_fuzzer"]
    native = os.path.join(tmp, "native.dcm")
    part10(base(), ExplicitVRLittleEndian, native)
    put_dataset(everything, "explicit_le_ct", native)
    for ts, name in ((ImplicitVRLittleEndian, "implicit_le_ct"), (ExplicitVRBigEndian, "explicit_be_ct")):
        p = os.path.join(tmp, name + ".dcm")
        part10(base(), ts, p)
        put_dataset(everything, name, p)
    # Deflated: DCMTK's own writer.
    p = os.path.join(tmp, "deflated.dcm")
    run("dcmconv", "+td", native, p)
    put_dataset(everything, "deflated_ct", p)
    # Colour, 8-bit, two frames, MONOCHROME1.
    p = os.path.join(tmp, "rgb.dcm")
    part10(base(rows=4, columns=4, bits=8, samples=3, photometric="RGB"), ExplicitVRLittleEndian, p)
    put_dataset(["pixel_decoder_fuzzer"], "explicit_le_rgb", p)
    p = os.path.join(tmp, "frames.dcm")
    part10(base(rows=4, columns=4, frames=2, signed=1), ExplicitVRLittleEndian, p)
    put_dataset(["pixel_decoder_fuzzer"], "explicit_le_two_frames", p)
    p = os.path.join(tmp, "mono1.dcm")
    part10(base(rows=4, columns=4, bits=8, photometric="MONOCHROME1"), ImplicitVRLittleEndian, p)
    put_dataset(["pixel_decoder_fuzzer"], "implicit_le_monochrome1", p)
    # The compressed syntaxes, from an 8-bit grey image every codec takes
    # (OpenJPEG, under gdcmconv, fails on 8 x 8).
    grey = os.path.join(tmp, "grey.dcm")
    part10(base(rows=16, columns=16, bits=8), ExplicitVRLittleEndian, grey)
    for args, name in ((["dcmcjpeg", "+eb"], "jpeg_baseline"), (["dcmcjpeg", "+el"], "jpeg_lossless"),
                       (["dcmcjpeg", "+e1"], "jpeg_lossless_sv1"), (["dcmcjpls", "+el"], "jpegls_lossless"),
                       (["dcmcjpls", "+en"], "jpegls_near_lossless"), (["dcmcrle"], "rle"),
                       (["gdcmconv", "--j2k"], "jpeg2000_lossless")):
        p = os.path.join(tmp, name + ".dcm")
        run(*args, grey, p)
        put_dataset(everything, name, p)
    # Structure only: a private UN value of undefined length holding a
    # sequence, and nested sequences of undefined length.
    ds = base(rows=2, columns=2)
    inner = Dataset()
    inner.CodeValue = "1"
    outer = Dataset()
    outer.ReferencedImageSequence = Sequence([inner])
    ds.add_new(0x00091010, "SQ", Sequence([outer]))
    p = os.path.join(tmp, "nested.dcm")
    part10(ds, ImplicitVRLittleEndian, p)
    put_dataset(structural, "implicit_le_private_sequence", p)


def texts():
    for name, text in (("valid", "1.2.840.10008.5.1.4.1.1.2"), ("leading_zero", "1.2.03.4"),
                       ("empty_component", "1.2..3"), ("padded", " 1.2.3\0"), ("too_long", "1." * 40),
                       ("path", "../../etc/passwd")):
        put("uid_fuzzer", name, text.encode())
    for name, text in (("trusted_chain", "\x02\x0a10.0.0.0/8\x09127.0.0.1\x0910.0.0.5\x0fBearer test\x0010.1.1.1, 192.0.2.7"),
                       ("ipv6", "\x01\x06fd00::/8\x03::1\x07Bearer x2001:db8::1, fd00::2"),
                       ("mapped", "\x01\x09::1/128\x03::1\x00::ffff:192.0.2.1")):
        put("client_address_fuzzer", name, text.encode())
    for name, text in (("chest", "(?i)chest|thorax\x02CT\x00\x01CHEST\x00ORIGINAL\x00\x01\x05CT\x00CHEST\x001.2.840.10008.5.1.4.1.1.2\x00ORIGINAL\\PRIMARY\x00NO\x00Chest 1mm"),
                       ("us", "^US$\x01US\x00\x00\x00\x00US\x00\x001.2.840.10008.5.1.4.1.1.6.1\x00\x00\x00Abdomen")):
        put("routing_fuzzer", name, text.encode())


def configs():
    doc = open(os.path.join(ROOT, "..", "docs", "configuration.md")).read()
    start = doc.index("```yaml\ndicom:") + len("```yaml\n")
    example = doc[start:doc.index("```", start)]
    # The example's url_file is replaced: the harness skips inputs naming one.
    example = example.replace("url_file: /etc/secondread/database.url   # postgresql://secondread:…@db:5432/secondread",
                              "url: postgresql://secondread@db:5432/secondread")
    put("config_fuzzer", "documented_example.yaml", example.encode())
    put("config_fuzzer", "minimal.yaml", b"database:\n  url: postgresql://x@y/z\n")
    put("config_fuzzer", "overrides.yaml", b"#set dicom.allowed_callers=[STORESCU, ORTHANC@10.0.0.5]\n"
                                          b"#set storage.max_instance_bytes=512MiB\ndicom:\n  port: 104\n")
    put("config_fuzzer", "api.yaml", b"api:\n  port: 8443\n  trusted_proxies: [10.0.0.0/8, '::1']\n"
                                     b"  tokens:\n    - name: reader\n      role: radiologist\n"
                                     b"      sha256: 9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08\n"
                                     b"  limits:\n    max_headers: 32\n"
                                     b"dicom:\n  limits:\n    max_sequence_depth: 16\n    max_elements: 1000\n")


def main():
    if os.path.isdir(CORPUS):
        shutil.rmtree(CORPUS)
    with tempfile.TemporaryDirectory() as tmp:
        datasets(tmp)
    texts()
    configs()
    return 0


if __name__ == "__main__":
    sys.exit(main())
