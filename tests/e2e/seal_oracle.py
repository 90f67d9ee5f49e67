#!/usr/bin/env python3
"""seal_oracle.py - an independent implementation of sitespool's sealed
package format (inboxes/seal.h) for the end-to-end tests: python3-nacl
(libsodium bindings) for X25519, the Ed25519 -> X25519 conversion and
crypto_secretstream_xchacha20poly1305; hashlib for BLAKE2b; the minisign
key files parsed here.  Nothing of sitespool's code is used.

  keyid FILE                        the key id of a minisign .pub or .key file
  pin PCK                           the pin of PCK's sealed header (BLAKE2b-256
                                    of its first 72 bytes: the instruction's seal=)
  open SECRET_KEY PCK PAYLOAD_OUT   opens PCK, prints its metadata line,
                                    writes the payload (inflated if zip=zlib)
  seal PUBLIC_KEY PLAINTEXT OUT     seals the bytes of PLAINTEXT (metadata line
                                    and payload, as given) to PUBLIC_KEY
  tamper IN OUT MODE                a copy of sealed IN with one fault: flip
                                    (a byte of chunk 2; flip=K: of chunk K),
                                    swap (chunks 1 and 2),
                                    dropfinal, append, magic, keyid=HEX16,
                                    header=OTHER_PCK (OTHER_PCK's header, IN's chunks)
Exit status 1 with a message on stderr when a package cannot be opened.
"""
import base64
import hashlib
import os
import sys
import zlib

import nacl.bindings as nb

MAGIC = b"SSSEAL01"
CHUNK = 64 * 1024
ABYTES = nb.crypto_secretstream_xchacha20poly1305_ABYTES
HDRBYTES = nb.crypto_secretstream_xchacha20poly1305_HEADERBYTES
HEADER = 8 + 8 + 32 + HDRBYTES
TAG_MESSAGE = nb.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
TAG_FINAL = nb.crypto_secretstream_xchacha20poly1305_TAG_FINAL


def key_blob(path):
    lines = open(path, "rb").read().splitlines()
    return base64.b64decode(lines[1])


def load_public(path):
    blob = key_blob(path)
    assert blob[:2] == b"Ed" and len(blob) == 42, "not a minisign public key"
    return blob[2:10], blob[10:42]


def load_secret(path):
    blob = key_blob(path)
    assert blob[:2] == b"Ed" and blob[2:4] == b"\0\0", "not an unencrypted minisign secret key"
    return blob[54:62], blob[62:126]


def keyid_text(raw):
    return raw[::-1].hex().upper()


def stream_key(shared, eph_pk, rcpt_pk):
    if shared == bytes(32):
        raise ValueError("all-zero shared secret")
    return hashlib.blake2b(shared + eph_pk + rcpt_pk, digest_size=32,
                           key=b"sitespool-seal/1").digest()


def open_sealed(sk_path, data):
    keyid, ed_sk = load_secret(sk_path)
    if len(data) < HEADER or data[:8] != MAGIC:
        raise ValueError("no sealed header")
    if data[8:16] != keyid:
        raise ValueError("sealed to key %s, not %s" % (keyid_text(data[8:16]), keyid_text(keyid)))
    eph_pk, hdr = data[16:48], data[48:HEADER]
    x_sk = nb.crypto_sign_ed25519_sk_to_curve25519(ed_sk)
    x_pk = nb.crypto_sign_ed25519_pk_to_curve25519(ed_sk[32:])
    key = stream_key(nb.crypto_scalarmult(x_sk, eph_pk), eph_pk, x_pk)
    st = nb.crypto_secretstream_xchacha20poly1305_state()
    nb.crypto_secretstream_xchacha20poly1305_init_pull(st, hdr, key)
    plain, pos = [], HEADER
    while True:
        rest = len(data) - pos
        final = rest < CHUNK + ABYTES
        if final and rest < ABYTES:
            raise ValueError("truncated: no final chunk")
        n = rest if final else CHUNK + ABYTES
        try:
            m, tag = nb.crypto_secretstream_xchacha20poly1305_pull(st, data[pos:pos + n])
        except Exception:  # nacl's CryptoError or RuntimeError
            raise ValueError("chunk %d does not authenticate" % (len(plain) + 1))
        if tag != (TAG_FINAL if final else TAG_MESSAGE):
            raise ValueError("chunk tagged %d" % tag)
        plain.append(m)
        pos += n
        if final:
            return b"".join(plain)


