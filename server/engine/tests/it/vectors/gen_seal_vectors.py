#!/usr/bin/env python3
"""Independent reference for Custos' sealing format (format version 1).

Computes the expected ciphertext, MAC, leaf hash, chain hash and key wrap of a
fixed entry with Python's hashlib/hmac and the OpenSSL command line (for
AES-256-CBC), following only the layout documented in
server/engine/src/ledger/encoding.rs and crypto.rs. The output is committed as
seal_v1.txt and compared by tests/it/known_answer.rs.

Run: python3 gen_seal_vectors.py > seal_v1.txt
"""
import hashlib, hmac, struct, subprocess

def hkdf32(ikm, info):
    prk = hmac.new(b"\x00" * 32, ikm, hashlib.sha256).digest()  # salt absent = zeros
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()

def aes_cbc(key, iv, pt):
    return subprocess.run(["openssl", "enc", "-aes-256-cbc", "-K", key.hex(), "-iv", iv.hex()],
                          input=pt, capture_output=True, check=True).stdout

def u32(v): return struct.pack(">I", v)
def u64(v): return struct.pack(">Q", v)
def i64(v): return struct.pack(">q", v)
def lp(b): return u32(len(b)) + b
def s(x): return lp(x.encode())
def opt(x): return b"\x00" if x is None else b"\x01" + s(x)

dek = bytes(range(32))
iv = bytes(range(0xA0, 0xB0))
key_id = 1
payload = b'{"actor":{"id":"u-42","name":"Ada"},"details":{"ip":"203.0.113.7","reason":"password ok"}}'
event_id = bytes.fromhex("0192f0c4e4b07c3a8e5f1a2b3c4d5e6f")
header = (b"\x01" + u64(1) + event_id + i64(1764115200000000) + i64(1764115200123456)
          + s("authentication") + s("user.login") + s("success") + s("info")
          + opt("u-42") + opt("user") + opt("session") + opt("s-9") + opt(None) + opt("api") + opt("portal"))

enc_key = hkdf32(dek, b"custos/v1/data-key/aes-256-cbc")
mac_key = hkdf32(dek, b"custos/v1/data-key/hmac-sha256")
ct = aes_cbc(enc_key, iv, payload)
mac = hmac.new(mac_key, s("custos/v1/entry-mac") + lp(header) + u32(key_id) + iv + lp(ct), hashlib.sha256).digest()
record = s("custos/v1/entry") + lp(header) + u32(key_id) + iv + lp(ct) + mac
leaf = hashlib.sha256(b"\x00" + record).digest()
chain = hashlib.sha256(s("custos/v1/chain") + b"\x00" * 32 + leaf).digest()

kek = bytes([0x5A] * 32)
wrap_iv = bytes(range(0x10, 0x20))
kek_enc = hkdf32(kek, b"custos/v1/kek/aes-256-cbc")
kek_mac = hkdf32(kek, b"custos/v1/kek/hmac-sha256")
wct = aes_cbc(kek_enc, wrap_iv, dek)
wmac = hmac.new(kek_mac, s("custos/v1/key-wrap") + s("data") + u32(key_id) + wrap_iv + lp(wct), hashlib.sha256).digest()
wrapped = b"\x01" + wrap_iv + wct + wmac

for name, value in [("header", header), ("ciphertext", ct), ("mac", mac), ("leaf", leaf),
                    ("chain", chain), ("wrapped_dek", wrapped)]:
    print(f"{name} {value.hex()}")
