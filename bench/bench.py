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


# Scenarios: name -> (input kind, validate with the schema?). csv_errors is the csv job on
# another CSV (--csv-errors: same generator, seed and N, --errors-rate invalid rows, 25 %).
SCENARIOS = {
    "csv": ("csv", True),
    "jsonl": ("jsonl", True),
    "parquet": ("parquet", True),
    "noschema": ("csv", False),
    "csv_errors": ("csv_errors", True),
}
LABELS = {
    "csv": "CSV→Parquet",
    "jsonl": "JSONL→Parquet",
    "parquet": "Parquet→Parquet",
    "noschema": "CSV→Parquet, no schema",
    "csv_errors": "CSV→Parquet, 25 % invalid",  # set from --errors-rate in main()
}
# The inputs holding the same rows (the clean CSV and its JSONL / Parquet forms): every
# validation scenario on them must give the same counts. csv_errors holds other rows.
SAME_ROWS = ("csv", "jsonl", "parquet")
# Scenario csv_errors: our rows/s there over our rows/s in csv, at the same thread count.
ERRORS_TARGET = 0.7


def command(engine, threads, a, scenario, out_dir):
    kind, validate = SCENARIOS[scenario]
    inp = a.inputs[kind]
    if engine == "zoopipe":
        cmd = [a.zoopipe_bin, "run", "--input", rel(inp), "--output", rel(out_dir) + "/",
               "--format", "parquet", "--compression", "zstd"]
        if validate:
            cmd += ["--schema", rel(a.schema)]
        return cmd + ["--workers", str(threads), "--quiet", "--report", rel(a.report)]
    cmd = [a.python, rel(os.path.join(HERE, "peers.py")), "--engine", engine,
           "--threads", str(threads), "--input", rel(inp), "--out-dir", rel(out_dir)]
    return cmd + ([] if validate else ["--no-schema"])


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


def ram_note():
    """", N GiB RAM" for the machine line ("" if unknown)."""
    try:
        with open("/proc/meminfo") as f:
            return f", {int(f.readline().split()[1]) / 1024 / 1024:.1f} GiB RAM"
    except (OSError, ValueError, IndexError):
        return ""


def versions(python, modules):
    """"Python X, mod Y, ..." as the venv's interpreter reports them."""
    code = ("import sys, importlib; print(', '.join([f'Python {sys.version.split()[0]}'] + "
            f"[m + ' ' + importlib.import_module(m).__version__ for m in {list(modules)!r}]))")
    return subprocess.run([python, "-c", code], capture_output=True, text=True).stdout.strip()


def print_report(lines, verdicts, warnings):
    """Print a bench's table, its verdict lines and its warnings; return the table's text."""
    table = "\n".join(lines)
    print()
    print(table)
    print()
    print("\n".join(verdicts))
    for w in warnings:
        print(w)
    return table


def git_head():
    return subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip() or "no commit"


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


def counts_of(e, t, a, out, err):
    """(read, valid, invalid) reported by one run, or (None, why)."""
    if e == "zoopipe":
        try:
            with open(a.report) as f:
                r = json.load(f)
            return (int(r["total_processed"]), int(r["total_valid"]), int(r["total_errors"])), None
        except (OSError, ValueError, KeyError, TypeError) as ex:
            return None, f"cannot read counts from {rel(a.report)}: {ex}"
    d = peer_counts(out)
    if d is None:
        return None, "no JSON line on stdout"
    return (d["rows_read"], d["rows_valid"], d["rows_invalid"]), None


def run_cell(e, t, a, scenario, data_dir, warnings):
    """Run one engine `repeat` times; return (result dict, counts or None)."""
    out_dir = os.path.join(data_dir, f"out_{e}")
    walls, rsss, failed, c = [], [], None, None
    cmd = command(e, t, a, scenario, out_dir)
    print(f"== {scenario} {e} threads={t}: {shlex.join(cmd)}", flush=True)
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
        got, why = counts_of(e, t, a, out, err)
        if got is None:
            msg = f"WARNING: {scenario} {e} threads={t}: {why}"
            print("   " + msg + ("; stderr:\n   | " + err.strip() if err.strip() else ""))
            warnings.append(msg)
            if e != "zoopipe":
                failed = why
                break
        else:
            if c is not None and got != c:
                msg = f"WARNING: {scenario} {e} threads={t}: counts changed between runs: {c} then {got}"
                print("   " + msg)
                warnings.append(msg)
            c = got
            if c[1] + c[2] != c[0]:
                msg = f"WARNING: {scenario} {e} threads={t}: valid {c[1]} + invalid {c[2]} != read {c[0]}"
                print("   " + msg)
                warnings.append(msg)
        walls.append(wall)
        rsss.append(rss)
        print(f"   run {i + 1}: {wall:.2f}s, peak RSS {rss / 1024:.0f} MiB"
              + (f", read/valid/invalid {c[0]}/{c[1]}/{c[2]}" if c else ""), flush=True)
    if not a.keep:
        shutil.rmtree(out_dir, ignore_errors=True)
    if failed and not walls:
        return {"failed": failed}, c
    return {"wall": statistics.median(walls), "rss": max(rsss), "runs": len(walls),
            "failed": failed}, c


