"""Prints a TCP port on 127.0.0.1 that no other caller of this script holds.

Ports come from below the kernel's ephemeral range, so no outgoing connection
can take one between this choice and the server's bind, and each choice is
reserved by an atomic mkdir, so two servers started at once (ctest -j) never
get the same port. Reservations expire after a few hours.
"""
import os
import random
import socket
import sys
import time

LOW, HIGH = 20000, 32000
EXPIRY_S = 4 * 3600


def ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def main():
    top = min(HIGH, ephemeral_low() - 1)
    root = os.environ.get("SECONDREAD_PORT_DIR") or os.path.join(
        os.environ.get("TMPDIR", "/tmp"), "secondread-ports")
    os.makedirs(root, exist_ok=True)
    now = time.time()
    for _ in range(5000):
        port = random.randint(LOW, top)
        mark = os.path.join(root, str(port))
        try:
            if now - os.stat(mark).st_mtime > EXPIRY_S:
                os.rmdir(mark)
        except OSError:
            pass
        try:
            os.mkdir(mark)
        except OSError:
            continue
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            s.close()
        print(port)
        return 0
    print("free_port: no free port in %d-%d" % (LOW, top), file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
