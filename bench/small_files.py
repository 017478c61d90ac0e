#!/usr/bin/env python3
"""Many small objects on S3: zoopipectl beside Polars, same prefix, same run (bench/small_files.sh
sets up the venv, the S3 server and the build, then calls this).

For each --objects count N: the users rows of gen_users.py (same generator, seed and share of
invalid rows; the first N*R rows of `gen_users.py N*R`, byte for byte) are cut into N CSV
objects of R rows each, about --object-bytes (4 KB) with the header in every object, uploaded
concurrently (boto3, a thread pool) to s3://bench/small-N/part-NNNNN.csv on a loopback S3
server, and the same rows as one object s3://bench/one-N/users.csv. --server picks it:

    s3s-fs       (default) `s3s-fs --host 127.0.0.1 --port PORT --access-key bench-key
                 --secret-key bench-secret-key DIR` (--s3s-bin, built by small_files.sh as
                 scripts/test.sh does), a Rust server (tokio/hyper), objects as files in a
                 temporary DIR, with LD_PRELOAD=--nodelay-so (bench/nodelay.c) setting TCP_NODELAY
                 on the sockets it accepts (without it every small answer waits ~40 ms for a
                 delayed ACK: see s3.start_s3s_fs). It checks SigV4, so every client signs with
                 that key and secret. It has DeleteObjects but no ListMultipartUploads (the
                 cleanup leaves unfinished uploads alone) and no request log (the S3 requests
                 column says "not logged"). Its LIST walks the whole bucket directory for each
                 page of 1,000 keys. 10,000 GETs of 4 KB in ~4 s on 2 cores (localbucket ~10 s).
    localbucket  `localbucket --host 127.0.0.1 --port PORT DIR`, objects as files in a
                 temporary DIR, with TCP_NODELAY on its sockets (see s3.start_logged_localbucket);
                 one Python process, ~1,000 small GETs a second on 2 cores. No DeleteObjects:
                 zoopipectl runs with AWS_DISABLE_BULK_DELETE=true and the bench deletes one
                 object at a time. Its LIST walks the whole bucket for each page of 1,000 keys
                 (~0.2 s a page at 10,000 objects on a busy 2-core host): both engines pay that
                 on the many-object prefix.
    moto         moto's S3 server with a request log (bench/s3_server.py, as bench/s3.sh), objects
                 in memory; ~340 requests/s, too slow to show the target on many objects.

Then, for each thread count T, layout (N objects, one object) and engine, `repeat` runs, each a
fresh process reaped with os.wait4() (wall time, peak RSS of the process tree, as bench.py):

    zoopipe  zoopipectl run --input s3://bench/small-N/ (or s3://bench/one-N/users.csv)
                 --output s3://lake/out-zoopipe/ --format parquet --compression zstd
                 --schema bench/users.schema.json --workers T --quiet --report FILE
             with AWS_ENDPOINT_URL=http://127.0.0.1:PORT AWS_ACCESS_KEY_ID=KEY
             AWS_SECRET_ACCESS_KEY=SECRET AWS_REGION=us-east-1 (the server's keys: bench-key /
             bench-secret-key on s3s-fs, testing / testing on the others; path style and plain
             http follow from the http:// endpoint) and, on localbucket,
             AWS_DISABLE_BULK_DELETE=true
    polars   python bench/peers.py --engine polars --threads T --format csv
                 --input 's3://bench/small-N/*.csv' (or s3://bench/one-N/users.csv)
                 --out-dir s3://lake/out-polars/ --storage-options '{"aws_endpoint_url": ...,
                 "aws_allow_http": "true", "aws_virtual_hosted_style_request": "false", ...}'
             (pl.scan_csv(..., storage_options=..., infer_schema=False), the checks of
             bench/run.sh, valid and invalid rows sunk to Parquet (zstd); POLARS_MAX_THREADS=T)

--latency-ms N (default 0: off): loopback answers in well under a millisecond, which hides what
each request costs an engine; with N > 0 both engines talk to the server through
bench/latency_proxy.py (`python latency_proxy.py PROXY_PORT PORT N`, started on a free loopback
port, stopped at the end and on SIGTERM as the server is), which forwards the bytes they send N ms
after they arrived, as a real object store's first-byte latency would delay each request; their
AWS_ENDPOINT_URL and aws_endpoint_url are the proxy's. boto3's uploads, read-backs and cleanup
(not timed) go to the server directly. The printed header and the results say so.

The output prefix is emptied before each run (not timed). After each run its valid rows are read
back from the Parquet footers (not timed) and must equal what the engine reported; both engines
must report the same read / valid / invalid for the same rows (otherwise an ERROR line and exit
status 1). Every request the server answers during a run is that run's (nothing else talks to
it then; counted when the server logs requests: localbucket, moto). After the runs on N objects
both data sets are deleted (not timed), so the next count lists a bucket holding only its own
data. Prints a markdown table (objects/s, rows/s, tasks, peak RSS, ratio to Polars), the
verdicts against the issue's targets (>= 1.5x Polars on the many-object prefix; many-object run
within 3x of the one-object run), the time listing the many-object prefix alone takes (boto3,
pages in sequence, straight to the server: what any engine that lists it waits at least), and
writes them to the `small_files` section of --results
(bench/RESULTS.md).
"""
import argparse
import collections
import concurrent.futures
import datetime
import io
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import gen_users  # noqa: E402
from results_section import replace_section  # noqa: E402
from s3 import (S3S_FS_KEY, S3S_FS_SECRET, _start_server, binary_note, classify,  # noqa: E402
                empty_prefix, free_port, read_localbucket_log, read_log, rel, start_logged_localbucket,
                start_logged_moto, start_s3s_fs)
