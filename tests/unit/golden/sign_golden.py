#!/usr/bin/python3
# Golden values for tests/unit/test_sign.c, computed independently of our C
# code with the Python `cryptography` package (OpenSSL's Ed25519): the
# public key of a fixed seed, and the signature of a fixed message framed
# as proto/fedvigil.proto says ("fedvigil/v1/<MessageName>", NUL, the
# message without field 15). Run: /usr/bin/python3 sign_golden.py
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives import serialization

seed = bytes(range(1, 33))
key = Ed25519PrivateKey.from_private_bytes(seed)
pub = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
# A RoundAnnounce of just `kind = TRAIN` (field 2, varint 2) and
# `deadline_ms = 1000` (field 4, varint 1000).
msg = bytes([0x10, 0x02, 0x20, 0xE8, 0x07])
sig = key.sign(b"fedvigil/v1/RoundAnnounce\x00" + msg)

def c(name, b):
    print("static const uint8_t %s[%d] = {" % (name, len(b)))
    for i in range(0, len(b), 12):
        print("\t" + " ".join("0x%02x," % x for x in b[i:i + 12]))
    print("};")

c("golden_pub", pub)
c("golden_msg", msg)
c("golden_sig", sig)
