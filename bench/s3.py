#!/usr/bin/env python3
"""S3 efficiency benchmark behind bench/s3.sh (run that: it sets up moto and the data).

Starts moto's S3 server on loopback (bench/s3_server.py: moto plus a request log with
byte counts), uploads the CSV to s3://bench/users.csv, then times

    zoopipectl run --input s3://bench/users.csv --output s3://bench/out/ --schema ...

`repeat` times (the out/ prefix is emptied before each run, outside the timed span),
and the same job on local files. Every request the server answered while a run was in
progress is that run's (nothing else talks to the server then); they are classified by
S3 operation. Prints markdown tables and writes them to the `s3` section of RESULTS.md.
"""
import argparse
import collections
import concurrent.futures
import datetime
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from results_section import replace_section  # noqa: E402

BUCKET = "bench"
ORDER = ["GET ranged", "GET whole", "HEAD", "LIST", "PUT object", "CreateMultipartUpload",
         "PUT part", "CompleteMultipartUpload", "AbortMultipartUpload", "COPY", "DELETE", "other"]


def binary_note(path):
    """Where a benchmarked binary came from: a COMMIT file next to it (snapshot builds), mtime."""
    note = []
    try:
        with open(os.path.join(os.path.dirname(path), "COMMIT")) as f:
            note.append(f"built from commit {f.read().strip()}")
    except OSError:
        pass
    try:
        note.append("modified " + datetime.datetime.fromtimestamp(
            os.path.getmtime(path), datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    except OSError:
        return " (missing)"
    return " (" + ", ".join(note) + ")"


def rel(p):
    return os.path.relpath(p, ROOT)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def classify(r):
    m, q = r["method"], r["query"]
    qs = dict(kv.split("=", 1) if "=" in kv else (kv, "") for kv in q.split("&") if kv)
    key = r["path"].strip("/").partition("/")[2]
    if m == "GET":
        if not key or "list-type" in qs or "prefix" in qs or "delimiter" in qs:
            return "LIST"
        if "uploadId" in qs:
            return "other"  # ListParts
        return "GET ranged" if r.get("range") else "GET whole"
    if m == "HEAD":
        return "HEAD"
    if m == "PUT":
        if r.get("copy"):
            return "COPY"
        return "PUT part" if "partNumber" in qs else "PUT object"
    if m == "POST":
        if "uploads" in qs:
            return "CreateMultipartUpload"
        if "uploadId" in qs:
            return "CompleteMultipartUpload"
        if "delete" in qs:
            return "DELETE"
        return "other"
    if m == "DELETE":
        return "AbortMultipartUpload" if "uploadId" in qs else "DELETE"
    return "other"


def read_log(path, start):
    with open(path) as f:
        f.seek(start)
        text = f.read()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def timed(cmd, env):
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = p.communicate()
    wall = time.perf_counter() - t0
    return p.returncode, wall, out.decode(errors="replace"), err.decode(errors="replace")


def start_logged_moto(python, work):
    """moto on a free loopback port with the request log of s3_server.py, under `work`.
    Returns (endpoint, request log path, stop function); stops it on SIGTERM too."""
    reqlog = os.path.join(work, "requests.jsonl")
    port = free_port()
    cmd = [python, os.path.join(HERE, "s3_server.py"), "--port", str(port), "--log", reqlog]
    endpoint, stop_server = _start_server("moto", cmd, port, os.path.join(work, "moto.log"))
    return endpoint, reqlog, stop_server


def start_logged_localbucket(python, work):
    """localbucket (`localbucket --host 127.0.0.1 --port PORT DIR`, the package in the venv of
    `python`) on a free loopback port, objects as files under work/localbucket/. Its own log
    (stderr) has one line per request; read it with read_localbucket_log. Returns (endpoint, log
    path, stop function); stops it on SIGTERM too. The bucket is not created here.

    Started as `python -c "import localbucket; <TCP_NODELAY>; localbucket.main()" ARGS` rather than
    the `localbucket` script: its http.server handler writes the headers and the body of each
    answer in two writes with Nagle's algorithm on, so each small answer waits for the client's
    delayed ACK (~40 ms): ~180 GET/s of 4 KB with 8 boto3 threads, against ~800/s with
    TCP_NODELAY (and moto ~290/s). Same server, same arguments, that one socket option."""
    root = os.path.join(work, "localbucket")
    os.makedirs(root, exist_ok=True)
    log = os.path.join(work, "localbucket.log")
    port = free_port()
    cmd = [python, "-c", "import sys, localbucket; sys.argv[0] = 'localbucket'; "
           "localbucket.S3Handler.disable_nagle_algorithm = True; localbucket.main()",
           "--host", "127.0.0.1", "--port", str(port), root]
    endpoint, stop_server = _start_server("localbucket", cmd, port, log)
    return endpoint, log, stop_server


S3S_FS_KEY, S3S_FS_SECRET = "bench-key", "bench-secret-key"


def start_s3s_fs(bin, nodelay_so, work):
    """s3s-fs (`s3s-fs --host 127.0.0.1 --port PORT --access-key K --secret-key S DIR`, a Rust S3
    server on tokio/hyper, as scripts/test.sh builds it) on a free loopback port, objects as files
    under work/s3s-fs/. It checks SigV4 signatures: clients must sign with S3S_FS_KEY /
    S3S_FS_SECRET. It logs no requests; its output goes to work/s3s-fs.log. Returns (endpoint,
    that log's path, stop function); stops it on SIGTERM too. The bucket is not created here.

    Started with LD_PRELOAD=nodelay_so (bench/nodelay.c, built by small_files.sh), which sets
    TCP_NODELAY on every socket it accepts: like localbucket (start_logged_localbucket) it writes
    each answer's headers and body in two writes with Nagle's algorithm on, so each small answer
    waited for the client's delayed ACK (~40 ms): 10,000 GETs of 4 KB took 16 s with the CPUs
    85 % idle, 4.1 s with TCP_NODELAY. Only that process is affected, no system setting."""
    root = os.path.join(work, "s3s-fs")
    os.makedirs(root, exist_ok=True)
    log = os.path.join(work, "s3s-fs.log")
    port = free_port()
    cmd = [bin, "--host", "127.0.0.1", "--port", str(port), "--access-key", S3S_FS_KEY,
           "--secret-key", S3S_FS_SECRET, root]
    env = dict(os.environ, LD_PRELOAD=os.path.abspath(nodelay_so))
    endpoint, stop_server = _start_server("s3s-fs", cmd, port, log, env=env)
    return endpoint, log, stop_server


def _start_server(name, cmd, port, log, env=None):
    """Start an S3 server (its own session, output to `log`, environment `env` or ours), wait
    until the port answers. Returns (endpoint, stop function); SIGTERM stops it too."""
    srv = subprocess.Popen(cmd, stdout=open(log, "ab"), stderr=subprocess.STDOUT,
                           stdin=subprocess.DEVNULL, start_new_session=True, env=env)

    def stop_server(*_):
        if srv.poll() is None:
            srv.terminate()
            try:
                srv.wait(10)
            except subprocess.TimeoutExpired:
                srv.kill()
                srv.wait()

    signal.signal(signal.SIGTERM, lambda *_: (stop_server(), sys.exit(143)))
    deadline = time.time() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if srv.poll() is not None or time.time() > deadline:
                stop_server()
                raise SystemExit(f"{name} server did not start; see {log}")
            time.sleep(0.2)
    return f"http://127.0.0.1:{port}", stop_server


# localbucket's request line (http.server's log_request through its logger):
#   2025-01-01 12:00:00 [INFO]: 127.0.0.1 "GET /bench/key?x=y HTTP/1.1" 200 -
LOCALBUCKET_LINE = re.compile(r'\[INFO\]: \S+ "([A-Z]+) (\S+) HTTP/[0-9.]+" (\d{3}) ')


def read_localbucket_log(path, start):
    """The requests localbucket logged after byte `start`, as read_log's records (method, path,
    query, status; its log has no headers, sizes or times: `range` is a placeholder set when the
    answer was 206 Partial Content, `copy` is always false)."""
    with open(path, errors="replace") as f:
        f.seek(start)
        text = f.read()
    out = []
    for line in text.splitlines():
        m = LOCALBUCKET_LINE.search(line)
        if m:
            target = urllib.parse.urlsplit(m.group(2))
            out.append({"method": m.group(1), "path": urllib.parse.unquote(target.path),
                        "query": target.query, "range": "bytes=?" if m.group(3) == "206" else None,
                        "copy": False, "status": int(m.group(3))})
    return out


def empty_prefix(s3, bucket, prefix, bulk=True, jobs=16, uploads=None):
    """Delete every object under `prefix` and (uploads, by default = bulk) abort every multipart
    upload there. bulk=False (servers without DeleteObjects, such as localbucket): one DELETE per
    object, `jobs` at once. uploads=False (servers without ListMultipartUploads, such as localbucket
    and s3s-fs): unfinished uploads are left alone."""
    if uploads is None:
        uploads = bulk
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [{"Key": o["Key"]} for o in page.get("Contents", [])]
    if bulk:
        for i in range(0, len(keys), 1000):
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys[i:i + 1000]})
    else:
        with concurrent.futures.ThreadPoolExecutor(jobs) as ex:
            for f in [ex.submit(s3.delete_object, Bucket=bucket, Key=k["Key"]) for k in keys]:
                f.result()
    if not uploads:
        return
    for u in s3.list_multipart_uploads(Bucket=bucket, Prefix=prefix).get("Uploads", []):
        s3.abort_multipart_upload(Bucket=bucket, Key=u["Key"], UploadId=u["UploadId"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--csv", required=True)
    ap.add_argument("--rows", type=int, required=True)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/zoopipectl"))
    ap.add_argument("--schema", default=os.path.join(HERE, "users.schema.json"))
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--results", default=os.path.join(HERE, "RESULTS.md"))
    ap.add_argument("--command-line", default="bench/s3.sh")
    a = ap.parse_args()
    if not os.access(a.bin, os.X_OK):
        raise SystemExit(f"s3: {a.bin} missing; build with `cargo build --release -p zoopipectl`")
    import boto3

    data = os.path.dirname(os.path.abspath(a.csv))
    work = tempfile.mkdtemp(prefix="s3-", dir=data)
    endpoint, reqlog, stop_server = start_logged_moto(a.python, work)
    try:
        env = dict(os.environ, AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="testing",
                   AWS_SECRET_ACCESS_KEY="testing", AWS_REGION="us-east-1")
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
        s3.create_bucket(Bucket=BUCKET)
        in_bytes = os.path.getsize(a.csv)
        t0 = time.perf_counter()
        s3.upload_file(a.csv, BUCKET, "users.csv")
        print(f"uploaded {in_bytes / 1e6:.1f} MB to s3://{BUCKET}/users.csv in {time.perf_counter() - t0:.1f}s",
              flush=True)

        def empty_out():
            empty_prefix(s3, BUCKET, "out/")

        report = os.path.join(work, "report.json")
        s3_cmd = [a.bin, "run", "--input", f"s3://{BUCKET}/users.csv", "--output", f"s3://{BUCKET}/out/",
                  "--format", "parquet", "--compression", "zstd", "--schema", rel(a.schema),
                  "--workers", str(a.workers), "--quiet", "--report", report]
        local_out = os.path.join(work, "local_out")
        local_cmd = [a.bin, "run", "--input", rel(a.csv), "--output", rel(local_out) + "/",
                     "--format", "parquet", "--compression", "zstd", "--schema", rel(a.schema),
                     "--workers", str(a.workers), "--quiet"]

        runs = []
        print("== " + " ".join(f"{k}={env[k]}" for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID",
                                                         "AWS_SECRET_ACCESS_KEY", "AWS_REGION"))
              + " " + " ".join([rel(a.bin)] + s3_cmd[1:]), flush=True)
        for i in range(a.repeat):
            empty_out()
            time.sleep(0.3)  # let the log catch up with the cleanup requests
            mark = os.path.getsize(reqlog)
            rc, wall, out, err = timed(s3_cmd, env)
            time.sleep(0.3)
            reqs = read_log(reqlog, mark)
            if rc != 0:
                print(f"   run {i + 1}: FAILED (exit {rc}) after {wall:.2f}s\n   | "
                      + "\n   | ".join(err.strip().splitlines()[-30:]))
                break
            with open(report) as f:
                rep = json.load(f)
            runs.append({"wall": wall, "reqs": reqs, "report": rep})
            print(f"   run {i + 1}: {wall:.2f}s, {len(reqs)} requests, read/valid/invalid "
                  f"{rep['total_processed']}/{rep['total_valid']}/{rep['total_errors']}", flush=True)

        local = []
        print("== local: " + " ".join([rel(a.bin)] + local_cmd[1:]), flush=True)
        for i in range(a.repeat):
            shutil.rmtree(local_out, ignore_errors=True)
            rc, wall, out, err = timed(local_cmd, None)
            if rc != 0:
                print(f"   run {i + 1}: FAILED (exit {rc})\n   | " + "\n   | ".join(err.strip().splitlines()[-30:]))
                break
            local.append(wall)
            print(f"   run {i + 1}: {wall:.2f}s", flush=True)
        shutil.rmtree(local_out, ignore_errors=True)
    finally:
        stop_server()
    if not runs:
        shutil.rmtree(work, ignore_errors=True)
        return 1

    # Request mix: from the run with the median wall time (the counts should not vary).
    med = sorted(runs, key=lambda r: r["wall"])[len(runs) // 2]
    by = collections.OrderedDict((k, {"n": 0, "in": 0, "out": 0}) for k in ORDER)
    for r in med["reqs"]:
        c = by[classify(r)]
        c["n"] += 1
        c["in"] += r.get("in") or 0
        c["out"] += r.get("out") or 0
    bad = [r for r in med["reqs"] if (r.get("status") or 0) >= 400]
    mixes = {tuple((k, v["n"]) for k, v in by.items())}
    for r in runs:
        cnt = collections.Counter(classify(x) for x in r["reqs"])
        mixes.add(tuple((k, cnt.get(k, 0)) for k in ORDER))
    read_bytes = sum(v["out"] for k, v in by.items() if k.startswith("GET"))
    written = sum(v["in"] for k, v in by.items() if k in ("PUT part", "PUT object"))
    read_reqs = sum(v["n"] for k, v in by.items() if k in ("GET ranged", "GET whole", "HEAD", "LIST"))
    write_reqs = sum(v["n"] for k, v in by.items()
                     if k in ("PUT object", "CreateMultipartUpload", "PUT part", "CompleteMultipartUpload",
                              "AbortMultipartUpload", "COPY", "DELETE"))
    rg, pp = by["GET ranged"], by["PUT part"]
    part_sizes = [r["in"] for r in med["reqs"] if classify(r) == "PUT part"]
    range_sizes = [r["out"] for r in med["reqs"] if classify(r) == "GET ranged"]
    rep = med["report"]
    # Keep the median run's request log, and say what each write request was for.
    kept = os.path.join(data, f"s3_requests_{a.rows}.jsonl")
    with open(kept, "w") as f:
        for r in med["reqs"]:
            f.write(json.dumps(dict(r, op=classify(r))) + "\n")
    objects = collections.OrderedDict()
    for r in med["reqs"]:
        op = classify(r)
        if op in ("GET ranged", "GET whole", "HEAD", "LIST"):
            continue
        o = objects.setdefault(r["path"], collections.Counter())
        o[op] += 1
        o["bytes"] += r.get("in") or 0
    writes = [f"`{path}`: " + ", ".join(f"{k} {v:,}" for k, v in o.items()) for path, o in objects.items()]
    print("\nwrites by object (median run):\n  " + "\n  ".join(writes))
    s3_wall = statistics.median(r["wall"] for r in runs)
    local_wall = statistics.median(local) if local else None

    t1 = ["| request | count | bytes sent by zoopipectl | bytes received | avg size |",
          "|---|---:|---:|---:|---:|"]
    for k, v in by.items():
        if v["n"]:
            size = v["out"] if k.startswith("GET") else v["in"]
            avg = size / v["n"]
            avg_s = f"{avg / 2**20:.2f} MiB" if avg >= 2**20 else f"{avg:,.0f} B"
            t1.append(f"| {k} | {v['n']} | {v['in']:,} | {v['out']:,} | {avg_s} |")
    t1.append(f"| **all** | {sum(v['n'] for v in by.values())} | {sum(v['in'] for v in by.values()):,} "
              f"| {sum(v['out'] for v in by.values()):,} | |")
    gb_r, gb_w = read_bytes / 1e9, written / 1e9
    t2 = ["| metric | value |", "|---|---:|",
          f"| input object | {in_bytes:,} B |",
          f"| bytes downloaded (GET bodies) | {read_bytes:,} B ({read_bytes / in_bytes:.3f}x the input) |",
          f"| bytes uploaded (PUT bodies) | {written:,} B (report: bytes_written {rep.get('bytes_written', 0):,}) |",
          f"| read requests (GET+HEAD+LIST) per GB read | {read_reqs / gb_r:.1f} |" if gb_r else "| read requests per GB | - |",
          f"| write requests (Create+PUT part+Complete+PUT+other writes) per GB written | {write_reqs / gb_w:.1f} |"
          if gb_w else "| write requests per GB | - |",
          f"| ranged GETs | {rg['n']}, avg {rg['out'] / max(rg['n'], 1) / 2**20:.2f} MiB, "
          f"min {min(range_sizes, default=0) / 2**20:.2f}, max {max(range_sizes, default=0) / 2**20:.2f} MiB |",
          f"| multipart parts | {pp['n']}, avg {pp['in'] / max(pp['n'], 1) / 2**20:.2f} MiB, "
          f"min {min(part_sizes, default=0) / 2**20:.2f}, max {max(part_sizes, default=0) / 2**20:.2f} MiB |",
          f"| failed requests (status >= 400) | {len(bad)} |",
          f"| wall, S3 (moto on loopback), median of {len(runs)} | {s3_wall:.2f} s "
          f"({a.rows / s3_wall / 1e6:.3f} M rows/s) |",
          f"| wall, local files, median of {len(local)} | "
          + (f"{local_wall:.2f} s ({a.rows / local_wall / 1e6:.3f} M rows/s); S3 / local = {s3_wall / local_wall:.2f}x |"
             if local_wall else "n/a |"),
          f"| read / valid / invalid | {rep['total_processed']} / {rep['total_valid']} / {rep['total_errors']} |"]
    print()
    print("\n".join(t1))
    print()
    print("\n".join(t2))
    warn = []
    if len(mixes) > 1:
        warn.append("the request mix differed between runs: " + "; ".join(
            ", ".join(f"{k} {n}" for k, n in m if n) for m in mixes))
    if bad:
        warn.append("failed requests: " + "; ".join(
            f"{r['method']} {r['path']}?{r['query']} -> {r['status']}" for r in bad[:10]))
    for w in warn:
        print("WARNING: " + w)
    git = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip()
    body = ["## S3 efficiency (`bench/s3.sh`)", "",
            f"- command: `{a.command_line}`",
            f"- date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M:%S UTC')}; "
            f"nproc {os.cpu_count()}; repo at {git}",
            f"- input: `{rel(a.csv)}` ({a.rows} rows, {in_bytes / 1e6:.1f} MB) uploaded to "
            f"`s3://{BUCKET}/users.csv` on moto (`bench/s3_server.py`, loopback, in-memory)",
            f"- timed: `AWS_ENDPOINT_URL={'http://127.0.0.1:PORT'} AWS_ACCESS_KEY_ID=testing "
            f"AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 zoopipectl run --input s3://{BUCKET}/users.csv "
            f"--output s3://{BUCKET}/out/ --format parquet --compression zstd --schema bench/users.schema.json "
            f"--workers {a.workers}`; local: the same with `--input {rel(a.csv)} --output <dir>/`",
            f"- zoopipectl: `{rel(a.bin)}`{binary_note(a.bin)}",
            f"- requests: every request moto answered during the run with the median wall time "
            f"(of {len(runs)}), classified by method, query and headers",
            "", "\n".join(t1), "", "\n".join(t2), "",
            f"Write requests by object (median run; full log: `{rel(kept)}`, gitignored):", ""]
    body += [f"- {w}" for w in writes]
    if warn:
        body += [""] + [f"- WARNING: {w}" for w in warn]
    replace_section(a.results, "s3", "\n".join(body))
    print(f"\nwrote {rel(a.results)}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
