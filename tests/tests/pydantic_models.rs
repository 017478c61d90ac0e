//! pydantic itself is the oracle: a model's JSON Schema goes in as it is, pydantic validates
//! the same lines, and our counts, messages and exact values must equal its.

use zoopipe_tests::*;

/// Writes `schema.json` and `orders.jsonl` into `dir`; prints what pydantic says of each line
/// and the exact sum of the valid prices.
const ORACLE: &str = r#"
import json, sys, random
from decimal import Decimal
from typing import Optional
from pydantic import BaseModel, Field, ValidationError
from pydantic.json_schema import GenerateJsonSchema

class WithDecimalPatterns(GenerateJsonSchema):
    # pydantic >= 2.12: reflect max_digits / decimal_places in the schema.
    def get_decimal_pattern(self, schema):
        return self.build_decimal_pattern(schema)

class Order(BaseModel):
    id: int
    price: Decimal = Field(max_digits=10, decimal_places=2, ge=0)
    discount: Optional[Decimal] = None

out = sys.argv[1]
with open(f"{out}/schema.json", "w") as f:
    json.dump(Order.model_json_schema(schema_generator=WithDecimalPatterns), f)
random.seed(7)
cases = ['"19.99"', '19.99', '"1.50"', '"0.001"', '"123456789.5"', '"12345678.99"',
         '"-1"', '"abc"', '7', '"1e2"', '"99999999.999"', '0.5']
lines, valid, errors, total = [], 0, [], Decimal(0)
for i in range(3000):
    price = random.choice(cases)
    discount = random.choice(['null', '"0.1"', '"2.000000000000000001"', '3'])
    line = f'{{"id": {i}, "price": {price}, "discount": {discount}}}'
    lines.append(line)
    try:
        m = Order.model_validate_json(line)
        valid += 1
        total += m.price
    except ValidationError as e:
        errors.append([i + 1, [[".".join(map(str, x["loc"])), x["msg"]] for x in e.errors()]])
with open(f"{out}/orders.jsonl", "w") as f:
    f.write("\n".join(lines) + "\n")
print(json.dumps({"valid": valid, "errors": errors, "total": str(total)}))
"#;

#[test]
fn decimals_validate_as_pydantic_does_and_sum_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_string_lossy().into_owned();
    let oracle: serde_json::Value =
        serde_json::from_str(python(ORACLE, &[&d]).trim()).expect("oracle output");
    let out = dir.path().join("out");
    let report = run_ok(&[
        "run",
        "--input",
        &format!("{d}/orders.jsonl"),
        "--schema",
        &format!("{d}/schema.json"),
        "--output",
        &format!("{}/", out.to_string_lossy()),
    ]);
    let expected_errors = oracle["errors"].as_array().unwrap();
    assert_eq!(report["total_valid"], oracle["valid"], "{report:#}");
    assert_eq!(
        report["total_errors"].as_u64().unwrap() as usize,
        expected_errors.len()
    );
    // Every invalid line, with pydantic's locations and messages, in its order.
    assert_eq!(located(&out), oracle_errors(&oracle));
    // Real decimals, read back by pyarrow, summing exactly (as Decimals) to pydantic's sum.
    let read = python(
        "import pyarrow.parquet as pq,sys,glob\n\
         from decimal import Decimal\n\
         t=pq.read_table(sorted(glob.glob(sys.argv[1]+'/part-*.parquet')))\n\
         print(t.schema.field('price').type, t.schema.field('discount').type)\n\
         total=sum(t.column('price').to_pylist(), Decimal(0))\n\
         print(total == Decimal(sys.argv[2]), total)",
        &[&out.to_string_lossy(), oracle["total"].as_str().unwrap()],
    );
    let mut lines = read.lines();
    assert_eq!(
        lines.next().unwrap(),
        "decimal128(10, 2) decimal128(38, 18)"
    );
    let sum = lines.next().unwrap();
    assert!(sum.starts_with("True"), "{sum} vs {}", oracle["total"]);
}

