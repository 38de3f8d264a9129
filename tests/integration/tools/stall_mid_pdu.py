#!/usr/bin/env python3
"""Associates, then sends half of a P-DATA PDU (on the TLS port: half of the
TLS record that carries it) and stops. Prints how many seconds passed until
the node closed the connection, or "open" if it was still open after --wait.

  stall_mid_pdu.py PORT [--tls DIR] [--wait SECONDS]

DIR holds ca.pem, client.pem and client.key.
"""
import argparse
import os
import socket
import ssl
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from raw_store import associate_rq  # noqa: E402

PDATA = b"\x04\x00\x00\x00\x01\x00" + b"x" * 256


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("--tls")
    ap.add_argument("--wait", type=float, default=30)
    a = ap.parse_args()
    s = socket.create_connection(("127.0.0.1", a.port))
    rq = associate_rq("STORESCU", "SECONDREAD", "1.2.840.10008.1.2")
    if a.tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.load_verify_locations(os.path.join(a.tls, "ca.pem"))
        ctx.load_cert_chain(os.path.join(a.tls, "client.pem"), os.path.join(a.tls, "client.key"))
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        o = ctx.wrap_bio(incoming, outgoing)
        while True:
            try:
                o.do_handshake()
                break
            except ssl.SSLWantReadError:
                s.sendall(outgoing.read())
                incoming.write(s.recv(65536))
        s.sendall(outgoing.read())
        o.write(rq)
        s.sendall(outgoing.read())
        answer = b""
        while len(answer) < 1:
            try:
                answer += o.read(65536)
            except ssl.SSLWantReadError:
                incoming.write(s.recv(65536))
        o.write(PDATA)
        record = outgoing.read()
        s.sendall(record[: len(record) // 2])
    else:
        s.sendall(rq)
        answer = s.recv(1)
        s.sendall(PDATA[:3])
    if answer[:1] != b"\x02":
        raise SystemExit("not associated: PDU type %r" % answer[:1])
    start = time.monotonic()
    s.settimeout(a.wait)
    try:
        while s.recv(65536):
            pass
        print("%.1f" % (time.monotonic() - start))
    except socket.timeout:
        print("open")


if __name__ == "__main__":
    main()
