#!/usr/bin/env python3
"""Writes the committed seed corpora from the test fixtures (run from fuzz/).

The fixtures' raw blocks (file contents, up to 256 KiB each) are cut to 8 bytes, CIDs kept:
the fuzz targets do not re-hash blocks, so the structure (descriptor, snapshot, chunk,
manifests, components, UnixFS, events) survives in a few KiB and the fuzzer mutates small
inputs. Plus truncated variants, a CARv2 wrapper and a few degenerate files.
"""
import os

FIX = "../crates/arke-core/tests/fixtures/car"
PRAGMA = bytes([0x0A, 0xA1, 0x67]) + b"version" + bytes([0x02])


def varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def read_varint(b, i):
    v = s = 0
    while True:
        x = b[i]
        i += 1
        v |= (x & 0x7F) << s
        s += 7
        if x < 0x80:
            return v, i


def sections(car):
    """(header bytes, [(start, vlen, cid bytes, codec, data)])"""
    n, i = read_varint(car, 0)
    header = car[: i + n]
    i += n
    out = []
    while i < len(car):
        start = i
        length, j = read_varint(car, i)
        vlen = j - i
        k = j
        if car[k] == 0x12 and car[k + 1] == 0x20:  # CIDv0
            codec, k = 0x70, k + 34
        else:
            _, k = read_varint(car, k)  # version
            codec, k = read_varint(car, k)
            _, k = read_varint(car, k)  # multihash code
            mlen, k = read_varint(car, k)
            k += mlen
        out.append((start, vlen, car[j:k], codec, car[k : j + length]))
        i = j + length
    return header, out


def shrink(car, keep=8):
    header, secs = sections(car)
    out = bytearray(header)
    for _, _, cid, codec, data in secs:
        if codec == 0x55:
            data = data[:keep]
        out += varint(len(cid) + len(data)) + cid + data
    return bytes(out), sections(bytes(out))[1]


def v2_wrap(v1, pad=0, index=b""):
    data_offset = len(PRAGMA) + 40 + pad
    index_offset = data_offset + len(v1) if index else 0
    out = bytearray(PRAGMA) + bytes(16)
    for v in (data_offset, len(v1), index_offset):
        out += v.to_bytes(8, "little")
    return bytes(out) + bytes(pad) + v1 + index


def write(target, name, data):
    os.makedirs(f"corpus/{target}", exist_ok=True)
    # "seed-": committed; what the fuzzer adds is named by its sha1 and ignored by git.
    with open(f"corpus/{target}/seed-{name}", "wb") as f:
        f.write(data)


archive = open(f"{FIX}/archive.car", "rb").read()
legacy = open(f"{FIX}/legacy-proofs-v2.car", "rb").read()
small, secs = shrink(archive)
legacy_small, _ = shrink(legacy)
header_len = len(sections(small)[0])

for target in ("closure", "car_reader"):
    write(target, "archive-small.car", small)
    write(target, "legacy-small.car", legacy_small)
    write(target, "archive-small-v2.car", v2_wrap(small, pad=3, index=bytes([0x80, 0x01]) + bytes(6)))

# Truncated variants: at a section boundary (the root, last, is lost), inside a length varint,
# inside a CID, inside block data; only the header.
mid = secs[len(secs) // 2]
start, vlen, cid, _, data = mid
two_byte = next(s for s in secs if s[1] >= 2)
for target in ("closure", "car_reader"):
    write(target, "archive-small-cut-boundary.car", small[:start])
    write(target, "archive-small-cut-cid.car", small[: start + vlen + len(cid) // 2])
    write(target, "archive-small-cut-data.car", small[: start + vlen + len(cid) + max(1, len(data) // 2)])
# The root moved first (a valid CAR), cut in the middle: the walk gets past the root.
header, _ = sections(small)
root_first = header + small[secs[-1][0]:] + small[len(header) : secs[-1][0]]
write("closure", "archive-small-rootfirst.car", root_first)
write("closure", "archive-small-rootfirst-cut.car", root_first[: len(root_first) // 2])
write("car_reader", "archive-small-cut-varint.car", small[: two_byte[0] + 1])
write("car_reader", "archive-small-header-only.car", small[:header_len])
write("car_reader", "empty", b"")
write("car_reader", "pragma-only", PRAGMA)
