#!/usr/bin/env python3
"""A C-STORE SCU that sends data sets as raw bytes, for hostile-input tests.

DCMTK's and pydicom's senders parse (or build) what they send, so they cannot
send a data set nested 100,000 levels deep or one whose lengths lie. This one
speaks just enough of PS3.8 to associate, send the bytes it is given in P-DATA
fragments and print the C-STORE response status as four hex digits.

  raw_store.py HOST PORT CALLING CALLED KIND [--count N] [--size BYTES]

KIND is the data set to send:
  deep      sequences nested --count levels deep (undefined lengths)
  lying     a private OB value whose length is --size bytes past the data
  elements  --count private elements
  bomb      a deflated data set that inflates to --size bytes
  plain     a small valid instance
"""
import argparse
import socket
import struct
import sys
import uuid
import zlib

SOP_CLASS = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture Image Storage
EXPLICIT_LE = "1.2.840.10008.1.2.1"
DEFLATED = "1.2.840.10008.1.2.1.99"
IMPLICIT_LE = "1.2.840.10008.1.2"


def even(b):
    return b + (b"\0" if len(b) % 2 else b"")


def el_explicit(group, elem, vr, value, length=None):
    value = even(value)
    n = len(value) if length is None else length
    head = struct.pack("<HH", group, elem) + vr.encode()
    if vr in ("OB", "OW", "SQ", "UN", "UT", "UC", "UR", "OD", "OF", "OL", "OV", "SV", "UV"):
        return head + b"\0\0" + struct.pack("<I", n) + value
    return head + struct.pack("<H", n) + value


def el_implicit(group, elem, value):
    value = even(value)
    return struct.pack("<HHI", group, elem, len(value)) + value


def basics(sop_instance):
    return (el_explicit(0x0008, 0x0016, "UI", SOP_CLASS.encode()) +
            el_explicit(0x0008, 0x0018, "UI", sop_instance.encode()) +
            el_explicit(0x0008, 0x0060, "CS", b"OT") +
            el_explicit(0x0010, 0x0010, "PN", b"HOSTILE^DATA") +
            el_explicit(0x0010, 0x0020, "LO", b"HOSTILE-1") +
            el_explicit(0x0020, 0x000D, "UI", ("2.25.%d" % uuid.uuid4().int).encode()) +
            el_explicit(0x0020, 0x000E, "UI", ("2.25.%d" % uuid.uuid4().int).encode()))


def dataset(kind, count, size, sop_instance):
    if kind == "deep":
        opening = (struct.pack("<HH", 0x0008, 0x1140) + b"SQ\0\0" + struct.pack("<I", 0xFFFFFFFF) +
                   struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF))
        closing = struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
        return EXPLICIT_LE, basics(sop_instance) + opening * count + closing * count
    if kind == "lying":
        value = b"x" * 64
        return EXPLICIT_LE, basics(sop_instance) + el_explicit(0x0009, 0x1010, "OB", value, len(value) + size)
    if kind == "elements":
        body = b"".join(el_explicit(0x0009, 0x1000 + (i % 0xEFFF), "LO", b"AB") for i in range(count))
        return EXPLICIT_LE, basics(sop_instance) + body
    if kind == "bomb":
        raw = basics(sop_instance) + el_explicit(0x0009, 0x1010, "OB", b"\0" * size)
        z = zlib.compressobj(9, zlib.DEFLATED, -15)
        # PS3.5 A.5: an odd-length deflated stream is padded with one zero byte.
        return DEFLATED, even(z.compress(raw) + z.flush())
    if kind == "plain":
        return EXPLICIT_LE, basics(sop_instance)
    raise SystemExit("unknown kind " + kind)


def pad_ae(ae):
    return ae.encode().ljust(16)[:16]


def item(kind, payload):
    return struct.pack(">BxH", kind, len(payload)) + payload