from bench import git_head, print_report, ram_note, versions  # noqa: E402
from sql import cpu_busy, cpu_model, last_json, timed  # noqa: E402

BUCKET = "bench"
# Outputs go to a bucket of their own, as a raw / lake split does (and the output listings of
# both engines do not walk the input bucket on servers whose LIST walks a whole bucket).
OUT_BUCKET = "lake"
ENGINES = ("zoopipe", "polars")
LAYOUTS = ("small", "one")  # N objects of ~4 KB, the same rows as one object
TARGET_VS_POLARS = 1.5     # the issue: >= 1.5x Polars' rows/s on the many-object prefix
TARGET_MANY_VS_ONE = 3.0   # the issue: the many-object run within 3x of the one-object run
REGION = "us-east-1"
TEST_KEYS = ("testing", "testing")  # moto and localbucket take any key
# --server: how to start it (from the arguments and the work directory; returns endpoint, log,
# stop), how to read its request log (None: it logs no requests), whether it has DeleteObjects
# (bulk) and ListMultipartUploads (uploads), the access key and secret to sign with, and what it
# is (for the machine line).
SERVERS = {
    "s3s-fs": {"start": lambda a, work: start_s3s_fs(a.s3s_bin, a.nodelay_so, work), "read_log": None,
               "bulk": True, "uploads": False, "keys": (S3S_FS_KEY, S3S_FS_SECRET),
               "what": "s3s-fs 0.14.1: Rust (tokio/hyper), objects as files in a temporary directory, "
                       "TCP_NODELAY set on its sockets by an LD_PRELOAD shim (bench/nodelay.c); its LIST "
                       "walks the whole bucket directory for every page of 1,000 keys"},
    "localbucket": {"start": lambda a, work: start_logged_localbucket(a.python, work),
                    "read_log": read_localbucket_log, "bulk": False, "uploads": False, "keys": TEST_KEYS,
                    "what": "localbucket: one Python process, http.server with a thread per connection "
                            "and TCP_NODELAY, objects as files in a temporary directory"},
    "moto": {"start": lambda a, work: start_logged_moto(a.python, work), "read_log": read_log,
             "bulk": True, "uploads": True, "keys": TEST_KEYS,
             "what": "moto: one Python process, objects in memory"},
}


def start_latency_proxy(upstream, delay_ms, work):
    """bench/latency_proxy.py on a free loopback port in front of the server at `upstream`
    (http://127.0.0.1:PORT), adding delay_ms to every request; its output goes to
    work/latency_proxy.log. Returns (endpoint, stop function). Started as the servers are
    (s3._start_server): waits until its port answers; the SIGTERM handler it installs stops
    only the proxy, so the caller installs one stopping both."""
    port = free_port()
    cmd = [sys.executable, os.path.join(HERE, "latency_proxy.py"), str(port),
           str(urllib.parse.urlsplit(upstream).port), str(delay_ms)]
    return _start_server("latency proxy", cmd, port, os.path.join(work, "latency_proxy.log"))


def latency_note(delay_ms):
    return (f"requests of both engines pass a proxy adding {delay_ms} ms to each "
            "(bench/latency_proxy.py)")


# --- The data -------------------------------------------------------------------------------

