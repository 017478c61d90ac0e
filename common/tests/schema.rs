//! Schema compilation: supported subset, refusals with paths, inference, and round-trips.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use serde_json::{Value, json};
use zoopipe_common::schema::{CompiledSchema, FieldDescription, SchemaError, infer_from_text};

fn fixture() -> CompiledSchema {
    CompiledSchema::from_json_str(include_str!("fixtures/pydantic_customer.schema.json")).unwrap()
}

fn utc_micros() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

#[test]
fn pydantic_fixture_maps_to_arrow_types() {
    let schema = fixture();
    let expected = Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("email", DataType::Utf8, false),
        Field::new("age", DataType::Int64, true),
        Field::new("score", DataType::Float64, true),
        Field::new("plan", DataType::Utf8, true),
        Field::new("backup_plan", DataType::Utf8, true),
        Field::new("active", DataType::Boolean, true),
        Field::new("signup_date", DataType::Date32, false),
        Field::new("last_seen", utc_micros(), true),
        Field::new("account_id", DataType::Utf8, false),
        Field::new("website", DataType::Utf8, true),
        Field::new("ip", DataType::Utf8, true),
        Field::new("code", DataType::Utf8, false),
        Field::new("tier", DataType::Utf8, true),
        Field::new("version", DataType::Int64, true),
    ]);
    assert_eq!(*schema.arrow_schema(), expected);
    assert!(!schema.additional_properties());
    let plan = &schema.fields()[5];
    assert_eq!(plan.default, Some(json!("free")));
    assert!(!plan.required);
    assert_eq!(schema.fields()[4].default, Some(json!(0.0)));
    assert_eq!(schema.fields()[3].default, None);
}

#[test]
fn describe_lists_checks_in_words() {
    let described = fixture().describe();
    assert_eq!(
        described[3],
        FieldDescription {
            name: "age".into(),
            arrow_type: "Int64".into(),
            nullable: true,
            required: false,
            checks: vec!["< 150".into(), ">= 0".into()],
        }
    );
    assert_eq!(
        described[4].checks,
        vec!["multiple of 0.5", "<= 100", ">= 0", "default 0.0"]
    );
    assert_eq!(
        described[5].checks,
        vec!["one of 'free', 'pro', 'enterprise'", "default 'free'"]
    );
    assert_eq!(described[2].checks, vec!["format email"]);
    assert_eq!(
        described[13].checks,
        vec!["matches pattern '^[A-Z]{3}-\\d{4}$'"]
    );
    assert_eq!(described[15].checks, vec!["equals 2", "default 2"]);
    assert_eq!(described[9].arrow_type, utc_micros().to_string());
}

fn refusal(schema: Value) -> SchemaError {
    match CompiledSchema::from_json_schema(&schema) {
        Ok(_) => panic!("schema should be refused: {schema}"),
        Err(e) => e,
    }
}

fn object_with(property: Value) -> Value {
    json!({"type": "object", "properties": {"x": property}})
}

#[test]
fn unsupported_keywords_are_refused_with_their_path() {
    let cases = vec![
        // Tuples, dicts without a value type, recursive models and discriminated unions.
        (
            json!({"type": "object", "properties": {"pair": {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}]}}}),
            "$.properties.pair.prefixItems",
        ),
        (object_with(json!({"type": "object"})), "$.properties.x"),
        (
            json!({
                "$defs": {"Node": {"properties": {"next": {"anyOf": [{"$ref": "#/$defs/Node"}, {"type": "null"}]}}, "type": "object"}},
                "type": "object",
                "properties": {"head": {"$ref": "#/$defs/Node"}}
            }),
            "$.$defs.Node.properties.next.anyOf[0]",
        ),
        (
            json!({
                "$defs": {"A": {"$ref": "#/$defs/B"}, "B": {"$ref": "#/$defs/A"}},
                "type": "object",
                "properties": {"x": {"$ref": "#/$defs/A"}}
            }),
            "$.$defs.B",
        ),
        (
            object_with(
                json!({"oneOf": [{"type": "integer"}, {"type": "string"}], "discriminator": {"propertyName": "kind"}}),
            ),
            "$.properties.x.discriminator",
        ),
        (
            object_with(json!({"type": "string", "format": "hostname"})),
            "$.properties.x.format",
        ),
        (
            object_with(json!({"anyOf": [{"type": "integer"}, {"type": "string"}]})),
            "$.properties.x.anyOf",
        ),
        (
            object_with(json!({"type": ["integer", "string"]})),
            "$.properties.x.type",
        ),
        (
            object_with(json!({"type": "integer", "not": {"const": 3}})),
            "$.properties.x.not",
        ),
        (
            object_with(
                json!({"anyOf": [{"type": "string", "pattern": "^(?!x)"}, {"type": "null"}]}),
            ),
            "$.properties.x.anyOf[0].pattern",
        ),
        (
            object_with(json!({"type": "integer", "minLength": 2})),
            "$.properties.x.minLength",
        ),
        (
            object_with(json!({"allOf": [{"type": "integer"}, {"minimum": 1}]})),
            "$.properties.x.allOf",
        ),
        (object_with(json!({"title": "Anything"})), "$.properties.x"),
        (
            json!({"type": "object", "properties": {}, "additionalProperties": {"type": "string"}}),
            "$.additionalProperties",
        ),
        (
            json!({"type": "object", "properties": {}, "patternProperties": {}}),
            "$.patternProperties",
        ),
        (json!({"type": "array", "items": {}}), "$.type"),
    ];
    for (schema, path) in cases {
        match refusal(schema.clone()) {
            SchemaError::Unsupported { path: got, .. } => assert_eq!(got, path, "{schema}"),
            other => panic!("expected Unsupported at {path}, got {other:?}"),
        }
    }
}