def associate_rq(calling, called, syntax):
    app = item(0x10, b"1.2.840.10008.3.1.1.1")
    pc = item(0x20, struct.pack(">BxBx", 1, 0) + item(0x30, SOP_CLASS.encode()) + item(0x40, syntax.encode()))
    user = item(0x50, item(0x51, struct.pack(">I", 16384)) + item(0x52, b"1.2.826.0.1.3680043.10.1139"))
    body = struct.pack(">HH", 1, 0) + pad_ae(called) + pad_ae(calling) + b"\0" * 32 + app + pc + user
    return struct.pack(">BxI", 0x01, len(body)) + body


def recv_pdu(sock):
    head = b""
    while len(head) < 6:
        chunk = sock.recv(6 - len(head))
        if not chunk:
            raise EOFError("connection closed")
        head += chunk
    kind, length = struct.unpack(">BxI", head)
    body = b""
    while len(body) < length:
        chunk = sock.recv(min(65536, length - len(body)))
        if not chunk:
            raise EOFError("connection closed")
        body += chunk
    return kind, body


def pdata(context, control, data):
    pdv = struct.pack(">IBB", len(data) + 2, context, control) + data
    return struct.pack(">BxI", 0x04, len(pdv)) + pdv


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("calling")
    ap.add_argument("called")
    ap.add_argument("kind")
    ap.add_argument("--count", type=int, default=100000)
    ap.add_argument("--size", type=int, default=1 << 20)
    a = ap.parse_args()
    sop_instance = "2.25.%d" % uuid.uuid4().int
    syntax, data = dataset(a.kind, a.count, a.size, sop_instance)

    sock = socket.create_connection((a.host, a.port), timeout=60)
    sock.sendall(associate_rq(a.calling, a.called, syntax))
    kind, body = recv_pdu(sock)
    if kind != 0x02:
        print("association refused (PDU type %02X)" % kind, file=sys.stderr)
        return 3
    # The presentation context item: result 0 = acceptance.
    pos = 68
    accepted = False
    while pos + 4 <= len(body):
        t, n = struct.unpack(">BxH", body[pos:pos + 4])
        if t == 0x21 and body[pos + 6] == 0:
            accepted = True
        pos += 4 + n
    if not accepted:
        print("presentation context refused", file=sys.stderr)
        return 3

    cmd = b"".join([
        el_implicit(0x0000, 0x0002, even(SOP_CLASS.encode())),
        el_implicit(0x0000, 0x0100, struct.pack("<H", 0x0001)),
        el_implicit(0x0000, 0x0110, struct.pack("<H", 1)),
        el_implicit(0x0000, 0x0700, struct.pack("<H", 0)),
        el_implicit(0x0000, 0x0800, struct.pack("<H", 0x0000)),
        el_implicit(0x0000, 0x1000, even(sop_instance.encode())),
    ])
    cmd = el_implicit(0x0000, 0x0000, struct.pack("<I", len(cmd))) + cmd
    sock.sendall(pdata(1, 0x03, cmd))
    step = 16000
    for off in range(0, len(data), step):
        last = off + step >= len(data)
        sock.sendall(pdata(1, 0x02 if last else 0x00, data[off:off + step]))

    kind, body = recv_pdu(sock)
    if kind != 0x04:
        print("no response (PDU type %02X)" % kind, file=sys.stderr)
        return 4
    # PDV: length(4) context(1) control(1) then the command set.
    command = body[6:]
    pos = 0
    status = None
    while pos + 8 <= len(command):
        g, e, n = struct.unpack("<HHI", command[pos:pos + 8])
        if (g, e) == (0x0000, 0x0900):
            status = struct.unpack("<H", command[pos + 8:pos + 10])[0]
        pos += 8 + n
    sock.sendall(struct.pack(">BxI", 0x05, 4) + b"\0\0\0\0")
    try:
        recv_pdu(sock)
    except EOFError:
        pass
    sock.close()
    if status is None:
        print("response without a status", file=sys.stderr)
        return 4
    print("%04X" % status)
    return 0


if __name__ == "__main__":
    sys.exit(main())
