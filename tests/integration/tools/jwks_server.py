#!/usr/bin/python3
"""Serves one directory over HTTPS on 127.0.0.1 for the sign-in tests, as a
hospital identity provider serves its key set: jwks_server.py DIR CERT KEY
PORT_FILE. Logs each request path on stdout, so a test can count fetches."""
import functools
import http.server
import os
import ssl
import sys

directory, cert, key, port_file = sys.argv[1:5]


class Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, fmt, *args):
        print("GET " + self.path, flush=True)


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=directory))
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
with open(port_file + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.replace(port_file + ".tmp", port_file)
server.serve_forever()
