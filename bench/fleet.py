#!/usr/bin/env python3
"""Fleet scale-out benchmark behind bench/fleet.sh (run that: it builds and makes the data).

Starts a throwaway single-node etcd and one zoopipe-coordinator on loopback, then for
each worker count N starts N `zoopipe-worker --slots 1` processes, submits the CSV ->
validated Parquet job `repeat` times with `zoopipectl submit JOB.yaml --wait --json`,
and stops the workers. Every process it starts is stopped on exit, also on error or
Ctrl-C. Prints a markdown table and writes it to the `fleet` section of RESULTS.md.

The timed span is the `zoopipectl submit --wait` process: submitting, planning,
scheduling, the tasks, the commit, until the report arrives. Workers are started
(and seen registered) before the clock starts.
"""
import argparse
import datetime
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from results_section import replace_section  # noqa: E402

PROCS = []  # (name, Popen), stopped in reverse order at exit


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


def wait_port(port, proc, what, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"fleet: {what} exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"fleet: {what} not listening on {port} after {timeout}s")


def start(name, cmd, log_path, env=None):
    f = open(log_path, "ab")
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         env=env, start_new_session=True)
    PROCS.append((name, p))
    return p


def stop(p, grace=10):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def stop_all():
    while PROCS:
        _, p = PROCS.pop()
        stop(p)


