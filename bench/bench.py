#!/usr/bin/env python3
"""Benchmark driver behind bench/run.sh (run that instead; it sets up the venv,
the build and the data, then calls this).

Each run is one fresh process, started from here and reaped with os.wait4(),
which gives the wall time and the peak RSS of the whole process tree: Linux
reports max(RSS of the process, peak RSS of every descendant it waited for),
the same number GNU `time -v` prints as "Maximum resident set size".
"""
import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PEERS = ("duckdb", "polars")


def rel(p):
    return os.path.relpath(p, ROOT)


def command(engine, threads, a, out_dir):
    if engine == "zoopipe":
        return [a.zoopipe_bin, "run", "--input", rel(a.input), "--output", rel(out_dir) + "/",
                "--format", "parquet", "--compression", "zstd", "--schema", rel(a.schema), "--workers", str(threads),
                "--quiet", "--report", rel(a.report)]
    return [a.python, rel(os.path.join(HERE, "peers.py")), "--engine", engine,
            "--threads", str(threads), "--input", rel(a.input), "--out-dir", rel(out_dir)]


def timed(cmd):
    """Run cmd from the repo root; return (rc, wall_s, peak_rss_kib, stdout, stderr)."""
    out_f = open(os.path.join(a_tmp, "stdout"), "w+b")
    err_f = open(os.path.join(a_tmp, "stderr"), "w+b")
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=out_f, stderr=err_f, stdin=subprocess.DEVNULL)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    out_f.seek(0)
    err_f.seek(0)
    out, err = out_f.read().decode(errors="replace"), err_f.read().decode(errors="replace")
    out_f.close()
    err_f.close()
    return p.returncode, wall, ru.ru_maxrss, out, err


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def warm(path):
    # Read the input once so every engine starts from the same (warm) page cache.
    with open(path, "rb") as f:
        while f.read(16 << 20):
            pass


def peer_counts(out):
    for line in reversed(out.strip().splitlines()):
        try:
            d = json.loads(line)
        except ValueError:
            continue
        if isinstance(d, dict) and "rows_read" in d:
            return d
    return None