#[test]
fn a_parquet_decimal_column_without_a_schema_stays_an_exact_decimal() {
    // The inferred schema travels to every task as JSON Schema: before, a decimal went as a
    // plain `number` and came out Float64, rounding money.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_string_lossy().into_owned();
    python(
        "import pyarrow as pa,pyarrow.parquet as pq,sys\n\
         from decimal import Decimal\n\
         t=pa.table({'amt':pa.array([Decimal('1.234'),Decimal('-99.5'),None,Decimal('123456789.001')],pa.decimal128(12,3))})\n\
         pq.write_table(t,sys.argv[1]+'/in.parquet')",
        &[&d],
    );
    let report = run_ok(&[
        "run",
        "--input",
        &format!("{d}/in.parquet"),
        "--output",
        &format!("{d}/out/"),
    ]);
    assert_eq!(report["total_valid"], 4, "{report:#}");
    let read = python(
        "import pyarrow.parquet as pq,sys,glob\n\
         t=pq.read_table(glob.glob(sys.argv[1]+'/out/part-*.parquet'))\n\
         print(t.schema.field('amt').type, [str(v) for v in t.column('amt').to_pylist()])",
        &[&d],
    );
    assert_eq!(
        read.trim(),
        "decimal128(12, 3) ['1.234', '-99.500', 'None', '123456789.001']"
    );
}

/// An `Order` with lists, sub-models, a dict, Decimal, Literal and Enum: pydantic's verdict
/// on every line, and the exact sum of the valid items' prices.
const ORDER_MODELS: &str = r#"
import json, sys, random
from decimal import Decimal
from enum import Enum
from typing import Literal, Optional
from pydantic import BaseModel, Field, ValidationError
from pydantic.json_schema import GenerateJsonSchema

class WithDecimalPatterns(GenerateJsonSchema):
    def get_decimal_pattern(self, schema):
        return self.build_decimal_pattern(schema)

class Item(BaseModel):
    sku: str = Field(min_length=3)
    qty: int = Field(ge=1)
    price: Decimal = Field(max_digits=8, decimal_places=2)

class Address(BaseModel):
    city: str
    zip: str = Field(pattern=r"^\d{5}$")

class Color(str, Enum):
    red = "red"
    blue = "blue"

class Order(BaseModel):
    id: int
    items: list[Item] = Field(min_length=1, max_length=4)
    shipping: Optional[Address] = None
    attrs: dict[str, int] = {}
    status: Literal["new", "paid"]
    color: Color
    tags: list[str] = []
    codes: Optional[list[int]] = Field(default=None, min_length=2)

"#;

/// Writes `schema.json` and `orders.jsonl` (a few percent invalid over every nested kind) into
/// the folder `sys.argv[1]`; prints pydantic's verdict on each line and the exact price sum.
const ORDERS_DATA: &str = r#"
out = sys.argv[1]
with open(f"{out}/schema.json", "w") as f:
    json.dump(Order.model_json_schema(schema_generator=WithDecimalPatterns), f)
random.seed(11)
def item(good):
    sku = random.choice(["abc", "widget", "x-1"]) if good else random.choice(["ab", "abc"])
    qty = random.choice([1, 2, "3"]) if good else random.choice([0, "x", 2])
    price = random.choice(['"1.50"', "19.99", '"7"']) if good else random.choice(['"1.234"', '"123456789"', '"9.99"'])
    return f'{{"sku": "{sku}", "qty": {json.dumps(qty)}, "price": {price}}}'
lines, valid, errors, total = [], 0, [], Decimal(0)
for i in range(2000):
    bad = random.random() < 0.3
    kind = random.choice(["item", "empty", "long", "status", "attrs", "zip", "city", "color", "ship"]) if bad else None
    n = random.randint(1, 3)
    items = [item(not (kind == "item" and j == n - 1)) for j in range(n)]
    if kind == "empty": items = []
    if kind == "long": items = [item(True) for _ in range(5)]
    shipping = random.choice(['null', '{"city": "Oslo", "zip": "01234"}'])
    if kind == "zip": shipping = '{"city": "Oslo", "zip": "1234"}'
    if kind == "city": shipping = '{"zip": "01234"}'
    if kind == "ship": shipping = '"Oslo"'
    attrs = random.choice(['{}', '{"w": 3, "h": "4"}'])
    if kind == "attrs": attrs = '{"w": "x"}'
    status = "shipped" if kind == "status" else random.choice(["new", "paid"])
    color = "green" if kind == "color" else random.choice(["red", "blue"])
    tags = random.choice(['[]', '["a", "b"]'])
    fields = [f'"id": {i}', f'"items": [{", ".join(items)}]', f'"shipping": {shipping}',
              f'"attrs": {attrs}', f'"status": "{status}"', f'"color": "{color}"']
    if random.random() < 0.5:
        fields.append(f'"tags": {tags}')
    if random.random() < 0.3:
        # too short alone, or too short with a bad value (then only the value is reported)
        fields.append('"codes": ' + random.choice(['[1, 2]', '[5]', '["x"]', '["y", 2]', '[]']))
    line = "{" + ", ".join(fields) + "}"
    lines.append(line)
    try:
        m = Order.model_validate_json(line)
        valid += 1
        total += sum((it.price for it in m.items), Decimal(0))
    except ValidationError as e:
        errors.append([i + 1, [[".".join(map(str, x["loc"])), x["msg"]] for x in e.errors()]])