def vm_hwm_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def wait_registered(log_path, n_before, timeout=20):
    """Wait until the coordinator log shows one more worker registration (best effort)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with open(log_path, errors="replace") as f:
                if f.read().lower().count("register") > n_before:
                    return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def registrations(log_path):
    try:
        with open(log_path, errors="replace") as f:
            return f.read().lower().count("register")
    except OSError:
        return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--csv", required=True)
    ap.add_argument("--rows", type=int, required=True)
    ap.add_argument("--workers", default="1 2")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--bin-dir", default=os.path.join(ROOT, "target/release"))
    ap.add_argument("--schema", default=os.path.join(HERE, "users.schema.json"))
    ap.add_argument("--etcd", default=shutil.which("etcd") or "etcd")
    ap.add_argument("--embedded", action="store_true",
                    help="also time `zoopipectl run --workers N` on the same file, for comparison")
    ap.add_argument("--results", default=os.path.join(HERE, "RESULTS.md"))
    ap.add_argument("--command-line", default="bench/fleet.sh")
    a = ap.parse_args()
    ctl = os.path.join(a.bin_dir, "zoopipectl")
    coord = os.path.join(a.bin_dir, "zoopipe-coordinator")
    worker = os.path.join(a.bin_dir, "zoopipe-worker")
    for b in (ctl, coord, worker):
        if not os.access(b, os.X_OK):
            raise SystemExit(f"fleet: {b} missing; build with `cargo build --release --bins`")
    data = os.path.dirname(os.path.abspath(a.csv))
    work = tempfile.mkdtemp(prefix="fleet-", dir=data)
    out_dir = os.path.join(work, "out")
    logs = os.path.join(work, "logs")
    os.makedirs(logs)
    in_bytes = os.path.getsize(a.csv)

    # etcd + coordinator, once for all runs.
    ep, pp, cp = free_port(), free_port(), free_port()
    etcd = start("etcd", [a.etcd, "--name", "bench", "--data-dir", os.path.join(work, "etcd"),
                          "--listen-client-urls", f"http://127.0.0.1:{ep}",
                          "--advertise-client-urls", f"http://127.0.0.1:{ep}",
                          "--listen-peer-urls", f"http://127.0.0.1:{pp}",
                          "--initial-advertise-peer-urls", f"http://127.0.0.1:{pp}",
                          "--initial-cluster", f"bench=http://127.0.0.1:{pp}",
                          "--logger", "zap", "--log-level", "warn"],
                 os.path.join(logs, "etcd.log"))
    wait_port(ep, etcd, "etcd")
    coord_log = os.path.join(logs, "coordinator.log")
    cp_url = f"http://127.0.0.1:{cp}"
    c = start("coordinator", [coord, "--listen", f"127.0.0.1:{cp}", "--etcd", f"http://127.0.0.1:{ep}",
                              "--id", "bench"], coord_log)
    wait_port(cp, c, "zoopipe-coordinator")

    job = os.path.join(work, "job.yaml")
    with open(job, "w") as f:
        f.write(f"inputs:\n  - {os.path.abspath(a.csv)}\n"
                f"output: {out_dir}/\n"
                f"format: parquet\n"
                f"schema: {os.path.abspath(a.schema)}\n"
                "overwrite: true\n"
                "write:\n  compression: zstd\n")
    submit = [ctl, "submit", job, "--coordinator", cp_url, "--wait", "--json", "--quiet"]

    rows = []
    warnings = []
    load = os.getloadavg()[0]
    if load > 0.5:
        warnings.append(f"1-min load average was {load:.2f} before the runs: something else "
                        "was using the CPU, timings are not clean")
    for n in [int(x) for x in a.workers.split()]:
        before = registrations(coord_log)
        ws = []
        for i in range(n):
            ws.append(start(f"worker{i}", [worker, "--coordinator", cp_url, "--slots", "1",
                                           "--id", f"bench-w{i}"], os.path.join(logs, f"worker{i}.log")))
        seen = wait_registered(coord_log, before + n - 1, timeout=20)
        if not seen:
            time.sleep(3)  # no registration line to wait for: give them a moment
        walls, counts, per_worker = [], set(), []
        print(f"== fleet, {n} worker(s) x 1 slot"
              + ("" if seen else " (no registration seen in the coordinator log; waited 3 s)")
              + f": {' '.join([rel(ctl), 'submit', rel(job)] + submit[3:])}", flush=True)
        for r in range(a.repeat):
            shutil.rmtree(out_dir, ignore_errors=True)
            t0 = time.perf_counter()
            p = subprocess.run(submit, cwd=ROOT, capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if p.returncode != 0:
                print(f"   run {r + 1}: FAILED (exit {p.returncode}) after {wall:.2f}s\n   | "
                      + "\n   | ".join((p.stderr.strip() + "\n" + p.stdout.strip()[-2000:]).splitlines()[-40:]))
                warnings.append(f"{n} worker(s): a run failed (exit {p.returncode})")
                break
            rep = json.loads(p.stdout)
            cnt = (rep["total_processed"], rep["total_valid"], rep["total_errors"])
            counts.add(cnt)
            pw = rep.get("workers") or rep.get("per_worker") or []
            per_worker = pw
            walls.append(wall)
            print(f"   run {r + 1}: {wall:.2f}s, read/valid/invalid {cnt[0]}/{cnt[1]}/{cnt[2]}, "
                  f"tasks {len(rep.get('tasks', []))}", flush=True)
        hwm = [vm_hwm_kib(w.pid) for w in ws]
        for w in ws:
            stop(w, grace=35)
            PROCS.remove(next(x for x in PROCS if x[1] is w))
        if walls:
            rows.append({"n": n, "wall": statistics.median(walls), "runs": len(walls),
                         "counts": sorted(counts), "hwm": hwm, "per_worker": per_worker})
        if len(counts) > 1:
            warnings.append(f"{n} worker(s): counts differ between runs: {sorted(counts)}")

    emb = []
    if a.embedded:
        for n in [int(x) for x in a.workers.split()]:
            cmd = [ctl, "run", "--input", rel(a.csv), "--output", rel(out_dir) + "/", "--format", "parquet",
                   "--compression", "zstd", "--schema", rel(a.schema), "--workers", str(n), "--quiet"]
            print(f"== embedded: {' '.join(cmd)}", flush=True)
            ws = []
            for r in range(a.repeat):
                shutil.rmtree(out_dir, ignore_errors=True)
                t0 = time.perf_counter()
                p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
                wall = time.perf_counter() - t0
                if p.returncode != 0:
                    print("   FAILED: " + p.stderr[-2000:])
                    break
                ws.append(wall)
                print(f"   run {r + 1}: {wall:.2f}s", flush=True)
            if ws:
                emb.append((n, statistics.median(ws)))

    stop_all()
    shutil.rmtree(work, ignore_errors=True)

    base = next((r["wall"] for r in rows if r["n"] == 1), None)
    lines = ["| setup | median wall s | rows/s | MB/s | speed-up vs 1 worker | worker peak RSS MiB | read / valid / invalid |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        cs = "; ".join(f"{c[0]} / {c[1]} / {c[2]}" for c in r["counts"])
        hw = ", ".join(f"{h / 1024:.0f}" if h else "?" for h in r["hwm"])
        sp = f"{base / r['wall']:.2f}x" if base else "-"
        note = f" ({r['runs']} of {a.repeat} runs)" if r["runs"] < a.repeat else ""
        lines.append(f"| fleet: {r['n']} worker(s) x 1 slot | {r['wall']:.2f}{note} | "
                     f"{a.rows / r['wall'] / 1e6:.3f} M | {in_bytes / 1e6 / r['wall']:.1f} | {sp} | {hw} | {cs} |")
    for n, w in emb:
        lines.append(f"| embedded: `zoopipectl run --workers {n}` | {w:.2f} | {a.rows / w / 1e6:.3f} M | "
                     f"{in_bytes / 1e6 / w:.1f} | - | - | |")
    table = "\n".join(lines)
    print()
    print(table)
    for r in rows:
        if r["per_worker"]:
            print(f"per-worker totals with {r['n']} worker(s) (last run): {json.dumps(r['per_worker'])}")
    for w in warnings:
        print("WARNING: " + w)

    git = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip()
    body = ["## Fleet scale-out (`bench/fleet.sh`)", "",
            f"- command: `{a.command_line}`",
            f"- date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M:%S UTC')}; "
            f"nproc {os.cpu_count()}; repo at {git}",
            f"- input: `{rel(a.csv)}`, {a.rows} rows, {in_bytes / 1e6:.1f} MB, CSV -> Parquet (zstd) "
            "validated with users.schema.json; output and errors on the local disk (shared by all processes)",
            "- one etcd, one `zoopipe-coordinator`, N `zoopipe-worker --slots 1` processes on this machine; "
            f"timed: `zoopipectl submit job.yaml --coordinator URL --wait --json` ({a.repeat} runs, median)",
            f"- binaries: `{rel(a.bin_dir)}/`{binary_note(ctl)}",
            "- worker peak RSS: VmHWM of each worker process over all its runs",
            "", table]
    body += [""]
    for r in rows:
        if r["per_worker"]:
            body.append(f"- per-worker totals from the job report, {r['n']} worker(s), last run: " + "; ".join(
                f"{w}: {t.get('tasks')} tasks, {t.get('rows_read'):,} rows, {t.get('duration_s', 0):.1f} s in tasks"
                for w, t in sorted(r["per_worker"].items())))
    if warnings:
        body += [f"- WARNING: {w}" for w in warnings]
    replace_section(a.results, "fleet", "\n".join(body))
    print(f"\nwrote {rel(a.results)}")
    return 0 if rows else 1


if __name__ == "__main__":
    def on_signal(sig, frame):
        stop_all()
        sys.exit(128 + sig)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        rc = main()
    finally:
        stop_all()
    sys.exit(rc)