#[test]
fn invalid_schemas_are_reported_with_their_path() {
    let cases = vec![
        (
            object_with(json!({"$ref": "#/$defs/Nope"})),
            "$.properties.x.$ref",
        ),
        (
            json!({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a", "b"]}),
            "$.required[1]",
        ),
        (
            object_with(json!({"type": "integer", "default": "abc"})),
            "$.properties.x.default",
        ),
        (
            object_with(json!({"type": "string", "enum": ["a", 1]})),
            "$.properties.x.enum",
        ),
        (
            object_with(json!({"type": "integer", "minimum": "0"})),
            "$.properties.x.minimum",
        ),
    ];
    for (schema, path) in cases {
        match refusal(schema.clone()) {
            SchemaError::Invalid { path: got, .. } => assert_eq!(got, path, "{schema}"),
            other => panic!("expected Invalid at {path}, got {other:?}"),
        }
    }
    match CompiledSchema::from_json_str("{not json") {
        Err(SchemaError::Invalid { path, .. }) => assert_eq!(path, "$"),
        other => panic!("expected Invalid at $, got {other:?}"),
    }
    let message = refusal(object_with(json!({"type": "string", "format": "hostname"}))).to_string();
    assert_eq!(
        message,
        "unsupported JSON Schema at $.properties.x.format: string format 'hostname' is not supported"
    );
}

#[test]
fn ref_chains_allof_type_lists_and_literals() {
    let schema = CompiledSchema::from_json_schema(&json!({
        "$defs": {
            "Outer": {"$ref": "#/$defs/Inner"},
            "Inner": {"enum": [1, 2, 3], "title": "Inner", "type": "integer"}
        },
        "type": "object",
        "properties": {
            "chained": {"allOf": [{"$ref": "#/$defs/Outer"}], "default": 2},
            "listed": {"type": ["number", "null"], "minimum": 0},
            "literal": {"enum": ["x", "y"]},
            "flag": {"const": true},
            "secret": {"type": "string", "format": "password", "writeOnly": true}
        },
        "required": ["chained", "listed"]
    }))
    .unwrap();
    let fields = schema.fields();
    assert_eq!(fields[0].data_type, DataType::Int64);
    assert!(!fields[0].nullable);
    assert_eq!(fields[0].default, Some(json!(2)));
    assert_eq!(fields[1].data_type, DataType::Float64);
    assert!(fields[1].nullable && fields[1].required);
    assert_eq!(fields[2].data_type, DataType::Utf8);
    assert_eq!(fields[3].data_type, DataType::Boolean);
    assert_eq!(fields[4].data_type, DataType::Utf8);
    assert_eq!(
        schema.describe()[0].checks,
        vec!["one of 1, 2, 3", "default 2"]
    );
}

#[test]
fn infer_types_from_text_sample() {
    let columns: Vec<(&str, ArrayRef)> = vec![
        (
            "ints",
            Arc::new(StringArray::from(vec![Some("1"), None, Some(" -42 ")])),
        ),
        (
            "floats",
            Arc::new(StringArray::from(vec![Some("1"), Some("2.5"), Some("1e3")])),
        ),
        (
            "bools",
            Arc::new(StringArray::from(vec![Some("True"), Some("false"), None])),
        ),
        (
            "yes_no",
            Arc::new(StringArray::from(vec![Some("yes"), Some("no"), None])),
        ),
        (
            "dates",
            Arc::new(StringArray::from(vec![
                Some("2024-01-02"),
                Some("1999-12-31"),
                None,
            ])),
        ),
        (
            "times",
            Arc::new(StringArray::from(vec![
                Some("2024-01-02T03:04:05Z"),
                Some("2024-01-02 03:04:05.123+02:00"),
                Some("2024-01-03"),
            ])),
        ),
        (
            "text",
            Arc::new(StringArray::from(vec![Some("1"), Some("two"), Some("3")])),
        ),
        (
            "empty",
            Arc::new(StringArray::from(vec![None::<&str>, None, Some("")])),
        ),
        ("typed", Arc::new(Int32Array::from(vec![1, 2, 3]))),
    ];
    let sample = RecordBatch::try_from_iter(columns).unwrap();
    let inferred = infer_from_text(&sample);
    let types: Vec<(&str, DataType)> = inferred
        .fields()
        .iter()
        .map(|f| (f.name().as_str(), f.data_type().clone()))
        .collect();
    assert_eq!(
        types,
        vec![
            ("ints", DataType::Int64),
            ("floats", DataType::Float64),
            ("bools", DataType::Boolean),
            ("yes_no", DataType::Utf8),
            ("dates", DataType::Date32),
            ("times", utc_micros()),
            ("text", DataType::Utf8),
            ("empty", DataType::Utf8),
            ("typed", DataType::Int32),
        ]
    );
    assert!(inferred.fields().iter().all(|f| f.is_nullable()));

    // The inferred schema validates the sample it came from.
    let compiled = CompiledSchema::from_arrow(&inferred);
    let out = compiled.validate(&sample).unwrap();
    assert!(out.invalid.is_empty(), "{:?}", out.invalid);
    assert_eq!(out.valid.schema(), compiled.arrow_schema());
}

#[test]
fn to_json_schema_round_trips() {
    let original = fixture();
    let emitted = original.to_json_schema("Customer");
    let again = CompiledSchema::from_json_schema(&emitted).unwrap();
    assert_eq!(again.arrow_schema(), original.arrow_schema());
    assert_eq!(again.describe(), original.describe());
    assert_eq!(
        again.additional_properties(),
        original.additional_properties()
    );
    assert_eq!(emitted["title"], json!("Customer"));
    assert_eq!(
        emitted["properties"]["age"],
        json!({
            "anyOf": [{"exclusiveMaximum": 150, "minimum": 0, "type": "integer"}, {"type": "null"}],
            "default": null,
            "title": "Age"
        })
    );
    assert_eq!(
        emitted["required"],
        json!(["id", "name", "email", "signup_date", "account_id", "code"])
    );

    // Inferred schemas (all nullable, no checks) survive the trip as well.
    let inferred = Schema::new(vec![
        Field::new("n", DataType::Int64, true),
        Field::new("x", DataType::Float64, true),
        Field::new("b", DataType::Boolean, true),
        Field::new("d", DataType::Date32, true),
        Field::new("t", utc_micros(), true),
        Field::new("s", DataType::Utf8, true),
    ]);
    let from_arrow = CompiledSchema::from_arrow(&inferred);
    let emitted = from_arrow.to_json_schema("Inferred");
    assert_eq!(
        emitted["properties"]["t"]["anyOf"][0],
        json!({"format": "date-time", "type": "string"})
    );
    let again = CompiledSchema::from_json_schema(&emitted).unwrap();
    assert_eq!(*again.arrow_schema(), inferred);
}

#[test]
fn typed_columns_keep_their_exact_arrow_types_through_json_schema() {
    use arrow::datatypes::Fields;
    // What a database table or a Parquet file without a schema plans with, on its way to the
    // fleet's workers as JSON Schema.
    let interval = Fields::from(vec![
        Field::new("months", DataType::Int32, false),
        Field::new("days", DataType::Int32, false),
        Field::new("microseconds", DataType::Int64, false),
    ]);
    let arrow = Schema::new(vec![
        Field::new("small", DataType::Int16, true),
        Field::new("count", DataType::Int32, true),
        Field::new("ratio", DataType::Float32, true),
        Field::new("at", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        Field::new(
            "at_utc",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new("clock", DataType::Time64(TimeUnit::Microsecond), true),
        Field::new("blob", DataType::Binary, true),
        Field::new("price", DataType::Decimal128(10, 2), true),
        Field::new(
            "ids",
            DataType::List(Arc::new(Field::new("item", DataType::Int32, true))),
            true,
        ),
        Field::new("span", DataType::Struct(interval), true),
    ]);
    let planned = CompiledSchema::from_arrow(&arrow);
    let json = planned.to_json_schema("Record");
    let back = CompiledSchema::from_json_schema(&json).unwrap();
    let types = |s: &CompiledSchema| -> Vec<DataType> {
        s.arrow_schema()
            .fields()
            .iter()
            .map(|f| f.data_type().clone())
            .collect()
    };
    assert_eq!(types(&back), types(&planned), "{json:#}");
}