def gen_lines(rows, seed, rate):
    """The data lines of `gen_users.py ROWS OUT --seed S --invalid-rate R` (same chunks, same
    bytes; no newline) and how many of them were made invalid."""
    lines, bad = [], 0
    for ci, start in enumerate(range(0, rows, gen_users.CHUNK)):
        body, b = gen_users.chunk_lines(seed, ci, min(gen_users.CHUNK, rows - start), rate)
        lines += body[:-1].split(b"\n")  # every chunk ends with one newline
        bad += b
    if len(lines) != rows:
        raise SystemExit(f"small_files: generated {len(lines)} lines, {rows} asked")
    return lines, bad


def rows_per_object(object_bytes, seed, rate):
    """Rows per object so that header + rows is about object_bytes (mean line length measured
    on the generator's first 10 000 rows)."""
    body, _ = gen_users.chunk_lines(seed, 0, 10_000, rate)
    mean = len(body) / 10_000
    return max(1, round((object_bytes - len(gen_users.HEADER)) / mean))


def upload(s3, objects, jobs):
    """PUT every (key, body) with `jobs` concurrent requests; seconds taken."""
    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(jobs) as ex:
        futures = [ex.submit(s3.put_object, Bucket=BUCKET, Key=k, Body=b) for k, b in objects]
        for f in concurrent.futures.as_completed(futures):
            f.result()
    return time.perf_counter() - t0


def prepare(s3, n, rpo, a):
    """Generate N objects of `rpo` rows and the same rows as one object, upload both."""
    rows = n * rpo
    t0 = time.perf_counter()
    lines, bad = gen_lines(rows, a.seed, a.invalid_rate)
    head = gen_users.HEADER
    objects = [(f"small-{n}/part-{i:05d}.csv", head + b"\n".join(lines[i * rpo:(i + 1) * rpo]) + b"\n")
               for i in range(n)]
    one = head + b"\n".join(lines) + b"\n"
    del lines
    gen_s = time.perf_counter() - t0
    sizes = [len(b) for _, b in objects]
    up_small = upload(s3, objects, a.upload_jobs)
    del objects
    up_one = upload(s3, [(f"one-{n}/users.csv", one)], 1)
    d = {"rows": rows, "bad": bad, "small_bytes": sum(sizes), "min": min(sizes), "max": max(sizes),
         "one_bytes": len(one), "gen_s": gen_s, "up_small_s": up_small, "up_one_s": up_one}
    print(f"[bench] {n:,} objects x {rpo} rows ({rows:,} rows, {bad:,} made invalid): "
          f"{d['small_bytes'] / 1e6:.1f} MB, objects {d['min']:,}..{d['max']:,} B, uploaded to "
          f"s3://{BUCKET}/small-{n}/ in {up_small:.1f}s ({n / up_small:.0f} PUT/s, {a.upload_jobs} at once); "
          f"one object s3://{BUCKET}/one-{n}/users.csv {len(one) / 1e6:.1f} MB in {up_one:.1f}s; "
          f"generated in {gen_s:.1f}s", file=sys.stderr, flush=True)
    return d


# --- Outputs --------------------------------------------------------------------------------

def listing_seconds(s3, prefix, repeat):
    """Median wall time of listing `prefix` of the input bucket alone, page after page."""
    times = []
    for _ in range(max(1, repeat)):
        start = time.perf_counter()
        keys = 0
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
            keys += len(page.get("Contents", []))
        times.append(time.perf_counter() - start)
    return statistics.median(times), keys


def hidden(relpath):
    """Under a `_*` or `.*` folder, or named so (zoopipe's _errors/, staging, markers)."""
    return any(p.startswith(("_", ".")) for p in relpath.split("/"))


def output_parquet_rows(s3, out):
    """{relative path: rows from the footer} of the *.parquet files an engine wrote under `out`
    (an s3://lake/ prefix or a local directory), outside `_*` / `.*` paths."""
    import pyarrow.parquet as pq
    found = {}
    if out.startswith("s3://"):
        prefix = out[len(f"s3://{OUT_BUCKET}/"):]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=OUT_BUCKET, Prefix=prefix):
            for o in page.get("Contents", []):
                relpath = o["Key"][len(prefix):]
                if relpath.endswith(".parquet") and not hidden(relpath):
                    body = s3.get_object(Bucket=OUT_BUCKET, Key=o["Key"])["Body"].read()
                    found[relpath] = pq.ParquetFile(io.BytesIO(body)).metadata.num_rows
    else:
        for d, dirs, files in os.walk(out):
            for f in files:
                relpath = os.path.relpath(os.path.join(d, f), out).replace(os.sep, "/")
                if relpath.endswith(".parquet") and not hidden(relpath):
                    found[relpath] = pq.ParquetFile(os.path.join(d, f)).metadata.num_rows
    return found