def main():
    global a_tmp
    ap = argparse.ArgumentParser()
    ap.add_argument("--input", required=True)
    ap.add_argument("--rows", type=int, required=True)
    ap.add_argument("--threads", default="1 2")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--engines", default="zoopipe duckdb polars")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--zoopipe-bin", default=os.path.join(ROOT, "target/release/zoopipectl"))
    ap.add_argument("--schema", default=os.path.join(HERE, "users.schema.json"))
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--results", default=os.path.join(HERE, "RESULTS.md"))
    ap.add_argument("--command-line", default="", help="the command to quote in RESULTS.md")
    a = ap.parse_args()
    data_dir = os.path.dirname(os.path.abspath(a.input))
    a.report = os.path.join(data_dir, "zoopipe_report.json")
    a_tmp = os.path.join(data_dir, ".runlogs")
    os.makedirs(a_tmp, exist_ok=True)
    threads = [int(t) for t in a.threads.split()]
    engines = a.engines.split()
    in_bytes = os.path.getsize(a.input)
    have_ours = "zoopipe" in engines and os.access(a.zoopipe_bin, os.X_OK)
    if "zoopipe" in engines and not have_ours:
        print(f"NOTE: {rel(a.zoopipe_bin)} not found or not executable; zoopipe rows will say 'n/a'")

    results = {}   # (engine, threads) -> dict
    counts = {}    # (engine, threads) -> (read, valid, invalid)
    warnings = []
    warm(a.input)
    load = os.getloadavg()[0]
    if load > 0.5:
        msg = (f"WARNING: 1-min load average was {load:.2f} before the runs: "
               "something else is using the CPU, timings are not clean")
        print(msg, flush=True)
        warnings.append(msg)
    for t in threads:
        for e in engines:
            out_dir = os.path.join(data_dir, f"out_{e}")
            walls, rsss, failed = [], [], None
            if e == "zoopipe" and not have_ours:
                results[(e, t)] = {"failed": "binary missing"}
                continue
            cmd = command(e, t, a, out_dir)
            print(f"== {e} threads={t}: {shlex.join(cmd)}", flush=True)
            for i in range(a.repeat):
                shutil.rmtree(out_dir, ignore_errors=True)
                if e == "zoopipe":
                    try:
                        os.remove(a.report)
                    except FileNotFoundError:
                        pass
                else:
                    os.makedirs(out_dir, exist_ok=True)
                rc, wall, rss, out, err = timed(cmd)
                if rc != 0:
                    failed = f"exit {rc}"
                    print(f"   run {i + 1}: FAILED (exit {rc}) after {wall:.2f}s; stderr:")
                    print("   | " + "\n   | ".join((err.strip() or "(empty)").splitlines()[-40:]))
                    break
                walls.append(wall)
                rsss.append(rss)
                c = None
                if e == "zoopipe":
                    try:
                        with open(a.report) as f:
                            r = json.load(f)
                        c = (int(r["total_processed"]), int(r["total_valid"]), int(r["total_errors"]))
                    except (OSError, ValueError, KeyError, TypeError) as ex:
                        msg = f"WARNING: zoopipe threads={t}: cannot read counts from {rel(a.report)}: {ex}"
                        print("   " + msg)
                        warnings.append(msg)
                else:
                    d = peer_counts(out)
                    if d is None:
                        failed = "no JSON line"
                        print(f"   run {i + 1}: no JSON line on stdout; stderr:\n   | " + err.strip())
                        break
                    c = (d["rows_read"], d["rows_valid"], d["rows_invalid"])
                if c is not None:
                    counts[(e, t)] = c
                    if c[1] + c[2] != c[0]:
                        msg = f"WARNING: {e} threads={t}: valid {c[1]} + invalid {c[2]} != read {c[0]}"
                        print("   " + msg)
                        warnings.append(msg)
                print(f"   run {i + 1}: {wall:.2f}s, peak RSS {rss / 1024:.0f} MiB"
                      + (f", read/valid/invalid {c[0]}/{c[1]}/{c[2]}" if c else ""), flush=True)
            if not a.keep:
                shutil.rmtree(out_dir, ignore_errors=True)
            if failed and not walls:
                results[(e, t)] = {"failed": failed}
                continue
            med = statistics.median(walls)
            results[(e, t)] = {"wall": med, "rss": max(rsss), "runs": len(walls),
                               "failed": failed}

    # Counts check: every engine must agree with every other on this input.
    ref = {}
    for (e, t), c in counts.items():
        ref.setdefault(c, []).append(f"{e}@{t}")
    if len(ref) > 1:
        msg = "WARNING: engines disagree on counts (read/valid/invalid): " + "; ".join(
            f"{'/'.join(map(str, c))} <- {', '.join(who)}" for c, who in ref.items())
        warnings.append(msg)
    if counts and a.rows not in {c[0] for c in counts.values()}:
        warnings.append(f"WARNING: rows generated {a.rows} != rows read by any engine "
                        f"({sorted({c[0] for c in counts.values()})})")

    mb = in_bytes / 1e6
    lines = ["| engine | threads | median wall s | rows/s | MB/s | peak RSS MiB | vs best peer | read / valid / invalid |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for t in threads:
        best_peer = max((a.rows / results[(p, t)]["wall"] for p in PEERS
                         if "wall" in results.get((p, t), {})), default=None)
        for e in engines:
            r = results[(e, t)]
            c = counts.get((e, t))
            cs = f"{c[0]} / {c[1]} / {c[2]}" if c else "-"
            if "wall" not in r:
                lines.append(f"| {e} | {t} | n/a ({r['failed']}) | | | | | {cs} |")
                continue
            rps = a.rows / r["wall"]
            ratio = f"{rps / best_peer:.2f}x" if best_peer else "-"
            note = f" ({r['runs']} of {a.repeat} runs; then {r['failed']})" if r["failed"] else ""
            lines.append(f"| {e} | {t} | {r['wall']:.2f}{note} | {rps / 1e6:.3f} M | {mb / r['wall']:.1f} "
                         f"| {r['rss'] / 1024:.0f} | {ratio} | {cs} |")
    table = "\n".join(lines)
    print()
    print(table)
    for w in warnings:
        print(w)

    ncpu = os.cpu_count()
    try:
        ncpu = int(subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip())
    except (OSError, ValueError):
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kib = int(f.readline().split()[1])
        mem = f", {kib / 1024 / 1024:.1f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    vers = subprocess.run([a.python, "-c", "import duckdb, polars, sys; "
                           "print(f'Python {sys.version.split()[0]}, duckdb {duckdb.__version__}, "
                           "polars {polars.__version__}')"], capture_output=True, text=True).stdout.strip()
    git = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip() or "no commit"
    with open(a.results, "w") as f:
        f.write("# ZooPipe benchmark results\n\n")
        f.write(f"- command: `{a.command_line or 'bench/run.sh'}`\n")
        f.write(f"- date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M:%S UTC')}\n")
        f.write(f"- machine: nproc {ncpu}, {cpu_model()}{mem}, {platform.system()} {platform.release()}\n")
        f.write(f"- software: {vers}; repo at {git}\n")
        f.write(f"- input: `{rel(a.input)}`, {a.rows} rows, {in_bytes / 1e6:.1f} MB; warm page cache\n")
        f.write(f"- {a.repeat} runs per cell: median wall time, max peak RSS (whole process tree)\n\n")
        f.write(table + "\n")
        if warnings:
            f.write("\n" + "\n".join(f"- {w}" for w in warnings) + "\n")
        f.write("\nSee bench/README.md for what each column means.\n")
    print(f"\nwrote {rel(a.results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
