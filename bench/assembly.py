#!/usr/bin/env python3
"""Single-file output assembly benchmark behind bench/assembly.sh (run that: it sets up moto
and the data).

Starts moto's S3 server on loopback with the request log of bench/s3_server.py, uploads the
CSV to s3://bench/users.csv, then for each output format times

    zoopipectl run --input s3://bench/users.csv --output s3://bench/out/users.FORMAT ...

twice: as shipped (the parts are assembled inside S3 with UploadPartCopy) and with
ZOOPIPE_S3_SERVER_SIDE_COPY=false (the parts stream through zoopipectl). From the request log
it counts what the merge moved: bytes downloaded from the staged parts, bytes uploaded into
the single object, UploadPartCopy requests, and the merge's span (first to last request of
the merge). Prints a markdown table and writes the `assembly` section of RESULTS.md.
"""
import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from results_section import replace_section  # noqa: E402
from s3 import (binary_note, classify, empty_prefix, read_log, rel, start_logged_moto,  # noqa: E402
                timed)

BUCKET = "bench"


def merge_traffic(reqs, target):
    """What the merge moved, from the requests of one run: writes to the single object and
    reads of the staged output parts (`part-*`; the staged error parts, `errors-*.jsonl`, are
    rewritten at commit either way and are not the merge's)."""
    final = f"/{BUCKET}/{target}"
    ext = os.path.splitext(target)[1]
    merge = [r for r in reqs
             if (r["path"] == final and r["method"] != "HEAD")
             or ("_zoopipe_staging" in r["path"] and os.path.basename(r["path"]).startswith("part-")
                 and r["path"].endswith(ext) and r["method"] == "GET")]
    down = sum(r.get("out") or 0 for r in merge if r["method"] == "GET")
    up = sum(r.get("in") or 0 for r in merge if r["path"] == final and classify(r) == "PUT part")
    copies = sum(1 for r in merge if r["path"] == final and classify(r) == "COPY")
    span = (max(r["t"] + r["dt"] for r in merge) - min(r["t"] for r in merge)) if merge else 0.0
    return {"down": down, "up": up, "copies": copies, "span": span}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--csv", required=True)
    ap.add_argument("--rows", type=int, required=True)
    ap.add_argument("--formats", default="parquet csv")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--partition-size", default="32MiB")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/zoopipectl"))
    ap.add_argument("--schema", default=os.path.join(HERE, "users.schema.json"))
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--results", default=os.path.join(HERE, "RESULTS.md"))
    ap.add_argument("--command-line", default="bench/assembly.sh")
    a = ap.parse_args()
    if not os.access(a.bin, os.X_OK):
        raise SystemExit(f"assembly: {a.bin} missing; build with `cargo build --release -p zoopipectl`")
    import boto3

    data = os.path.dirname(os.path.abspath(a.csv))
    work = tempfile.mkdtemp(prefix="assembly-", dir=data)
    endpoint, reqlog, stop_server = start_logged_moto(a.python, work)
    rows_out = []
    try:
        base_env = dict(os.environ, AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="testing",
                        AWS_SECRET_ACCESS_KEY="testing", AWS_REGION="us-east-1")
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
        s3.create_bucket(Bucket=BUCKET)
        s3.upload_file(a.csv, BUCKET, "users.csv")
        in_bytes = os.path.getsize(a.csv)

        def empty_out():
            empty_prefix(s3, BUCKET, "out/")

        for fmt in a.formats.split():
            target = f"out/users.{fmt}"
            cmd = [a.bin, "run", "--input", f"s3://{BUCKET}/users.csv", "--output", f"s3://{BUCKET}/{target}",
                   "--schema", rel(a.schema), "--workers", str(a.workers),
                   "--partition-size", a.partition_size, "--quiet", "--json"]
            for mode, extra in (("inside S3 (UploadPartCopy)", {}),
                                ("streamed through zoopipectl", {"ZOOPIPE_S3_SERVER_SIDE_COPY": "false"})):
                env = dict(base_env, **extra)
                runs = []
                print(f"== {fmt}, {mode}: {' '.join(f'{k}={v}' for k, v in extra.items())} "
                      + " ".join([rel(a.bin)] + cmd[1:]), flush=True)
                for i in range(a.repeat):
                    empty_out()
                    time.sleep(0.3)
                    mark = os.path.getsize(reqlog)
                    rc, wall, out, err = timed(cmd, env)
                    time.sleep(0.3)
                    if rc != 0:
                        print(f"   run {i + 1}: FAILED (exit {rc})\n   | "
                              + "\n   | ".join(err.strip().splitlines()[-20:]))
                        break
                    report = json.loads(out)
                    traffic = merge_traffic(read_log(reqlog, mark), target)
                    size = s3.head_object(Bucket=BUCKET, Key=target)["ContentLength"]
                    runs.append(dict(traffic, wall=wall, size=size, tasks=report["partitions"]["total"]))
                    print(f"   run {i + 1}: {wall:.2f}s, merge {traffic['span']:.2f}s, "
                          f"down {traffic['down']:,} B, up {traffic['up']:,} B, {traffic['copies']} copies",
                          flush=True)
                if runs:
                    med = sorted(runs, key=lambda r: r["wall"])[len(runs) // 2]
                    rows_out.append((fmt, mode, statistics.median(r["wall"] for r in runs),
                                     statistics.median(r["span"] for r in runs), med))
    finally:
        stop_server()
        shutil.rmtree(work, ignore_errors=True)
    if not rows_out:
        return 1

    table = ["| output | merge | wall (median) | merge span (median) | parts | object | "
             "downloaded by the merge | uploaded by the merge | UploadPartCopy requests |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for fmt, mode, wall, span, med in rows_out:
        table.append(f"| users.{fmt} | {mode} | {wall:.2f} s | {span:.2f} s | {med['tasks']} | "
                     f"{med['size'] / 1e6:.1f} MB | {med['down'] / 1e6:.2f} MB | {med['up'] / 1e6:.2f} MB | "
                     f"{med['copies']} |")
    print()
    print("\n".join(table))
    git = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip()
    body = ["## Single-file assembly (`bench/assembly.sh`)", "",
            f"- command: `{a.command_line}`",
            f"- date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M:%S UTC')}; "
            f"nproc {os.cpu_count()}; repo at {git}",
            f"- input: `{rel(a.csv)}` ({a.rows} rows, {in_bytes / 1e6:.1f} MB) on moto (loopback, in-memory); "
            f"`zoopipectl run --input s3://{BUCKET}/users.csv --output s3://{BUCKET}/out/users.FORMAT "
            f"--schema bench/users.schema.json --workers {a.workers} --partition-size {a.partition_size}`, "
            f"{a.repeat} runs per row; the streamed rows set `ZOOPIPE_S3_SERVER_SIDE_COPY=false`",
            f"- zoopipectl: `{rel(a.bin)}`{binary_note(a.bin)}",
            "- merge traffic: writes to the single object plus GETs of the staged output parts, from "
            "the server's request log (the job's error rows, rewritten at commit either way, are not "
            "counted); span = first to last of those requests. moto copies in its own memory, so "
            "the span understates the gain against a real S3, where the streamed merge's bytes cross "
            "the network twice",
            "", "\n".join(table)]
    replace_section(a.results, "assembly", "\n".join(body))
    print(f"\nwrote {rel(a.results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