def clear_output(s3, out, a):
    if out.startswith("s3://"):
        empty_prefix(s3, OUT_BUCKET, out[len(f"s3://{OUT_BUCKET}/"):], bulk=a.bulk, uploads=a.uploads)
    else:
        shutil.rmtree(out, ignore_errors=True)


def request_mix(reqs):
    c = collections.Counter()
    for r in reqs:
        op = classify(r)
        c["GET" if op.startswith("GET") else op if op in ("LIST", "HEAD") else "write"] += 1
    c["all"] = len(reqs)
    return c


def mix_text(c):
    if c is None:
        return "not logged"
    if not c:
        return "-"
    parts = [f"{c[k]:,} {k}" for k in ("GET", "HEAD", "LIST", "write") if c.get(k)]
    return f"{c['all']:,}: " + ", ".join(parts)


# --- Runs -----------------------------------------------------------------------------------

def source(engine, layout, n):
    if layout == "one":
        return f"s3://{BUCKET}/one-{n}/users.csv"
    return f"s3://{BUCKET}/small-{n}/" if engine == "zoopipe" else f"s3://{BUCKET}/small-{n}/*.csv"


def command(engine, layout, n, threads, a, out, report):
    if engine == "zoopipe":
        return [a.bin, "run", "--input", source(engine, layout, n), "--output", out,
                "--format", "parquet", "--compression", "zstd", "--schema", rel(a.schema),
                "--workers", str(threads), "--quiet", "--report", report]
    return [a.python, rel(os.path.join(HERE, "peers.py")), "--engine", "polars", "--threads", str(threads),
            "--format", "csv", "--input", source(engine, layout, n), "--out-dir", out,
            "--storage-options", json.dumps(a.storage_options)]


def shown(cmd):
    return shlex.join(rel(p) if os.path.isabs(p) and p.startswith(ROOT) else p for p in cmd)


