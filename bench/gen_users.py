#!/usr/bin/env python3
"""Deterministic users-like CSV generator for the ZooPipe benchmark.

    python bench/gen_users.py N OUT.csv [--seed S] [--invalid-rate 0.02]

Header: user_id,username,email,age,signup_ts,country,score,is_active

Output depends only on (N, seed, invalid-rate): rows are produced in fixed
chunks of CHUNK rows, each from its own RNG stream seeded by (seed, chunk
index), so memory stays bounded (~ a few hundred MB at most) and the file is
byte-identical from run to run. Needs numpy.

About `invalid-rate` of the rows are made invalid on purpose, one defect per
row, chosen from: age "abc" / -5 / 200, email without '@', empty username,
country "XX". Everything else is valid for the pydantic model in
make_schema.py (user_id UUID, username ^[a-z0-9]{3,20}$, email, age 0..120,
signup_ts ISO-8601 UTC, country in 8 codes, score 0..1000, is_active bool).
"""
import argparse
import os
import sys
import time

import numpy as np

CHUNK = 250_000
HEADER = b"user_id,username,email,age,signup_ts,country,score,is_active\n"
COUNTRIES = [b"US", b"DE", b"FR", b"GB", b"ES", b"IT", b"JP", b"BR"]
DOMAINS = [b"gmail.com", b"yahoo.com", b"mail.de", b"outlook.fr", b"proton.me",
           b"web.de", b"zoopipe.io", b"corp.co.uk", b"posteo.net", b"icloud.com",
           b"libero.it", b"uol.com.br", b"yandex.ru", b"gmx.net", b"live.jp", b"aol.com"]
ALPHABET = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz0123456789", dtype=np.uint8)
HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
# 2015-01-01T00:00:00Z .. 2025-01-01T00:00:00Z
TS_LO = 1420070400
TS_HI = 1735689600
INVALID_KINDS = ("age_abc", "age_neg", "age_big", "email_no_at", "username_empty", "country_xx")

AGE_STR = np.array([str(i).encode() for i in range(121)], dtype=object)
SCORE_STR = np.array([b"%d.%02d" % divmod(i, 100) for i in range(100_001)], dtype=object)
COUNTRY_ARR = np.array(COUNTRIES, dtype=object)
DOMAIN_ARR = np.array(DOMAINS, dtype=object)
BOOL_ARR = np.array([b"false", b"true"], dtype=object)
# UUID text layout: 8-4-4-4-12 hex digits
_UUID_POS = np.array([i for i in range(36) if i not in (8, 13, 18, 23)])


def uuids(rng, n):
    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    nib = np.empty((n, 32), dtype=np.uint8)
    nib[:, 0::2] = raw >> 4
    nib[:, 1::2] = raw & 0x0F
    out = np.full((n, 36), ord("-"), dtype=np.uint8)
    out[:, _UUID_POS] = HEX[nib]
    return out.view("S36").ravel().tolist()


def usernames(rng, n):
    # lengths 3..20, mean ~9
    lens = np.clip(3 + rng.binomial(17, 0.35, size=n), 3, 20)
    chars = ALPHABET[rng.integers(0, len(ALPHABET), size=(n, 20), dtype=np.uint8)]
    chars[np.arange(20)[None, :] >= lens[:, None]] = 0  # NUL-pad, stripped by 'S20'
    return chars.view("S20").ravel().tolist()


def timestamps(rng, n):
    secs = rng.integers(TS_LO, TS_HI, size=n, dtype=np.int64).astype("datetime64[s]")
    return np.datetime_as_string(secs, unit="s", timezone="UTC").astype("S20").tolist()


def chunk_lines(seed, chunk_idx, n, invalid_rate):
    rng = np.random.default_rng([seed, chunk_idx])
    uid = uuids(rng, n)
    user = usernames(rng, n)
    # email = username@domain
    dom = DOMAIN_ARR[rng.integers(0, len(DOMAINS), size=n)].tolist()
    email = [u + b"@" + d for u, d in zip(user, dom)]
    age = AGE_STR[rng.integers(0, 121, size=n)].tolist()
    ts = timestamps(rng, n)
    country = COUNTRY_ARR[rng.integers(0, len(COUNTRIES), size=n)].tolist()
    score = SCORE_STR[rng.integers(0, 100_001, size=n)].tolist()
    active = BOOL_ARR[(rng.random(n) < 0.7).astype(np.intp)].tolist()

    bad = np.flatnonzero(rng.random(n) < invalid_rate)
    kinds = rng.integers(0, len(INVALID_KINDS), size=len(bad))
    for i, k in zip(bad.tolist(), kinds.tolist()):
        kind = INVALID_KINDS[k]
        if kind == "age_abc":
            age[i] = b"abc"
        elif kind == "age_neg":
            age[i] = b"-5"
        elif kind == "age_big":
            age[i] = b"200"
        elif kind == "email_no_at":
            email[i] = email[i].replace(b"@", b"")
        elif kind == "username_empty":
            user[i] = b""
        else:
            country[i] = b"XX"
    body = b"\n".join(map(b",".join, zip(uid, user, email, age, ts, country, score, active)))
    return body + b"\n", len(bad)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rows", type=int)
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--invalid-rate", type=float, default=0.02)
    a = ap.parse_args(argv)
    if a.rows < 0:
        ap.error("N must be >= 0")
    t0 = time.perf_counter()
    tmp = a.out + ".tmp"
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    n_bad = 0
    with open(tmp, "wb", buffering=8 << 20) as f:
        f.write(HEADER)
        for ci, start in enumerate(range(0, a.rows, CHUNK)):
            data, b = chunk_lines(a.seed, ci, min(CHUNK, a.rows - start), a.invalid_rate)
            f.write(data)
            n_bad += b
    os.replace(tmp, a.out)
    dt = time.perf_counter() - t0
    size = os.path.getsize(a.out)
    print(f"gen_users: {a.rows} rows ({n_bad} made invalid), {size / 1e6:.1f} MB "
          f"-> {a.out} in {dt:.1f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