with open(f"{out}/orders.jsonl", "w") as f:
    f.write("\n".join(lines) + "\n")
print(json.dumps({"valid": valid, "errors": errors, "total": str(total)}))
"#;

fn orders_oracle() -> String {
    format!("{ORDER_MODELS}{ORDERS_DATA}")
}

/// (line, [(location, message)]) of every error row of a local output, in order.
fn located(out: &std::path::Path) -> Vec<(u64, Vec<(String, String)>)> {
    reasons(&error_rows(out))
}

/// (line, [(location, message)]) of error rows.
fn reasons(rows: &[serde_json::Value]) -> Vec<(u64, Vec<(String, String)>)> {
    rows.iter()
        .map(|row| {
            let reasons = row["errors"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    (
                        e["field"].as_str().unwrap_or_default().to_string(),
                        e["message"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect();
            (row["line"].as_u64().unwrap(), reasons)
        })
        .collect()
}

fn oracle_errors(oracle: &serde_json::Value) -> Vec<(u64, Vec<(String, String)>)> {
    oracle["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let reasons = e[1]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| (r[0].as_str().unwrap().into(), r[1].as_str().unwrap().into()))
                .collect();
            (e[0].as_u64().unwrap(), reasons)
        })
        .collect()
}

#[test]
fn nested_orders_validate_as_pydantic_does_and_come_out_as_real_nested_types() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_string_lossy().into_owned();
    let oracle: serde_json::Value =
        serde_json::from_str(python(&orders_oracle(), &[&d]).trim()).expect("oracle output");
    let out = dir.path().join("out");
    let report = run_ok(&[
        "run",
        "--input",
        &format!("{d}/orders.jsonl"),
        "--schema",
        &format!("{d}/schema.json"),
        "--output",
        &format!("{}/", out.to_string_lossy()),
        "--partition-size",
        "64KiB",
    ]);
    assert_eq!(report["total_valid"], oracle["valid"], "{report:#}");
    assert_eq!(located(&out), oracle_errors(&oracle));
    let read = python(
        "import pyarrow.parquet as pq,sys,glob\n\
         from decimal import Decimal\n\
         t=pq.read_table(sorted(glob.glob(sys.argv[1]+'/part-*.parquet')))\n\
         for f in ['items','shipping','attrs','tags']: print(t.schema.field(f).type)\n\
         total=sum((i['price'] for items in t.column('items').to_pylist() for i in items), Decimal(0))\n\
         print(total == Decimal(sys.argv[2]), total)",
        &[&out.to_string_lossy(), oracle["total"].as_str().unwrap()],
    );
    let lines: Vec<&str> = read.lines().collect();
    assert_eq!(
        lines[..4]
            .iter()
            .map(|l| l.split(" ('").next().unwrap_or_default()) // pyarrow names a map's field
            .collect::<Vec<_>>(),
        [
            "list<item: struct<sku: string, qty: int64, price: decimal128(8, 2)>>",
            "struct<city: string, zip: string>",
            "map<string, int64",
            "list<item: string>",
        ],
        "{read}"
    );
    assert!(lines[4].starts_with("True"), "{read}");
}

#[test]
fn the_fleet_runs_the_nested_job_in_byte_ranges_exactly() {
    use zoopipe_tests::fleet::*;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_string_lossy().into_owned();
    let oracle: serde_json::Value =
        serde_json::from_str(python(&orders_oracle(), &[&d]).trim()).expect("oracle output");
    let (raw, lake) = (unique("raw"), unique("lake"));
    s3::create_bucket(&raw);
    s3::create_bucket(&lake);
    s3::put(
        &raw,
        "orders.jsonl",
        std::fs::read(dir.path().join("orders.jsonl")).unwrap(),
    );
    let f = fleet(3, 0);
    let out = run(&[
        "submit",
        "--input",
        &format!("s3://{raw}/orders.jsonl"),
        "--schema",
        &format!("{d}/schema.json"),
        "--output",
        &format!("s3://{lake}/orders/"),
        "--partition-size",
        "32KiB",
        "--coordinator",
        &f.url,
        "--wait",
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(report["state"], "succeeded", "{}", text(&out.stderr));
    assert!(
        report["partitions"]["total"].as_u64().unwrap() > 3,
        "{report:#}"
    );
    assert_eq!(report["total_valid"], oracle["valid"], "{report:#}");
    let mut rows: Vec<serde_json::Value> = Vec::new();
    for key in s3::list(&lake, "orders/_errors/") {
        let bytes = s3::get(&lake, &key);
        rows.extend(
            bytes
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .map(|l| serde_json::from_slice::<serde_json::Value>(l).unwrap()),
        );
    }
    assert_eq!(reasons(&rows), oracle_errors(&oracle));
}

#[test]
fn a_nested_parquet_file_goes_in_and_its_jsonl_rows_are_pydantics_models_again() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_string_lossy().into_owned();
    // The Order model and its schema (the oracle script writes both; its JSONL is unused).
    python(&orders_oracle(), &[&d]);
    let write = r#"
import sys, json, pyarrow as pa, pyarrow.parquet as pq
from decimal import Decimal
item = pa.struct([("sku", pa.string()), ("qty", pa.int64()), ("price", pa.decimal128(8, 2))])
schema = pa.schema([("id", pa.int64()), ("items", pa.list_(item)),
    ("shipping", pa.struct([("city", pa.string()), ("zip", pa.string())])),
    ("attrs", pa.map_(pa.string(), pa.int64())), ("status", pa.string()),
    ("color", pa.string()), ("tags", pa.list_(pa.string()))])
rows = [{"id": i, "items": [{"sku": f"sku-{i}", "qty": 1 + i % 3, "price": Decimal(f"{i}.{i % 100:02d}")}],
         "shipping": None if i % 2 else {"city": "Oslo", "zip": "01234"},
         "attrs": [("w", i)], "status": "new", "color": "red", "tags": ["a"] * (i % 3)}
        for i in range(500)]
pq.write_table(pa.Table.from_pylist(rows, schema), sys.argv[1] + "/orders.parquet", row_group_size=100)
"#;
    python(write, &[&d]);
    for (schema, out) in [(true, "with_schema"), (false, "inferred")] {
        let output = format!("{d}/{out}/");
        let input = format!("{d}/orders.parquet");
        let schema_file = format!("{d}/schema.json");
        let mut args = vec![
            "run", "--input", &input, "--output", &output, "--format", "jsonl",
        ];
        if schema {
            args.extend(["--schema", &schema_file]);
        }
        let report = run_ok(&args);
        assert_eq!(report["total_valid"], 500, "{out}: {report:#}");
        // Every row read back by pydantic equals the model built from the written values.
        let check = format!(
            "{ORDER_MODELS}\n{}",
            r#"
import glob
lines = [l for p in sorted(glob.glob(sys.argv[1] + "/part-*.jsonl")) for l in open(p)]
ok = 0
for i, line in enumerate(lines):
    got = Order.model_validate_json(line)
    want = Order(id=i, items=[Item(sku=f"sku-{i}", qty=1 + i % 3, price=Decimal(f"{i}.{i % 100:02d}"))],
                 shipping=None if i % 2 else Address(city="Oslo", zip="01234"), attrs={"w": i},
                 status="new", color=Color.red, tags=["a"] * (i % 3))
    assert got == want, (got, want)
    ok += 1
print(ok)
"#
        );
        let ok = python(&check, &[&output]);
        assert_eq!(ok.trim(), "500", "{out}");
    }
}

#[test]
fn text_outputs_write_nested_values_as_json_and_decimals_as_pydantic_does() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_string_lossy().into_owned();
    python(&orders_oracle(), &[&d]);
    for format in ["csv", "jsonl"] {
        let output = format!("{d}/{format}/");
        let report = run_ok(&[
            "run",
            "--input",
            &format!("{d}/orders.jsonl"),
            "--schema",
            &format!("{d}/schema.json"),
            "--output",
            &output,
            "--format",
            format,
        ]);
        // pydantic reads every written row back into an Order: CSV cells of lists, models and
        // dicts hold JSON; JSONL decimals are strings, as pydantic's JSON mode writes them.
        let check = format!(
            "{ORDER_MODELS}\n{}",
            r#"
import glob, csv
fmt = sys.argv[2]
paths = sorted(glob.glob(sys.argv[1] + "/part-*." + fmt))
if fmt == "csv":
    rows = [r for p in paths for r in csv.DictReader(open(p, newline=""))]
    for r in rows:
        for k in ("items", "shipping", "attrs", "tags", "codes"):
            r[k] = json.loads(r[k]) if r[k] else None
        Order.model_validate(r)
else:
    rows = [json.loads(l) for p in paths for l in open(p)]
    for r in rows:
        assert all(isinstance(i["price"], str) for i in r["items"]), r
        Order.model_validate_json(json.dumps(r))
print(len(rows))
"#
        );
        let count = python(&check, &[&output, format]);
        assert_eq!(count.trim(), report["total_valid"].to_string(), "{format}");
    }
}

#[test]
fn schema_infer_proposes_nested_types_and_check_lists_them() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("orders.jsonl");
    let mut text = String::new();
    for i in 0..50 {
        text.push_str(&format!(
            "{{\"id\": {i}, \"items\": [{{\"sku\": \"a{i}\", \"qty\": 2}}], \"ship\": {{\"city\": \"x\"}}, \"tags\": [\"t\"]}}\n"
        ));
    }
    std::fs::write(&input, text).unwrap();
    let inferred = run(&["schema", "infer", &input.to_string_lossy()]);
    assert!(
        inferred.status.success(),
        "{}",
        zoopipe_tests::text(&inferred.stderr)
    );
    let schema = dir.path().join("inferred.json");
    std::fs::write(&schema, &inferred.stdout).unwrap();
    let checked = run(&["schema", "check", &schema.to_string_lossy()]);
    let listing = zoopipe_tests::text(&checked.stdout);
    for expected in [
        "List(Struct(\"sku\": Utf8, \"qty\": Int64))",
        "Struct(\"city\": Utf8)",
        "List(Utf8)",
    ] {
        assert!(listing.contains(expected), "{expected} in {listing}");
    }
    // The proposal is usable as it is: the file converts with it, every row valid.
    let out = dir.path().join("out");
    let report = run_ok(&[
        "run",
        "--input",
        &input.to_string_lossy(),
        "--schema",
        &schema.to_string_lossy(),
        "--output",
        &format!("{}/", out.to_string_lossy()),
    ]);
    assert_eq!(report["total_valid"], 50, "{report:#}");
}