def split_meta(plain):
    nl = plain.index(b"\n")
    line = plain[:nl].decode()
    fields = dict(kv.split("=", 1) for kv in line.split(" ")[1:])
    assert line.split(" ")[0] == "sitespool-sealed/1", line
    return line, fields, plain[nl + 1:]


def seal(pub_path, plain):
    keyid, ed_pk = load_public(pub_path)
    x_pk = nb.crypto_sign_ed25519_pk_to_curve25519(ed_pk)
    eph_pk, eph_sk = nb.crypto_box_keypair()
    key = stream_key(nb.crypto_scalarmult(eph_sk, x_pk), eph_pk, x_pk)
    st = nb.crypto_secretstream_xchacha20poly1305_state()
    hdr = nb.crypto_secretstream_xchacha20poly1305_init_push(st, key)
    out = [MAGIC, keyid, eph_pk, hdr]
    pos = 0
    while len(plain) - pos >= CHUNK:
        out.append(nb.crypto_secretstream_xchacha20poly1305_push(st, plain[pos:pos + CHUNK],
                                                                  None, TAG_MESSAGE))
        pos += CHUNK
    out.append(nb.crypto_secretstream_xchacha20poly1305_push(st, plain[pos:], None, TAG_FINAL))
    return b"".join(out)


def chunk_at(k):
    """Offset of full chunk k (1-based)."""
    return HEADER + (k - 1) * (CHUNK + ABYTES)


def tamper(data, mode):
    c = CHUNK + ABYTES
    if mode == "flip" or mode.startswith("flip="):
        k = int(mode[5:]) if mode != "flip" else 2
        assert len(data) > chunk_at(k) + 100
        i = chunk_at(k) + 100
        return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:]
    if mode == "swap":
        a, b = chunk_at(1), chunk_at(2)
        assert len(data) > b + c
        return data[:a] + data[b:b + c] + data[a:b] + data[b + c:]
    if mode == "dropfinal":
        full = (len(data) - HEADER) // c
        assert (len(data) - HEADER) % c, "the final chunk is a full one"
        return data[:HEADER + full * c]
    if mode == "append":
        return data + os.urandom(100)
    if mode == "magic":
        return b"SSSEAL02" + data[8:]
    if mode.startswith("header="):
        return open(mode[7:], "rb").read()[:HEADER] + data[HEADER:]
    if mode.startswith("keyid="):
        return data[:8] + bytes.fromhex(mode[6:])[::-1] + data[16:]
    raise SystemExit("unknown tamper mode " + mode)


def main(argv):
    cmd = argv[1]
    if cmd == "keyid":
        blob = key_blob(argv[2])
        print(keyid_text(blob[2:10] if len(blob) == 42 else blob[54:62]))
    elif cmd == "pin":
        print(hashlib.blake2b(open(argv[2], "rb").read()[:HEADER], digest_size=32).hexdigest())
    elif cmd == "open":
        try:
            plain = open_sealed(argv[2], open(argv[3], "rb").read())
        except Exception as exc:  # nacl raises CryptoError, ValueError...
            print("cannot open: %s" % exc, file=sys.stderr)
            return 1
        line, fields, payload = split_meta(plain)
        if fields["zip"] == "zlib":
            payload = zlib.decompress(payload)
        if len(payload) != int(fields["size"]):
            print("payload is %d bytes, metadata says %s" % (len(payload), fields["size"]),
                  file=sys.stderr)
            return 1
        open(argv[4], "wb").write(payload)
        print(line)
    elif cmd == "seal":
        open(argv[4], "wb").write(seal(argv[2], open(argv[3], "rb").read()))
    elif cmd == "tamper":
        open(argv[3], "wb").write(tamper(open(argv[2], "rb").read(), argv[4]))
    else:
        raise SystemExit(__doc__)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