def main():
    global a_tmp
    ap = argparse.ArgumentParser()
    ap.add_argument("--csv", required=True)
    ap.add_argument("--jsonl", help="the same rows as JSONL (scenario jsonl)")
    ap.add_argument("--parquet", help="the same rows as Parquet (scenario parquet)")
    ap.add_argument("--csv-errors", help="the error-heavy CSV (scenario csv_errors)")
    ap.add_argument("--errors-rate", type=float, default=0.25,
                    help="the invalid rate --csv-errors was generated with (for the label)")
    ap.add_argument("--scenarios", default="csv jsonl parquet noschema",
                    help="any of: " + " ".join(SCENARIOS))
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
    a.inputs = {"csv": a.csv, "jsonl": a.jsonl, "parquet": a.parquet, "csv_errors": a.csv_errors}
    LABELS["csv_errors"] = f"CSV→Parquet, {a.errors_rate * 100:g} % invalid"
    scenarios = a.scenarios.split()
    for sc in scenarios:
        if sc not in SCENARIOS:
            ap.error(f"unknown scenario {sc!r}; known: {' '.join(SCENARIOS)}")
        if not a.inputs[SCENARIOS[sc][0]]:
            ap.error(f"scenario {sc} needs --{SCENARIOS[sc][0].replace('_', '-')}")
    data_dir = os.path.dirname(os.path.abspath(a.csv))
    a.report = os.path.join(data_dir, "zoopipe_report.json")
    a_tmp = os.path.join(data_dir, ".runlogs")
    os.makedirs(a_tmp, exist_ok=True)
    threads = [int(t) for t in a.threads.split()]
    engines = a.engines.split()
    have_ours = "zoopipe" in engines and os.access(a.zoopipe_bin, os.X_OK)
    if "zoopipe" in engines and not have_ours:
        print(f"NOTE: {rel(a.zoopipe_bin)} not found or not executable; zoopipe rows will say 'n/a'")

    results = {}   # (scenario, threads, engine) -> dict
    counts = {}    # (scenario, threads, engine) -> (read, valid, invalid)
    warnings = []
    loads = []
    for sc in scenarios:
        inp = a.inputs[SCENARIOS[sc][0]]
        warm(inp)
        load = os.getloadavg()[0]
        loads.append(load)
        if load > 0.5:
            msg = (f"WARNING: 1-min load average was {load:.2f} before scenario {sc}: "
                   "something else is using the CPU, timings are not clean")
            print(msg, flush=True)
            warnings.append(msg)
        for t in threads:
            for e in engines:
                if e == "zoopipe" and not have_ours:
                    results[(sc, t, e)] = {"failed": "binary missing"}
                    continue
                results[(sc, t, e)], c = run_cell(e, t, a, sc, data_dir, warnings)
                if c is not None:
                    counts[(sc, t, e)] = c

    # Counts check: within a validation scenario every engine and thread count must agree,
    # and read must be the number of rows generated; without a schema, read = valid = rows.
    for sc in scenarios:
        ref = {}
        for (s2, t, e), c in counts.items():
            if s2 == sc:
                ref.setdefault(c, []).append(f"{e}@{t}")
        if len(ref) > 1:
            warnings.append(f"WARNING: {sc}: engines disagree on counts (read/valid/invalid): " + "; ".join(
                f"{'/'.join(map(str, c))} <- {', '.join(who)}" for c, who in ref.items()))
        for c, who in ref.items():
            if c[0] != a.rows:
                warnings.append(f"WARNING: {sc}: {', '.join(who)} read {c[0]} rows, {a.rows} generated")
            if not SCENARIOS[sc][1] and c[2] != 0:
                warnings.append(f"WARNING: {sc}: {', '.join(who)} rejected {c[2]} rows without a schema")
    if len({counts[k] for k in counts if SCENARIOS[k[0]][1] and SCENARIOS[k[0]][0] in SAME_ROWS}) > 1:
        warnings.append("WARNING: the validation scenarios do not all give the same counts "
                        "(the JSONL and Parquet files hold the CSV's rows)")

    lines = ["| scenario | engine | threads | median wall s | MB/s | rows/s | peak RSS MiB "
             "| vs best peer | read / valid / invalid |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for sc in scenarios:
        mb = os.path.getsize(a.inputs[SCENARIOS[sc][0]]) / 1e6
        for t in threads:
            best_peer = max((a.rows / results[(sc, t, p)]["wall"] for p in PEERS
                             if "wall" in results.get((sc, t, p), {})), default=None)
            for e in engines:
                r = results[(sc, t, e)]
                c = counts.get((sc, t, e))
                cs = f"{c[0]} / {c[1]} / {c[2]}" if c else "-"
                if "wall" not in r:
                    lines.append(f"| {LABELS[sc]} | {e} | {t} | n/a ({r['failed']}) | | | | | {cs} |")
                    continue
                rps = a.rows / r["wall"]
                ratio = f"{rps / best_peer:.2f}x" if best_peer else "-"
                note = f" ({r['runs']} of {a.repeat} runs; then {r['failed']})" if r["failed"] else ""
                lines.append(f"| {LABELS[sc]} | {e} | {t} | {r['wall']:.2f}{note} | {mb / r['wall']:.1f} "
                             f"| {rps / 1e6:.3f} M | {r['rss'] / 1024:.0f} | {ratio} | {cs} |")
    table = "\n".join(lines)

    # Error-heavy vs clean, ours only: rows/s of csv_errors over rows/s of csv at each thread
    # count (both read a.rows rows), when both scenarios ran in this invocation.
    ratio_lines = []
    if "csv_errors" in scenarios and "zoopipe" in engines:
        head = (f"zoopipe, error-heavy / clean throughput (rows/s of {LABELS['csv_errors']} ÷ rows/s "
                f"of {LABELS['csv']}, same thread count); target ≥ {ERRORS_TARGET}× the clean-input "
                "throughput:")
        if "csv" not in scenarios:
            ratio_lines = [head, "- not computed: scenario csv did not run in this invocation "
                                 "(run `--scenarios \"csv csv_errors\"`)"]
        else:
            ratio_lines = [head]
            for t in threads:
                clean, heavy = results[("csv", t, "zoopipe")], results[("csv_errors", t, "zoopipe")]
                if "wall" not in clean or "wall" not in heavy:
                    why = "; ".join(f"{sc}: {r['failed']}" for sc, r in
                                    (("csv", clean), ("csv_errors", heavy)) if "wall" not in r)
                    ratio_lines.append(f"- threads {t}: n/a ({why})")
                    continue
                c_rps, h_rps = a.rows / clean["wall"], a.rows / heavy["wall"]
                ratio = h_rps / c_rps
                verdict = "meets the target" if ratio >= ERRORS_TARGET else "BELOW the target"
                ratio_lines.append(f"- threads {t}: {h_rps / 1e6:.3f} M / {c_rps / 1e6:.3f} M rows/s "
                                   f"= {ratio:.2f}x ({verdict} of {ERRORS_TARGET}x)")

    print()
    print(table)
    if ratio_lines:
        print()
        print("\n".join(ratio_lines))
    for w in warnings:
        print(w)

    ncpu = os.cpu_count()
    try:
        ncpu = int(subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip())
    except (OSError, ValueError):
        pass
    mem = ram_note()
    vers = versions(a.python, ["duckdb", "polars"])
    git = git_head()
    inputs = "; ".join(f"`{rel(a.inputs[k])}` {os.path.getsize(a.inputs[k]) / 1e6:.1f} MB"
                       for k in ("csv", "jsonl", "parquet", "csv_errors")
                       if a.inputs[k] and any(SCENARIOS[sc][0] == k for sc in scenarios))
    body = [
        "## Engines side by side (`bench/run.sh`)", "",
        f"- command: `{a.command_line or 'bench/run.sh'}`",
        f"- date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M:%S UTC')}",
        f"- machine: nproc {ncpu}, {cpu_model()}{mem}, {platform.system()} {platform.release()}",
        f"- software: {vers}; repo at {git}",
        f"- zoopipectl: `{rel(a.zoopipe_bin)}`{binary_note(a.zoopipe_bin)}",
        f"- inputs ({a.rows} rows each, warm page cache): {inputs}",
        f"- {a.repeat} runs per cell: median wall time, max peak RSS (whole process tree); "
        f"1-min load average before each scenario: {', '.join(f'{x:.2f}' for x in loads)}",
        "",
        table,
    ]
    if ratio_lines:
        body += [""] + ratio_lines
    if warnings:
        body += [""] + [f"- {w}" for w in warnings]
    body += ["", "See bench/README.md for what each column means."]
    sys.path.insert(0, HERE)
    from results_section import replace_section
    replace_section(a.results, "table", "\n".join(body), at_top=True)
    print(f"\nwrote {rel(a.results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