def run_cell(engine, layout, n, threads, a, s3, work, warnings):
    """`repeat` runs of one engine on one layout at one thread count; a result dict."""
    if a.output_to == "s3":
        out = f"s3://{OUT_BUCKET}/out-{engine}/"
    else:
        out = os.path.join(work, f"out_{engine}") + "/"
    report = os.path.join(work, "zoopipe_report.json")
    cmd = command(engine, layout, n, threads, a, out, report)
    env = dict(a.env, POLARS_MAX_THREADS=str(threads))
    what = f"{n:,} objects" if layout == "small" else f"1 object (rows of {n:,})"
    print(f"== {what}, {engine} threads={threads}: {shown(cmd)}", flush=True)
    runs, counts, tasks, failed = [], None, None, None
    for i in range(a.repeat):
        clear_output(s3, out, a)
        try:
            os.remove(report)
        except FileNotFoundError:
            pass
        if a.read_log:
            time.sleep(0.3)  # let the request log catch up with the cleanup
            mark = os.path.getsize(a.reqlog)
        rc, wall, rss, sout, serr = timed(cmd, env, work)
        mix = None  # the server logs no requests
        if a.read_log:
            time.sleep(0.3)
            mix = request_mix(a.read_log(a.reqlog, mark))
        if rc != 0:
            failed = f"exit {rc}"
            print(f"   run {i + 1}: FAILED (exit {rc}) after {wall:.2f}s; stderr:")
            print("   | " + "\n   | ".join((serr.strip() or "(empty)").splitlines()[-40:]))
            break
        if engine == "zoopipe":
            try:
                with open(report) as f:
                    rep = json.load(f)
                got = (int(rep["total_processed"]), int(rep["total_valid"]), int(rep["total_errors"]))
                tasks = rep.get("partitions", {}).get("total")
            except (OSError, ValueError, KeyError, TypeError) as ex:
                failed = f"no report ({ex})"
        else:
            d = last_json(sout) or {}
            try:
                got = (int(d["rows_read"]), int(d["rows_valid"]), int(d["rows_invalid"]))
            except (KeyError, TypeError, ValueError):
                failed = "no JSON counts on stdout"
        if failed:
            print(f"   run {i + 1}: {failed}; stderr:\n   | " + "\n   | ".join(serr.strip().splitlines()[-20:]))
            break
        files = output_parquet_rows(s3, out)
        written = files.get("valid.parquet", 0) if engine == "polars" else sum(files.values())
        print(f"   run {i + 1}: {wall:.2f}s, peak RSS {rss / 1024:.0f} MiB, read/valid/invalid "
              f"{got[0]}/{got[1]}/{got[2]}" + (f", {tasks} tasks" if engine == "zoopipe" else "")
              + f", {written} valid rows in {len(files)} Parquet file(s), requests {mix_text(mix)}", flush=True)
        if written != got[1] or (engine == "polars" and files.get("errors.parquet", 0) != got[2]):
            failed = f"wrote {written} valid rows, reported {got[1]}"
            msg = f"ERROR: {what}, {engine} threads={threads}: {failed} (files: {files})"
            print("   " + msg)
            warnings.append(msg)
            break
        if counts is not None and got != counts:
            msg = f"WARNING: {what}, {engine} threads={threads}: counts changed between runs: {counts} then {got}"
            print("   " + msg)
            warnings.append(msg)
        counts = got
        runs.append({"wall": wall, "rss": rss, "mix": mix})
    clear_output(s3, out, a)
    if failed and not runs:
        return {"failed": failed, "counts": counts}
    med = sorted(runs, key=lambda r: r["wall"])[len(runs) // 2]
    return {"wall": statistics.median(r["wall"] for r in runs), "rss": max(r["rss"] for r in runs),
            "runs": len(runs), "failed": failed, "counts": counts, "tasks": tasks, "mix": med["mix"]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--objects", default="1000 10000", help="object counts, e.g. \"1000 10000\"")
    ap.add_argument("--object-bytes", type=int, default=4096, help="about this many bytes per object")
    ap.add_argument("--threads", default="1 2")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--engines", default=" ".join(ENGINES))
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--invalid-rate", type=float, default=0.02)
    ap.add_argument("--server", choices=sorted(SERVERS), default="s3s-fs",
                    help="the loopback S3 server: s3s-fs (default, fastest), localbucket or moto")
    ap.add_argument("--s3s-bin", default=os.path.join(ROOT, "target/s3s/bin/s3s-fs"),
                    help="the s3s-fs binary (--server s3s-fs)")
    ap.add_argument("--nodelay-so", default=os.path.join(ROOT, "target/bench/nodelay.so"),
                    help="bench/nodelay.c built as a shared object, preloaded into s3s-fs")
    ap.add_argument("--output-to", choices=["s3", "local"], default="s3",
                    help="where both engines write: the bucket (default) or a local directory")
    ap.add_argument("--latency-ms", type=int, default=0,
                    help="both engines reach the server through bench/latency_proxy.py, which adds "
                         "this many ms to every request (default 0: direct, no proxy)")
    ap.add_argument("--upload-jobs", type=int, default=16, help="concurrent PUTs while uploading")
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/zoopipectl"))
    ap.add_argument("--schema", default=os.path.join(HERE, "users.schema.json"))
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--results", default=os.path.join(HERE, "RESULTS.md"))
    ap.add_argument("--command-line", default="bench/small_files.sh")
    a = ap.parse_args()
    object_counts = [int(x) for x in a.objects.split()]
    threads = [int(t) for t in a.threads.split()]
    engines = a.engines.split()
    for e in engines:
        if e not in ENGINES:
            ap.error(f"unknown engine {e!r}; known: {' '.join(ENGINES)}")
    if not object_counts or min(object_counts) < 1 or not threads or min(threads) < 1 or a.repeat < 1:
        ap.error("--objects, --threads and --repeat must be positive integers")
    if a.latency_ms < 0:
        ap.error("--latency-ms must be >= 0")
    have_ours = "zoopipe" in engines and os.access(a.bin, os.X_OK)
    if "zoopipe" in engines and not have_ours:
        print(f"NOTE: {rel(a.bin)} not found or not executable; zoopipe rows will say 'n/a'")
    import boto3
    from botocore.config import Config

    data = os.path.join(HERE, "data")
    os.makedirs(data, exist_ok=True)
    work = tempfile.mkdtemp(prefix="small-", dir=data)
    server = SERVERS[a.server]
    a.read_log, a.bulk, a.uploads = server["read_log"], server["bulk"], server["uploads"]
    if a.server == "s3s-fs":
        for path, what in ((a.s3s_bin, "the s3s-fs binary"), (a.nodelay_so, "the TCP_NODELAY shim")):
            if not os.path.isfile(path):
                raise SystemExit(f"small_files: {rel(path)} ({what}) missing; bench/small_files.sh builds it")
    endpoint, a.reqlog, stop_server = server["start"](a, work)
    # --latency-ms: the engines go through the proxy (engine_endpoint), boto3's uploads, checks and
    # cleanup (not timed) straight to the server (endpoint).
    engine_endpoint, stop_proxy = endpoint, lambda: None
    if a.latency_ms > 0:
        try:
            engine_endpoint, stop_proxy = start_latency_proxy(endpoint, a.latency_ms, work)
        except BaseException:
            stop_server()
            raise
        signal.signal(signal.SIGTERM, lambda *_: (stop_proxy(), stop_server(), sys.exit(143)))
    key, secret = server["keys"]
    creds = {"AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret, "AWS_REGION": REGION}
    # Each engine gets the loopback endpoint and the server's keys (s3s-fs checks signatures; the
    # others take any key): zoopipe from the AWS_* variables (as bench/s3.sh; an http:// endpoint
    # gives it path style and plain http), Polars from storage_options (as the issue asks; it would
    # also read them from the environment). Other AWS_* settings of the caller (profile, session
    # token, CA bundle) are dropped. localbucket has no DeleteObjects, which object_store's delete()
    # uses unless told otherwise.
    a.env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    a.env.update(creds, AWS_ENDPOINT_URL=engine_endpoint)
    if not a.bulk:
        a.env["AWS_DISABLE_BULK_DELETE"] = "true"
    a.zoopipe_env = " ".join(f"{k}={v}" for k, v in sorted(a.env.items())
                             if k.startswith("AWS_") and k != "AWS_ENDPOINT_URL")
    a.storage_options = {"aws_endpoint_url": engine_endpoint, "aws_access_key_id": key,
                         "aws_secret_access_key": secret, "aws_region": REGION, "aws_allow_http": "true",
                         "aws_virtual_hosted_style_request": "false"}
    results, datasets, warnings, busy = {}, {}, [], []
    rpo = rows_per_object(a.object_bytes, a.seed, a.invalid_rate)
    try:
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name=REGION,
                          aws_access_key_id=key, aws_secret_access_key=secret,
                          config=Config(max_pool_connections=max(10, a.upload_jobs),
                                        retries={"max_attempts": 5, "mode": "standard"},
                                        s3={"addressing_style": "path"}))
        s3.create_bucket(Bucket=BUCKET)
        s3.create_bucket(Bucket=OUT_BUCKET)
        print(f"== {a.server} on {endpoint}; {rpo} rows per object (about {a.object_bytes} B)", flush=True)
        if a.latency_ms > 0:
            print(f"== {latency_note(a.latency_ms)}, on {engine_endpoint}; uploads and cleanup go to "
                  "the server directly", flush=True)
        for n in object_counts:
            datasets[n] = prepare(s3, n, rpo, a)
            datasets[n]["list_s"], listed = listing_seconds(s3, f"small-{n}/", a.repeat)
            print(f"== listing small-{n}/ alone: {datasets[n]['list_s']:.2f} s ({listed:,} keys)",
                  flush=True)
            b = cpu_busy()
            busy.append(b)
            if b is not None and b > 0.25:
                msg = (f"WARNING: {b:.2f} cores were busy before the {n:,}-object runs: something else "
                       "is using the CPU, timings are not clean")
                print(msg, flush=True)
                warnings.append(msg)
            for t in threads:
                for layout in LAYOUTS:
                    for e in engines:
                        if e == "zoopipe" and not have_ours:
                            results[(n, layout, t, e)] = {"failed": "binary missing"}
                            continue
                        results[(n, layout, t, e)] = run_cell(e, layout, n, t, a, s3, work, warnings)
            for prefix in (f"small-{n}/", f"one-{n}/"):
                empty_prefix(s3, BUCKET, prefix, bulk=a.bulk, uploads=a.uploads, jobs=a.upload_jobs)
    finally:
        stop_proxy()
        stop_server()
        shutil.rmtree(work, ignore_errors=True)

    # Counts: the same rows must give the same read / valid / invalid whatever the engine, the
    # layout and the thread count; read = the rows uploaded. The generator's own count of rows
    # it made invalid should match too (a WARNING only: it is the generator's word, not an engine's).
    for n in object_counts:
        seen = {}
        for (n2, layout, t, e), r in results.items():
            if n2 == n and r.get("counts"):
                seen.setdefault(r["counts"], []).append(f"{e}@{t} {layout}")
        if len(seen) > 1:
            warnings.append(f"ERROR: {n:,} objects: the engines disagree on read/valid/invalid: " + "; ".join(
                f"{'/'.join(map(str, c))} <- {', '.join(who)}" for c, who in seen.items()))
        for c, who in seen.items():
            if c[0] != datasets[n]["rows"]:
                warnings.append(f"ERROR: {n:,} objects: {', '.join(who)} read {c[0]} rows, "
                                f"{datasets[n]['rows']} uploaded")
            elif c[2] != datasets[n]["bad"]:
                warnings.append(f"WARNING: {n:,} objects: {', '.join(who)} found {c[2]} invalid rows, "
                                f"the generator made {datasets[n]['bad']} invalid")

    lines = ["| objects | engine | threads | median wall s | objects/s | rows/s | tasks | peak RSS MiB "
             "| vs Polars | S3 requests (median run) | read / valid / invalid |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    verdicts = []
    for n in object_counts:
        rows = datasets[n]["rows"]
        for t in threads:
            for layout in LAYOUTS:
                nobj = n if layout == "small" else 1
                label = f"{n:,}" if layout == "small" else f"1 (rows of {n:,})"
                pl_r = results.get((n, layout, t, "polars"), {})
                pl_rps = rows / pl_r["wall"] if "wall" in pl_r else None
                for e in engines:
                    r = results[(n, layout, t, e)]
                    c = r.get("counts")
                    cs = f"{c[0]} / {c[1]} / {c[2]}" if c else "-"
                    if "wall" not in r:
                        lines.append(f"| {label} | {e} | {t} | n/a ({r['failed']}) | | | | | | | {cs} |")
                        continue
                    rps = rows / r["wall"]
                    ratio = f"{rps / pl_rps:.2f}x" if pl_rps else "-"
                    note = f" ({r['runs']} of {a.repeat} runs; then {r['failed']})" if r.get("failed") else ""
                    tasks = str(r["tasks"]) if e == "zoopipe" and r.get("tasks") is not None else "-"
                    lines.append(f"| {label} | {e} | {t} | {r['wall']:.2f}{note} | {nobj / r['wall']:,.0f} "
                                 f"| {rps / 1e6:.3f} M | {tasks} | {r['rss'] / 1024:.0f} | {ratio} "
                                 f"| {mix_text(r['mix'])} | {cs} |")
            z_small = results.get((n, "small", t, "zoopipe"), {})
            z_one = results.get((n, "one", t, "zoopipe"), {})
            p_small = results.get((n, "small", t, "polars"), {})
            p_one = results.get((n, "one", t, "polars"), {})
            if "wall" in z_small and "wall" in p_small:
                x = p_small["wall"] / z_small["wall"]
                one = (f"; on the one object {p_one['wall'] / z_one['wall']:.2f}x"
                       if "wall" in z_one and "wall" in p_one else "")
                verdicts.append(f"- {n:,} objects, {t} thread(s): zoopipe {x:.2f}x Polars' rows/s (target >= "
                                f"{TARGET_VS_POLARS:.1f}x: {'met' if x >= TARGET_VS_POLARS else 'NOT met'}){one}")
            if "wall" in z_small and "wall" in z_one:
                x = z_small["wall"] / z_one["wall"]
                pol = (f"; Polars {p_small['wall'] / p_one['wall']:.2f}x"
                       if "wall" in p_small and "wall" in p_one else "")
                verdicts.append(f"- {n:,} objects, {t} thread(s): zoopipe many-object / one-object wall time "
                                f"{z_small['wall']:.2f} / {z_one['wall']:.2f} s = {x:.2f}x (target <= "
                                f"{TARGET_MANY_VS_ONE:.0f}x: {'met' if x <= TARGET_MANY_VS_ONE else 'NOT met'}){pol}; "
                                f"listing the prefix alone takes {datasets[n]['list_s']:.2f} s "
                                f"({datasets[n]['list_s'] / z_one['wall']:.1f}x the one-object run)")
    table = print_report(lines, verdicts, warnings)

    mem = ram_note()
    if a.server == "s3s-fs":  # not a Python package: its own --version ("s3s-fs 0.14.1")
        vers = versions(a.python, ['polars', 'boto3'])
        try:
            vers += ", " + (subprocess.run([a.s3s_bin, "--version"], capture_output=True, text=True)
                            .stdout.strip() or "s3s-fs (version unknown)")
        except OSError:
            vers += ", s3s-fs (version unknown)"
    else:
        vers = versions(a.python, ['polars', a.server, 'boto3'])
    git = git_head()
    sizes = "; ".join(
        f"{n:,} objects: {d['rows']:,} rows ({d['bad']:,} made invalid), {d['small_bytes'] / 1e6:.1f} MB in "
        f"objects of {d['min']:,}..{d['max']:,} B (uploaded in {d['up_small_s']:.0f}s, {a.upload_jobs} PUTs at "
        f"once), one object {d['one_bytes'] / 1e6:.1f} MB" for n, d in datasets.items())
    out_desc = (f"`s3://{OUT_BUCKET}/out-ENGINE/` (emptied before each run, not timed)" if a.output_to == "s3"
                else "a local directory under bench/data/ (emptied before each run, not timed)")
    body = [
        "## Many small objects on S3 beside Polars (`bench/small_files.sh`)"
        + (f", {a.latency_ms} ms added to every request" if a.latency_ms > 0 else ""), "",
        f"- command: `{a.command_line}`",
        f"- date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M:%S UTC')}",
        f"- machine: nproc {os.cpu_count()}, {cpu_model()}{mem}, {platform.system()} {platform.release()}; "
        f"the S3 server ({server['what']}) runs on the same cores",
    ] + ([
        f"- latency: {latency_note(a.latency_ms)}: it forwards the bytes each engine sends "
        f"{a.latency_ms} ms after they arrived (answers at once; connects not delayed), one Python asyncio "
        "process on the same cores; uploads, read-backs and cleanup (boto3, not timed) go to the server directly",
    ] if a.latency_ms > 0 else []) + [
        f"- software: {vers}; repo at {git}",
        f"- zoopipectl: `{rel(a.bin)}`{binary_note(a.bin)}",
        f"- data: the users rows of `gen_users.py` (seed {a.seed}, invalid rate {a.invalid_rate}), {rpo} rows "
        f"per object with the header in each, under `s3://{BUCKET}/small-N/`, and the same rows as one "
        f"object `s3://{BUCKET}/one-N/users.csv`: {sizes}",
        f"- zoopipe: `AWS_ENDPOINT_URL=http://127.0.0.1:PORT {a.zoopipe_env} zoopipectl run --input "
        f"s3://{BUCKET}/small-N/ (or s3://{BUCKET}/one-N/users.csv) --output OUT --format parquet "
        "--compression zstd --schema bench/users.schema.json --workers T --quiet --report FILE`; tasks = "
        "the report's `partitions.total`",
        f"- polars: `bench/peers.py --engine polars --threads T --format csv --input "
        f"'s3://{BUCKET}/small-N/*.csv' --out-dir OUT --storage-options '{{aws_endpoint_url, "
        "aws_access_key_id, aws_secret_access_key, aws_region, aws_allow_http, "
        "aws_virtual_hosted_style_request=false}'`: `pl.scan_csv(..., "
        "infer_schema=False, storage_options=..., credential_provider=None)`, the checks of `bench/run.sh`, "
        "valid and invalid rows sunk to Parquet (zstd) in one streaming plan; POLARS_MAX_THREADS=T; the "
        "whole Python process is measured (interpreter and imports: a few tenths of a second)",
        f"- outputs: {out_desc}; each run's valid rows read back from the Parquet footers",
        f"- {a.repeat} runs per cell: median wall time, max peak RSS (whole process tree, wait4); "
        "objects/s = objects / median wall s, rows/s = rows / median wall s; vs Polars = our rows/s over "
        "Polars' for the same layout and threads; S3 requests = what the server answered during the median run "
        "(GET, HEAD, LIST, write = PUT / multipart / DELETE" + ("; s3s-fs logs no requests: 'not logged'"
                                                              if a.read_log is None else "")
        + "); cores busy before the runs: "
        + ", ".join("?" if b is None else f"{b:.2f}" for b in busy),
        "",
        table,
        "",
    ] + verdicts + ([""] + [f"- {w}" for w in warnings] if warnings else [])
    replace_section(a.results, "small_files", "\n".join(body))
    print(f"\nwrote {rel(a.results)}")
    return 1 if any(w.startswith("ERROR") for w in warnings) else 0


if __name__ == "__main__":
    sys.exit(main())
