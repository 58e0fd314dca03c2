#!/usr/bin/env python3
"""gen-walked-car.py BLOCKS OUT.car [v3|v4]: a synthetic legacy archive the closure walk reaches whole.

v3: a v3 snapshot -> a chain of v2 chunks (1000 entries each); v4 (arke-dr's own shape): a v4
snapshot of height 0 -> its chunks (v3, 1000 entries each) side by side. Then one
arke/manifest@v1 per entity -> 5 raw 64-byte components each (6 blocks an entity): the visited
set holds every block. Used for docs/benchmarks.md "Memory of the closure walk".
"""
import hashlib
import os
import struct
import sys

def head(major, n):
    if n < 24: return bytes([major << 5 | n])
    if n < 256: return bytes([major << 5 | 24, n])
    if n < 65536: return bytes([major << 5 | 25]) + struct.pack(">H", n)
    if n < 2**32: return bytes([major << 5 | 26]) + struct.pack(">I", n)
    return bytes([major << 5 | 27]) + struct.pack(">Q", n)

class Link:
    def __init__(self, cid): self.cid = cid

def enc(v):
    if isinstance(v, Link): return b"\xd8\x2a" + head(2, len(v.cid) + 1) + b"\x00" + v.cid
    if isinstance(v, bool): return b"\xf5" if v else b"\xf4"
    if isinstance(v, int): return head(0, v)
    if isinstance(v, str):
        b = v.encode(); return head(3, len(b)) + b
    if isinstance(v, list): return head(4, len(v)) + b"".join(enc(x) for x in v)
    if isinstance(v, dict):
        keys = sorted(v, key=lambda k: (len(k.encode()), k.encode()))
        return head(5, len(v)) + b"".join(enc(k) + enc(v[k]) for k in keys)
    raise TypeError(v)

def cid(codec, data): return bytes([1, codec, 0x12, 0x20]) + hashlib.sha256(data).digest()

def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F; n >>= 7
        if n: out.append(b | 0x80)
        else: out.append(b); return bytes(out)

def main():
    blocks, path = int(sys.argv[1]), sys.argv[2]
    v4 = len(sys.argv) > 3 and sys.argv[3] == "v4"
    chunks = []
    entities = max(1, (blocks - 1) // 6)
    # The body first, the root (the snapshot) before it once its chunks are known.
    out = open(path + ".body", "wb")
    def put(c, data):
        out.write(varint(len(c) + len(data)) + c + data)
    prev = None
    chunk = []
    nchunk = 0
    def flush():
        nonlocal prev, chunk, nchunk
        if v4:
            entries = [{"pi": e["pi"], "tip_cid": e["tip"]} for e in chunk]
            d = {"schema": "arke/snapshot-chunk@v3", "chunk_index": nchunk, "entries": entries}
        else:
            d = {"schema": "arke/snapshot-chunk@v2", "chunk_index": nchunk, "entries": chunk}
            if prev is not None: d["prev"] = Link(prev)
        data = enc(d); c = cid(0x71, data); put(c, data); chunks.append(Link(c))
        prev, chunk, nchunk = c, [], nchunk + 1
    for e in range(entities):
        pi = "01SYNTH%019d" % e
        comps = {}
        for j in range(5):
            data = (b"%s component %d " % (pi.encode(), j)).ljust(64, b".")
            c = cid(0x55, data); put(c, data); comps["c%d" % j] = Link(c)
        m = enc({"schema": "arke/manifest@v1", "pi": pi, "ver": 1, "components": comps})
        mc = cid(0x71, m); put(mc, m)
        chunk.append({"pi": pi, "ver": 1, "tip": Link(mc)})
        if len(chunk) == 1000: flush()
    if chunk: flush()
    if v4:
        snap = enc({"schema": "arke/snapshot@v4", "seq": 1, "ts": "2026-12-07T00:00:00Z",
                    "entity_count": entities, "chunk_entries": 1000, "height": 0,
                    "children": chunks})
    else:
        snap = enc({"schema": "arke/snapshot@v3", "seq": 1, "ts": "2026-12-07T00:00:00Z",
                    "total_count": entities, "chunk_size": 1000, "entries_head": Link(prev)})
    sc = cid(0x71, snap)
    out.close()
    header = enc({"roots": [Link(sc)], "version": 1})
    with open(path, "wb") as f:
        f.write(varint(len(header)) + header)
        f.write(varint(len(sc) + len(snap)) + sc + snap)
        with open(path + ".body", "rb") as b:
            while True:
                buf = b.read(1 << 20)
                if not buf: break
                f.write(buf)
    os.remove(path + ".body")
    print(f"{path}: {entities} entities, {entities * 6 + nchunk + 1} blocks")

main()
