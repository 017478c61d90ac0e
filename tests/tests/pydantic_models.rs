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
    let got: Vec<(u64, Vec<(String, String)>)> = error_rows(&out)
        .iter()
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
        .collect();
    let want: Vec<(u64, Vec<(String, String)>)> = expected_errors
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
        .collect();
    assert_eq!(got, want);
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
