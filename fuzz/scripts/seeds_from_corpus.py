#!/usr/bin/env python3
"""Regenerates fuzz/seeds/{proto_parser,connect_json}/corpus_* from the differential
test corpus (tests/corpus/*.txt): per case, the bytes each connection sends (with the
`PING\r\n` a `sync` step sends), and every distinct CONNECT JSON.

Run from the repository root: python3 fuzz/scripts/seeds_from_corpus.py
"""
import glob, hashlib, os, re

def unescape(s):
    out, i = bytearray(), 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            n = s[i + 1]
            if n == "x" and i + 3 < len(s) + 1:
                out.append(int(s[i + 2:i + 4], 16)); i += 4; continue
            out += {"r": b"\r", "n": b"\n", "t": b"\t", "s": b" ", "\\": b"\\"}.get(n, ("\\" + n).encode())
            i += 2; continue
        out += c.encode(); i += 1
    return bytes(out)

root = "fuzz/seeds"
for d in ("proto_parser", "connect_json"):
    for f in glob.glob(f"{root}/{d}/corpus_*"):
        os.remove(f)
connects = set()
for path in sorted(glob.glob("tests/corpus/*.txt")):
    case, sends = None, {}
    def flush():
        for n, (conn, data) in enumerate(sorted(sends.items())):
            # byte 0: chunking (cycled over the cases), byte 1: default limits
            ctl = int(hashlib.sha1(case.encode()).hexdigest(), 16) % 256
            with open(f"{root}/proto_parser/corpus_{case}_{conn}", "wb") as f:
                f.write(bytes([ctl, 0]) + data)
            for m in re.finditer(rb"(?i)CONNECT[ \t]*(\{[^\r\n]*\})", data):
                connects.add(m.group(1))
    for line in open(path, encoding="utf-8"):
        line = line.rstrip("\n")
        if line.startswith("=== "):
            if case: flush()
            case, sends = line[4:].strip(), {}
        elif re.match(r"^[A-Z]> ", line):
            sends[line[0]] = sends.get(line[0], b"") + unescape(line[3:])
        elif re.match(r"^sync [A-Z]", line):
            c = line.split()[1]
            sends[c] = sends.get(c, b"") + b"PING\r\n"
    if case: flush()
for j in sorted(connects):
    name = hashlib.sha1(j).hexdigest()[:12]
    with open(f"{root}/connect_json/corpus_{name}", "wb") as f:
        f.write(j)