/// Booleans, numbers and numeric text in number, bool, text and `Literal` fields, at the top and
/// inside a sub-model (a number or boolean in a text field refused, as pydantic refuses it), and JSON text in a string where a list belongs: which lines pydantic
/// takes, where it fails the rest, the values it makes.
const SCALARS_ORACLE: &str = r#"
import json, sys, random
from typing import Literal, Optional
from pydantic import BaseModel, ValidationError

class Inner(BaseModel):
    k: int
    name: Optional[str] = None

class Row(BaseModel):
    n: int
    x: float
    flag: bool
    s: Optional[str] = None
    inner: Inner
    level: Literal[1, 2]
    tags: Optional[list[int]] = None

out = sys.argv[1]
with open(f"{out}/schema.json", "w") as f:
    json.dump(Row.model_json_schema(), f)
random.seed(11)
cases = ['true', 'false', '"true"', '1', '0', '1.0', '1.5', '"5"', '"x"', 'null']
lines, valid, failed = [], [], []
for i in range(2000):
    n, x, flag, k = (random.choice(cases) for _ in range(4))
    # A number or boolean in a text field fails, as in pydantic.
    s = random.choice(['"true"', '"x"', '"5"', 'null', '5', 'true', '1.5'])
    level = random.choice(['1', '2', 'true', 'false', '1.0', '3'])
    # A JSON string holding JSON is a string here, not the list it spells.
    tags = random.choice(['[1, 2]', '"[1, 2]"', '""', '[]', 'null', '[true, 2.0]'])
    name = random.choice(['"a"', '7', 'false', 'null'])
    line = f'{{"n": {n}, "x": {x}, "flag": {flag}, "s": {s}, "inner": {{"k": {k}, "name": {name}}}, "level": {level}, "tags": {tags}}}'
    lines.append(line)
    try:
        m = Row.model_validate_json(line)
        valid.append([i + 1, m.n, m.x, m.flag, m.inner.k, m.level, m.tags])
    except ValidationError as e:
        failed.append([i + 1, sorted(".".join(map(str, x["loc"])) for x in e.errors())])
