#!/usr/bin/python3
"""Keys, key sets and JWTs for the sign-in tests, made with the openssl
command line only (no JOSE library is involved, so the node is checked
against an independent implementation).

  mint_jwt.py keygen rsa|ec KEY.pem
  mint_jwt.py jwks KEY.pem:KID[:use] ... > jwks.json
  mint_jwt.py token KEY.pem KID CLAIMS_JSON [--alg RS256|ES256|none|HS256]
                    [--hs-secret PUBLIC.pem]
CLAIMS_JSON may use "exp": "+300" / "-60" style offsets from now for exp,
nbf and iat.
"""
import base64
import hashlib
import hmac
import json
import subprocess
import sys
import time


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def openssl(*args, data=None) -> bytes:
    return subprocess.run(["openssl", *args], input=data, check=True, capture_output=True).stdout


def key_type(pem: str) -> str:
    text = openssl("pkey", "-in", pem, "-noout", "-text").decode()
    return "EC" if "ASN1 OID: prime256v1" in text else "RSA"


def jwk(pem: str, kid: str, use: str) -> dict:
    der = openssl("pkey", "-in", pem, "-pubout", "-outform", "DER")
    if key_type(pem) == "EC":
        point = der[-65:]  # SubjectPublicKeyInfo ends with the uncompressed point
        assert point[0] == 4
        return {"kty": "EC", "crv": "P-256", "kid": kid, "use": use, "alg": "ES256",
                "x": b64url(point[1:33]), "y": b64url(point[33:])}
    modulus = openssl("rsa", "-in", pem, "-noout", "-modulus").decode().strip().split("=", 1)[1]
    text = openssl("rsa", "-in", pem, "-noout", "-text").decode()
    exponent = int(text.split("publicExponent: ")[1].split(" ")[0])
    e = exponent.to_bytes((exponent.bit_length() + 7) // 8, "big")
    return {"kty": "RSA", "kid": kid, "use": use, "alg": "RS256", "n": b64url(bytes.fromhex(modulus)), "e": b64url(e)}


def der_to_raw(sig: bytes) -> bytes:
    # ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }
    assert sig[0] == 0x30
    i = 2 if sig[1] < 0x80 else 2 + (sig[1] & 0x7F)
    out = b""
    for _ in range(2):
        assert sig[i] == 0x02
        n = sig[i + 1]
        out += int.from_bytes(sig[i + 2:i + 2 + n], "big").to_bytes(32, "big")
        i += 2 + n
    return out


def claims_with_times(claims: dict) -> dict:
    now = int(time.time())
    for k in ("exp", "nbf", "iat"):
        v = claims.get(k)
        if isinstance(v, str) and v[:1] in "+-":
            claims[k] = now + int(v)
    return claims


def token(pem: str, kid: str, claims: dict, alg: str, hs_secret: str) -> str:
    header = {"alg": alg, "typ": "JWT"}
    if kid:
        header["kid"] = kid
    signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
    if alg == "none":
        return signing_input + "."
    if alg == "HS256":
        secret = open(hs_secret, "rb").read()
        return signing_input + "." + b64url(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())
    sig = openssl("dgst", "-sha256", "-sign", pem, data=signing_input.encode())
    if alg == "ES256":
        sig = der_to_raw(sig)
    return signing_input + "." + b64url(sig)


def main(argv):
    cmd = argv[1]
    if cmd == "keygen":
        kind, out = argv[2], argv[3]
        if kind == "rsa":
            openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", out)
        else:
            openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", out)
        openssl("pkey", "-in", out, "-pubout", "-out", out.replace(".pem", ".pub.pem"))
    elif cmd == "jwks":
        keys = []
        for spec in argv[2:]:
            parts = spec.split(":")
            keys.append(jwk(parts[0], parts[1], parts[2] if len(parts) > 2 else "sig"))
        print(json.dumps({"keys": keys}))
    elif cmd == "token":
        pem, kid, claims = argv[2], argv[3], claims_with_times(json.loads(argv[4]))
        rest = argv[5:]
        alg = rest[rest.index("--alg") + 1] if "--alg" in rest else ("ES256" if key_type(pem) == "EC" else "RS256")
        hs = rest[rest.index("--hs-secret") + 1] if "--hs-secret" in rest else ""
        print(token(pem, kid, claims, alg, hs))
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main(sys.argv)
