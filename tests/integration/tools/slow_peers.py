#!/usr/bin/env python3
"""Opens the connections a careless or hostile network holds open on a DICOM
port, and watches when the node closes them.

  slow_peers.py HOST --port P [--tls-port T] --sources A,B,... [--silent N]
                [--trickle N] [--half-rq N] [--half-hello N] [--hello-then-silent N]
                --hold SECONDS --ready FILE --report FILE

  silent             connects and sends nothing
  trickle            sends a valid A-ASSOCIATE-RQ one byte per second
  half-rq            sends the first half of an A-ASSOCIATE-RQ and stops
  half-hello         (TLS port) sends the first half of a TLS ClientHello and stops
  hello-then-silent  (TLS port) sends a whole ClientHello and never answers the server

Connections are spread over the source addresses (127.0.0.x on loopback),
so per-peer limits apply per address. Once every connection is open, FILE
--ready gets the number opened. After --hold seconds (or once the node has
closed every connection) --report gets JSON: per mode, how many were opened,
how many the node closed and after how many seconds (min, max).
"""
import argparse
import json
import os
import select
import socket
import ssl
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from raw_store import associate_rq  # noqa: E402

VERIFICATION = "1.2.840.10008.1.1"


def client_hello():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_side=False)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


class Conn:
    def __init__(self, mode, sock, payload):
        self.mode = mode
        self.sock = sock
        self.payload = payload
        self.sent = 0
        self.opened = time.monotonic()
        self.closed_after = None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--tls-port", type=int, default=0)
    ap.add_argument("--sources", default="127.0.0.1")
    for mode in ("silent", "trickle", "half-rq", "half-hello", "hello-then-silent"):
        ap.add_argument("--" + mode, type=int, default=0)
    ap.add_argument("--hold", type=float, default=10)
    ap.add_argument("--ready", required=True)
    ap.add_argument("--report", required=True)
    a = ap.parse_args()

    sources = a.sources.split(",")
    rq = associate_rq("SLOWPEER", "SECONDREAD", "1.2.840.10008.1.2")
    hello = client_hello()
    plan = ([("silent", a.port, b"")] * a.silent + [("trickle", a.port, rq)] * a.trickle +
            [("half-rq", a.port, rq[: len(rq) // 2])] * a.half_rq +
            [("half-hello", a.tls_port, hello[: len(hello) // 2])] * a.half_hello +
            [("hello-then-silent", a.tls_port, hello)] * a.hello_then_silent)
    conns = []
    refused = 0
    for i, (mode, port, payload) in enumerate(plan):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((sources[i % len(sources)], 0))
        try:
            s.connect((a.host, port))
        except OSError:
            refused += 1
            s.close()
            continue
        c = Conn(mode, s, payload)
        if mode != "trickle" and payload:
            s.sendall(payload)
            c.sent = len(payload)
        conns.append(c)
    with open(a.ready + ".tmp", "w") as f:
        f.write("%d\n" % len(conns))
    os.rename(a.ready + ".tmp", a.ready)

    end = time.monotonic() + a.hold
    next_trickle = time.monotonic() + 1
    while time.monotonic() < end:
        open_socks = [c.sock for c in conns if c.closed_after is None]
        if not open_socks:
            break
        r, _, _ = select.select(open_socks, [], [], 0.1)
        now = time.monotonic()
        for s in r:
            c = next(c for c in conns if c.sock is s)
            try:
                data = s.recv(65536)
            except OSError:
                data = b""
            if not data:
                c.closed_after = now - c.opened
            # A server hello (TLS) or nothing else is expected; keep reading.
        if now >= next_trickle:
            next_trickle += 1
            for c in conns:
                if c.mode == "trickle" and c.closed_after is None and c.sent < len(c.payload):
                    try:
                        c.sock.send(c.payload[c.sent:c.sent + 1])
                        c.sent += 1
                    except OSError:
                        c.closed_after = now - c.opened
    report = {"refused_at_connect": refused}
    for mode in ("silent", "trickle", "half-rq", "half-hello", "hello-then-silent"):
        mine = [c for c in conns if c.mode == mode]
        closed = [c.closed_after for c in mine if c.closed_after is not None]
        report[mode] = {"opened": len(mine), "closed_by_node": len(closed),
                        "closed_after_min": round(min(closed), 2) if closed else None,
                        "closed_after_max": round(max(closed), 2) if closed else None}
    with open(a.report, "w") as f:
        json.dump(report, f, indent=1)
    for c in conns:
        c.sock.close()


if __name__ == "__main__":
    main()