with open(f"{out}/rows.jsonl", "w") as f:
    f.write("\n".join(lines) + "\n")
print(json.dumps({"valid": valid, "failed": failed}))
"#;

#[test]
fn json_booleans_in_number_fields_are_taken_as_pydantic_takes_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let oracle: serde_json::Value =
        serde_json::from_str(python(SCALARS_ORACLE, &[d]).trim()).unwrap();
    let valid = oracle["valid"].as_array().unwrap();
    let failed = oracle["failed"].as_array().unwrap();
    // The mix must exercise both sides: booleans taken as numbers, and refusals.
    assert!(
        valid.len() > 20 && failed.len() > 1000,
        "{} / {}",
        valid.len(),
        failed.len()
    );
    let out = format!("{d}/out/");
    let report = validated_to_jsonl(d, "rows.jsonl", &out);
    assert_eq!(report["total_valid"], valid.len() as u64, "{report:#}");
    assert_eq!(report["total_errors"], failed.len() as u64, "{report:#}");
    // The same lines fail, at the same places.
    let ours: Vec<(u64, Vec<String>)> = failed_fields(&out).into_iter().collect();
    let theirs: Vec<(u64, Vec<String>)> = failed
        .iter()
        .map(|f| {
            let locs = f[1].as_array().unwrap().iter();
            (
                f[0].as_u64().unwrap(),
                locs.map(|l| l.as_str().unwrap().to_string()).collect(),
            )
        })
        .collect();
    assert_eq!(ours, theirs);
    // And the valid rows hold pydantic's values.
    let rows: Vec<serde_json::Value> = parts(std::path::Path::new(&out))
        .iter()
        .flat_map(|p| read_jsonl(p))
        .collect();
    assert_eq!(rows.len(), valid.len());
    for (row, want) in rows.iter().zip(valid) {
        assert_eq!(
            row["n"].as_i64(),
            want[1].as_i64(),
            "line {}: {row}",
            want[0]
        );
        assert_eq!(
            row["x"].as_f64(),
            want[2].as_f64(),
            "line {}: {row}",
            want[0]
        );
        assert_eq!(
            row["flag"].as_bool(),
            want[3].as_bool(),
            "line {}: {row}",
            want[0]
        );
        assert_eq!(
            row["inner"]["k"].as_i64(),
            want[4].as_i64(),
            "line {}: {row}",
            want[0]
        );
    }
}

