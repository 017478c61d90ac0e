#!/usr/bin/env python3
"""Nested JSONL -> Parquet with validation: zoopipectl beside Polars and DuckDB, same file,
same run (bench/nested.sh sets up the venv and the build, then calls this).

The data: `orders` like pydantic's `Order` (a list of `Item` structs, an Optional `Address`
struct, a `dict[str, int]`, a Literal, a Decimal with 2 places) with `--invalid-rate` of rows
breaking a constraint (a short sku, qty 0, a third decimal place, an unknown status, an empty
item list). Every value has its declared JSON type, so the peers can load the file with an
explicit schema; each engine then applies the same checks and writes the valid rows to
Parquet (zstd) and the invalid ones to a second file.

Each run is a fresh process reaped with os.wait4 (wall time and peak RSS of the process tree).
"""
import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

MODELS = '''
from decimal import Decimal
from typing import Literal, Optional
from pydantic import BaseModel, Field
from pydantic.json_schema import GenerateJsonSchema

class WithDecimalPatterns(GenerateJsonSchema):
    def get_decimal_pattern(self, schema):
        return self.build_decimal_pattern(schema)

class Item(BaseModel):
    sku: str = Field(min_length=3)
    qty: int = Field(ge=1)
    price: Decimal = Field(max_digits=10, decimal_places=2)

class Address(BaseModel):
    city: str
    zip: str

class Order(BaseModel):
    id: int
    items: list[Item] = Field(min_length=1)
    shipping: Optional[Address] = None
    attrs: dict[str, int] = {}
    status: Literal["new", "paid", "shipped"]
'''


def generate(path, rows, rate, seed):
    rnd = random.Random(seed)
    cities = ["Oslo", "Lima", "Porto", "Kyoto", "Accra"]
    bad = 0
    with open(path, "w") as f:
        for i in range(rows):
            items = [{"sku": f"sku-{rnd.randrange(10**6)}", "qty": rnd.randint(1, 9),
                      "price": round(rnd.uniform(0.5, 999), 2)} for _ in range(rnd.randint(1, 4))]
            order = {"id": i, "items": items,
                     "shipping": None if rnd.random() < 0.2 else
                     {"city": rnd.choice(cities), "zip": f"{rnd.randrange(10**5):05d}"},
                     "attrs": {"w": rnd.randint(1, 100), "h": rnd.randint(1, 100)},
                     "status": rnd.choice(["new", "paid", "shipped"])}
            if rnd.random() < rate:
                bad += 1
                kind = rnd.randrange(5)
                if kind == 0:
                    items[0]["sku"] = "ab"
                elif kind == 1:
                    items[-1]["qty"] = 0
                elif kind == 2:
                    items[0]["price"] = 1.234
                elif kind == 3:
                    order["status"] = "lost"
                else:
                    order["items"] = []
            f.write(json.dumps(order))
            f.write("\n")
    return bad


POLARS = r'''
import os, sys, polars as pl
inp, out = sys.argv[1], sys.argv[2]
item = pl.Struct({"sku": pl.String, "qty": pl.Int64, "price": pl.Float64})
schema = {"id": pl.Int64, "items": pl.List(item),
          "shipping": pl.Struct({"city": pl.String, "zip": pl.String}),
          "attrs": pl.Struct({"w": pl.Int64, "h": pl.Int64}), "status": pl.String}
df = pl.read_ndjson(inp, schema=schema)
items = pl.col("items")
ok = (
    (items.list.len() >= 1)
    & items.list.eval(pl.element().struct.field("sku").str.len_chars() >= 3).list.all()
    & items.list.eval(pl.element().struct.field("qty") >= 1).list.all()
    & items.list.eval(((pl.element().struct.field("price") * 100).round(0)
                       - pl.element().struct.field("price") * 100).abs() < 1e-6).list.all()
    & pl.col("status").is_in(["new", "paid", "shipped"])
)
df = df.with_columns(ok.alias("_ok"))
df.filter(pl.col("_ok")).drop("_ok").write_parquet(out + "/valid.parquet", compression="zstd")
df.filter(~pl.col("_ok")).drop("_ok").write_parquet(out + "/invalid.parquet", compression="zstd")
print(df.filter(pl.col("_ok")).height, df.filter(~pl.col("_ok")).height)
'''

DUCKDB = r'''
import sys, duckdb
inp, out, threads = sys.argv[1], sys.argv[2], sys.argv[3]
con = duckdb.connect()
con.execute(f"SET threads={threads}")
con.execute(f"""CREATE TEMP VIEW checked AS SELECT *,
  len(items) >= 1
  AND list_bool_and(list_transform(items, lambda i: length(i.sku) >= 3 AND i.qty >= 1
                                   AND abs(round(i.price * 100) - i.price * 100) < 1e-6))
  AND status IN ('new', 'paid', 'shipped') AS _ok
FROM read_json('{inp}', format='newline_delimited', columns={{
  'id': 'BIGINT', 'items': 'STRUCT(sku VARCHAR, qty BIGINT, price DOUBLE)[]',
  'shipping': 'STRUCT(city VARCHAR, zip VARCHAR)', 'attrs': 'MAP(VARCHAR, BIGINT)',
  'status': 'VARCHAR'}})""")
con.execute(f"COPY (SELECT * EXCLUDE _ok FROM checked WHERE _ok) TO '{out}/valid.parquet' (FORMAT parquet, COMPRESSION zstd)")
con.execute(f"COPY (SELECT * EXCLUDE _ok FROM checked WHERE NOT _ok) TO '{out}/invalid.parquet' (FORMAT parquet, COMPRESSION zstd)")
print(*con.execute("SELECT count(*) FILTER (WHERE _ok), count(*) FILTER (WHERE NOT _ok) FROM checked").fetchone())
'''


def measured(cmd, env):
    """Run cmd in a fresh short-lived parent: (rc, wall s, peak RSS KiB of the tree, out, err)."""
    probe = [sys.executable, "-c",
             "import resource,subprocess,sys,json,time;t=time.perf_counter();"
             "p=subprocess.run(sys.argv[1:],capture_output=True);"
             "w=time.perf_counter()-t;"
             "print(json.dumps([p.returncode,w,resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,"
             "p.stdout.decode()[-2000:],p.stderr.decode()[-2000:]]))"] + cmd
    p = subprocess.run(probe, cwd=ROOT, capture_output=True, env=env, check=True)
    return json.loads(p.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--threads", default="1 2")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--invalid-rate", type=float, default=0.03)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/zoopipectl"))
    a = ap.parse_args()
    data = os.path.join(HERE, "data")
    os.makedirs(data, exist_ok=True)
    jsonl = os.path.join(data, f"orders_{a.rows}.jsonl")
    schema = os.path.join(data, "orders.schema.json")
    if not os.path.exists(jsonl):
        print(f"[bench] generating {jsonl}", file=sys.stderr)
        generate(jsonl, a.rows, a.invalid_rate, 7)
    code = MODELS + f"\nimport json\njson.dump(Order.model_json_schema(schema_generator=WithDecimalPatterns), open({schema!r}, 'w'))\n"
    subprocess.run([sys.executable, "-c", code], check=True)
    size_mb = os.path.getsize(jsonl) / 1e6
    results = {}
    for threads in a.threads.split():
        for engine in ("zoopipe", "polars", "duckdb"):
            walls, counts = [], None
            for _ in range(a.repeat):
                out = tempfile.mkdtemp(prefix=f"nested_{engine}_", dir=data)
                env = dict(os.environ, POLARS_MAX_THREADS=threads, RAYON_NUM_THREADS=threads)
                if engine == "zoopipe":
                    cmd = [a.bin, "run", "--input", jsonl, "--schema", schema, "--output", out + "/",
                           "--format", "parquet", "--compression", "zstd", "--workers", threads,
                           "--quiet", "--json"]
                elif engine == "polars":
                    cmd = [sys.executable, "-c", POLARS, jsonl, out]
                else:
                    cmd = [sys.executable, "-c", DUCKDB, jsonl, out, threads]
                prc, wall, rss, pout, perr = measured(cmd, env)
                subprocess.run(["rm", "-rf", out])
                if prc != 0:
                    print(f"[bench] {engine} failed: {perr}", file=sys.stderr)
                    break
                walls.append((wall, rss))
                if engine == "zoopipe":
                    report = json.loads(pout[pout.index("{"):]) if "{" in pout else {}
                    counts = (report.get("total_valid"), report.get("total_errors"))
                else:
                    counts = tuple(int(x) for x in pout.split()[-2:])
                print(f"[bench] {engine} t={threads}: {wall:.2f}s, {rss / 1024:.0f} MiB", file=sys.stderr)
            if walls:
                results[(engine, threads)] = (statistics.median(w for w, _ in walls),
                                              max(r for _, r in walls), counts)
    lines = [f"Nested JSONL -> Parquet with validation, {a.rows:,} orders ({size_mb:.0f} MB), "
             f"{a.invalid_rate:.0%} invalid; median of {a.repeat}",
             "", "| engine | threads | wall s | MB/s | rows/s | peak RSS MiB | valid / invalid | vs best peer |",
             "|---|---|---|---|---|---|---|---|"]
    for threads in a.threads.split():
        peers = [results[(e, threads)][0] for e in ("polars", "duckdb") if (e, threads) in results]
        best = min(peers) if peers else None
        for engine in ("zoopipe", "polars", "duckdb"):
            if (engine, threads) not in results:
                lines.append(f"| {engine} | {threads} | n/a | | | | | |")
                continue
            wall, rss, counts = results[(engine, threads)]
            ratio = f"{best / wall:.2f}x" if best else ""
            lines.append(f"| {engine} | {threads} | {wall:.2f} | {size_mb / wall:.0f} | "
                         f"{a.rows / wall / 1e6:.2f} M | {rss / 1024:.0f} | {counts[0]} / {counts[1]} | {ratio} |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