/// CSV cells (strings) that pydantic's lax mode judges in ways a lenient parser would not (or a
/// strict one): which rows it takes and which field fails the rest.
const TRICKY_CELLS_ORACLE: &str = r#"
import csv, json, sys
from datetime import date, datetime
from typing import Optional
from uuid import UUID
from pydantic import BaseModel, EmailStr, ValidationError, confloat

class Row(BaseModel):
    pos: Optional[confloat(gt=0)] = None
    flag: Optional[bool] = None
    uid: Optional[UUID] = None
    email: Optional[EmailStr] = None
    n: Optional[int] = None
    day: Optional[date] = None
    at: Optional[datetime] = None

u = "123e4567-e89b-42d3-a456-426614174000"
cells = {
    "pos": ["nan", "NaN", "1.5", "0", "-1", "1_0.5", "1.0_1", " 1_0 ", "1__0"],
    "flag": [" true", "true ", "yes", "off", "2", "1"],
    "uid": [" " + u, u + " ", u.upper(), "{" + u.replace("-", "") + "}", "{" + u + "}",
            "urn:uuid:" + u, u.replace("-", "")],
    "email": ["bob@x.test", "bob@mail.example.com", "bob@printer.local", "a@b.invalid",
              "bob@x.example", "BOB@X.COM", " bob@x.com", "Bob <bob@x.com>", "bob@x.c",
              "bob@x.co-m", "bob@x.123", "bob@x.-com"],
    "n": ["1.", "1.0", " 42 ", "+7", "4.5", "1_000", " 1_000 ", "1__000", "_1", "1_000.0"],
    "day": ["2024-01-05", " 2024-01-05", "2024-01-05T00:00:00", "2024-01-05T00:00:00+01:00",
            "2024-01-05 00:00", "2024-01-05T10:00:00", "1704412800", "1704412801", "0",
            "2024-01-05_00:00", "2024-01-05 ", "17041968000000000", "0000-01-01"],
    # Years outside 1..9999 are refused, a Unix time in microseconds among them; pydantic's
    # parser takes `_` and `,`, drops digits past the microsecond, and refuses `+05`, a 60th
    # second, a one-digit hour, spaces around the value, zone names and exponents.
    "at": ["2024-01-05T10:00:00Z", "9999-12-31T23:59:59Z", "0000-01-01T00:00:00Z",
           "1700000000000000", "1700000000", "2024-01-05_10:00:00Z", "2024-01-05T10:00:00,123456Z",
           "2024-01-05T10:00:00.1234567Z", "2024-01-05T10:00:00+05", "2024-01-05T10:00:60Z",
           "2024-01-05T1:00:00Z", " 2024-01-05T10:00:00Z", "2024-01-05T10:00:00Z ",
           "2024-01-05T10:00:00 UTC", "1e9", "2024-01-05T10:00:00+0000"],
}
out = sys.argv[1]
rows, verdicts = [], []
for field, values in cells.items():
    for value in values:
        rows.append({field: value})
        try:
            m = Row.model_validate({field: value})
            verdicts.append({"value": json.loads(m.model_dump_json())[field]})
        except ValidationError as e:
            verdicts.append({"fail": sorted(".".join(map(str, x["loc"])) for x in e.errors())})
with open(f"{out}/cells.csv", "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(cells))
    w.writeheader()
    w.writerows(rows)
with open(f"{out}/schema.json", "w") as f:
    json.dump(Row.model_json_schema(), f)
print(json.dumps(verdicts))
"#;

#[test]
fn tricky_csv_cells_are_judged_as_pydantic_judges_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let verdicts: Vec<serde_json::Value> =
        serde_json::from_str(python(TRICKY_CELLS_ORACLE, &[d]).trim()).unwrap();
    let out = format!("{d}/out/");
    let report = validated_to_jsonl(d, "cells.csv", &out);
    let failed = failed_fields(&out);
    let mut valid_rows = valid_jsonl_rows(&out);
    for (i, verdict) in verdicts.iter().enumerate() {
        // The header is line 1.
        let line = i as u64 + 2;
        match verdict.get("fail") {
            Some(fields) => {
                let fields: Vec<String> = serde_json::from_value(fields.clone()).unwrap();
                assert_eq!(failed.get(&line), Some(&fields), "CSV line {line}");
            }
            None => {
                assert_eq!(failed.get(&line), None, "CSV line {line}");
                // The value as pydantic writes it (a UUID lowercase, an email's domain too).
                let row = valid_rows.next().expect("a valid row");
                let value = &verdict["value"];
                assert!(
                    row.as_object().unwrap().values().any(|v| v == value),
                    "CSV line {line}: {row} lacks pydantic's {value}"
                );
            }
        }
    }
    assert_eq!(
        report["total_errors"],
        verdicts.iter().filter(|v| v.get("fail").is_some()).count() as u64
    );
}

/// The valid rows of a JSONL output, in order.
fn valid_jsonl_rows(out: &str) -> std::vec::IntoIter<serde_json::Value> {
    parts(std::path::Path::new(out))
        .iter()
        .flat_map(|p| read_jsonl(p))
        .collect::<Vec<_>>()
        .into_iter()
}

/// Each error row's line and its failing fields, sorted: what pydantic's `loc`s are compared with.
/// `at`: "line" (CSV/JSONL inputs) or "row" (Parquet/Arrow).
fn failed_fields_at(out: &str, at: &str) -> std::collections::BTreeMap<u64, Vec<String>> {
    error_rows(std::path::Path::new(out))
        .iter()
        .map(|row| {
            let mut fields: Vec<String> = row["errors"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["field"].as_str().unwrap_or("").to_string())
                .collect();
            fields.sort();
            (row[at].as_u64().unwrap(), fields)
        })
        .collect()
}

fn failed_fields(out: &str) -> std::collections::BTreeMap<u64, Vec<String>> {
    failed_fields_at(out, "line")
}

/// `zoopipectl run` of `dir/input` against `dir/schema.json` into `out` as JSONL; its report.
fn validated_to_jsonl(dir: &str, input: &str, out: &str) -> serde_json::Value {
    run_ok(&[
        "run",
        "--input",
        &format!("{dir}/{input}"),
        "--output",
        out,
        "--format",
        "jsonl",
        "--schema",
        &format!("{dir}/schema.json"),
    ])
}

/// Typed Parquet columns (numbers, booleans, dates) into `str` fields: pydantic refuses a
/// value that is not a string there, whatever its text would be; strings pass.
const TYPED_INTO_TEXT_ORACLE: &str = r#"
import datetime, json, sys
import pyarrow as pa, pyarrow.parquet as pq
from typing import Optional
from pydantic import BaseModel, ValidationError

class Row(BaseModel):
    code: Optional[str] = None
    flag: Optional[str] = None
    day: Optional[str] = None
    name: Optional[str] = None

out = sys.argv[1]
table = pa.table({
    "code": pa.array([12345, None, 7, None], pa.int64()),
    "flag": pa.array([None, True, None, None], pa.bool_()),
    "day": pa.array([None, None, datetime.date(2024, 1, 5), None], pa.date32()),
    "name": pa.array(["a", "b", None, "d"], pa.string()),
})
pq.write_table(table, f"{out}/typed.parquet")
with open(f"{out}/schema.json", "w") as f:
    json.dump(Row.model_json_schema(), f)
verdicts = []
for row in table.to_pylist():
    try:
        Row.model_validate(row)
        verdicts.append([])
    except ValidationError as e:
        verdicts.append(sorted(".".join(map(str, x["loc"])) for x in e.errors()))
print(json.dumps(verdicts))
"#;

#[test]
fn typed_values_in_text_fields_fail_as_pydantic_fails_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let verdicts: Vec<Vec<String>> =
        serde_json::from_str(python(TYPED_INTO_TEXT_ORACLE, &[d]).trim()).unwrap();
    let out = format!("{d}/out/");
    let report = validated_to_jsonl(d, "typed.parquet", &out);
    for row in error_rows(std::path::Path::new(&out)) {
        for e in row["errors"].as_array().unwrap() {
            assert_eq!(e["message"], "Input should be a valid string", "{row}");
        }
    }
    let mut failed = failed_fields_at(&out, "row");
    for (i, expected) in verdicts.iter().enumerate() {
        let ours = failed.remove(&(i as u64)).unwrap_or_default();
        assert_eq!(&ours, expected, "row {i}");
    }
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(report["total_valid"], 1, "{report:#}");
}

/// A Parquet decimal column into an `int` field: whole values pass, a fraction fails as
/// pydantic fails it (arrow's cast would have truncated 999.99 to 999).
const DECIMALS_INTO_INT_ORACLE: &str = r#"
import json, sys
from decimal import Decimal
import pyarrow as pa, pyarrow.parquet as pq
from typing import Optional
from pydantic import BaseModel, ValidationError

class Row(BaseModel):
    n: Optional[int] = None
    wide: Optional[int] = None

out = sys.argv[1]
values = [Decimal("999.99"), Decimal("1.00"), Decimal("-0.01"), None, Decimal("-42.00"), Decimal("0.50")]
table = pa.table({
    "n": pa.array(values, pa.decimal128(10, 2)),
    "wide": pa.array(values, pa.decimal256(40, 2)),
})
pq.write_table(table, f"{out}/decimals.parquet")
with open(f"{out}/schema.json", "w") as f:
    json.dump(Row.model_json_schema(), f)
verdicts = []
for row in table.to_pylist():
    try:
        verdicts.append({"value": Row.model_validate(row).n})
    except ValidationError as e:
        verdicts.append({"fail": e.errors()[0]["type"]})
print(json.dumps(verdicts))
"#;

#[test]
fn decimals_in_int_fields_are_whole_or_refused_as_pydantic_refuses_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let verdicts: Vec<serde_json::Value> =
        serde_json::from_str(python(DECIMALS_INTO_INT_ORACLE, &[d]).trim()).unwrap();
    let out = format!("{d}/out/");
    validated_to_jsonl(d, "decimals.parquet", &out);
    let failed = failed_fields_at(&out, "row");
    let mut valid = valid_jsonl_rows(&out);
    for (i, verdict) in verdicts.iter().enumerate() {
        if verdict.get("fail").is_some() {
            // Both widths refuse the same value.
            assert_eq!(
                failed.get(&(i as u64)),
                Some(&vec!["n".to_string(), "wide".to_string()]),
                "row {i}: {verdict}"
            );
        } else {
            assert!(!failed.contains_key(&(i as u64)), "row {i}: {verdict}");
            let row = valid.next().unwrap();
            assert_eq!(row["n"], verdict["value"], "row {i}");
            assert_eq!(row["wide"], verdict["value"], "row {i}");
        }
    }
    assert_eq!(failed.len(), 3);
}
