//! Validation of text (CSV/JSONL-like) and typed (Parquet/Arrow-like) batches.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int32Array, Int64Array, StringArray,
    TimestampMillisecondArray,
};
use arrow::datatypes::{
    DataType, Date32Type, Field, Float64Type, Int64Type, Schema, TimeUnit, TimestampMicrosecondType,
};
use arrow::record_batch::RecordBatch;
use serde_json::json;
use zoopipe_common::schema::CompiledSchema;
use zoopipe_common::validate::{ErrorKind, FieldError, Validated};

/// Written by hand exactly as pydantic 2 emits `User.model_json_schema()` for:
/// ```python
/// class Role(str, Enum): admin = "admin"; user = "user"; guest = "guest"
/// class User(BaseModel):
///     id: int = Field(ge=1)
///     name: str = Field(min_length=3, max_length=10, pattern=r"^[a-z]+$")
///     email: EmailStr
///     age: Optional[int] = Field(default=None, ge=0, lt=150)
///     role: Role = Role.user
///     active: bool = True
///     score: float = 0.0
///     joined: date
///     last_login: Optional[datetime] = None
/// ```
const USER_SCHEMA: &str = r##"{
  "$defs": {
    "Role": {"enum": ["admin", "user", "guest"], "title": "Role", "type": "string"}
  },
  "properties": {
    "id": {"minimum": 1, "title": "Id", "type": "integer"},
    "name": {"maxLength": 10, "minLength": 3, "pattern": "^[a-z]+$", "title": "Name", "type": "string"},
    "email": {"format": "email", "title": "Email", "type": "string"},
    "age": {
      "anyOf": [{"exclusiveMaximum": 150, "minimum": 0, "type": "integer"}, {"type": "null"}],
      "default": null,
      "title": "Age"
    },
    "role": {"$ref": "#/$defs/Role", "default": "user"},
    "active": {"default": true, "title": "Active", "type": "boolean"},
    "score": {"default": 0.0, "title": "Score", "type": "number"},
    "joined": {"format": "date", "title": "Joined", "type": "string"},
    "last_login": {
      "anyOf": [{"format": "date-time", "type": "string"}, {"type": "null"}],
      "default": null,
      "title": "Last Login"
    }
  },
  "required": ["id", "name", "email", "joined"],
  "title": "User",
  "type": "object"
}"##;

fn text_batch(columns: &[(&str, Vec<Option<&str>>)]) -> RecordBatch {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(name, _)| Field::new(*name, DataType::Utf8, true))
        .collect();
    let arrays: Vec<ArrayRef> = columns
        .iter()
        .map(|(_, values)| Arc::new(StringArray::from(values.clone())) as ArrayRef)
        .collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).unwrap()
}

fn typed_batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    RecordBatch::try_from_iter(columns).unwrap()
}

fn err(field: &str, kind: ErrorKind, message: &str) -> FieldError {
    FieldError {
        field: Some(field.to_string()),
        kind,
        message: message.to_string(),
    }
}

fn check_counts(input: &RecordBatch, out: &Validated) {
    assert_eq!(out.valid.num_rows() + out.invalid.len(), input.num_rows());
}

fn col<'a>(batch: &'a RecordBatch, name: &str) -> &'a ArrayRef {
    batch.column_by_name(name).unwrap()
}

const MICROS_2024_01_02_08_00: i64 = 1_704_182_400_000_000;

#[test]
fn pydantic_user_schema_on_text_batch() {
    let schema = CompiledSchema::from_json_str(USER_SCHEMA).unwrap();
    let input = text_batch(&[
        (
            "id",
            vec![
                Some("1"),
                Some(" 2 "),
                Some("4.5"),
                Some("42.0"),
                None,
                Some("0"),
            ],
        ),
        (
            "name",
            vec![
                Some("alice"),
                Some("bob"),
                Some("al"),
                Some("carol"),
                Some("Bob1"),
                Some("abcdefghijk"),
            ],
        ),
        (
            "email",
            vec![
                Some("alice@example.com"),
                Some("bob@example.org"),
                Some("not-an-email"),
                Some("carol@mail.example.com"),
                Some("d@e.fr"),
                Some("f@g.de"),
            ],
        ),
        (
            "age",
            vec![Some("30"), None, Some("150"), Some("0"), Some("-1"), None],
        ),
        (
            "role",
            vec![
                Some("admin"),
                None,
                Some("boss"),
                Some("guest"),
                Some("user"),
                None,
            ],
        ),
        (
            "active",
            vec![
                Some("true"),
                None,
                Some("maybe"),
                Some("YES"),
                Some("0"),
                None,
            ],
        ),
        (
            "score",
            vec![
                Some("1.5"),
                None,
                Some("x"),
                Some("-2.5e1"),
                Some("3"),
                None,
            ],
        ),
        (
            "joined",
            vec![
                Some("2024-01-02"),
                Some("2024-02-03"),
                Some("2024-13-01"),
                Some("2000-12-31"),
                Some("2024-01-01"),
                Some("2024-01-01"),
            ],
        ),
        (
            "last_login",
            vec![
                Some("2024-01-02T10:00:00+02:00"),
                None,
                Some("nope"),
                Some("2024-03-04 05:06:07"),
                None,
                None,
            ],
        ),
        // Not in the schema: dropped silently (additionalProperties defaults to true).
        (
            "note",
            vec![Some("x"), Some("y"), None, Some("z"), None, None],
        ),
    ]);
    let out = schema.validate(&input).unwrap();
    check_counts(&input, &out);

    let coerce = ErrorKind::Coercion;
    let constraint = ErrorKind::Constraint;
    assert_eq!(
        out.invalid,
        vec![
            (
                2,
                vec![
                    err(
                        "id",
                        coerce,
                        "Input should be a valid integer, unable to parse string as an integer"
                    ),
                    err(
                        "name",
                        constraint,
                        "String should have at least 3 characters"
                    ),
                    err("email", constraint, "value is not a valid email address"),
                    err("age", constraint, "Input should be less than 150"),
                    err(
                        "role",
                        constraint,
                        "Input should be 'admin', 'user' or 'guest'"
                    ),
                    err(
                        "active",
                        coerce,
                        "Input should be a valid boolean, unable to interpret input"
                    ),
                    err(
                        "score",
                        coerce,
                        "Input should be a valid number, unable to parse string as a number"
                    ),
                    err(
                        "joined",
                        coerce,
                        "Input should be a valid date, unable to parse input as a date in the format YYYY-MM-DD"
                    ),
                    err(
                        "last_login",
                        coerce,
                        "Input should be a valid datetime, unable to parse input as an ISO 8601 date-time"
                    ),
                ]
            ),
            (
                4,
                vec![
                    err("id", constraint, "Field required"),
                    err("name", constraint, "String should match pattern '^[a-z]+$'"),
                    err(
                        "age",
                        constraint,
                        "Input should be greater than or equal to 0"
                    ),
                ]
            ),
            (
                5,
                vec![
                    err(
                        "id",
                        constraint,
                        "Input should be greater than or equal to 1"
                    ),
                    err(
                        "name",
                        constraint,
                        "String should have at most 10 characters"
                    ),
                ]
            ),
        ]
    );

    let valid = &out.valid;
    assert_eq!(valid.schema(), schema.arrow_schema());
    assert_eq!(valid.num_rows(), 3);
    let ids = col(valid, "id").as_primitive::<Int64Type>();
    assert_eq!(ids.values().to_vec(), vec![1, 2, 42]);
    assert_eq!(
        col(valid, "name").as_string::<i32>(),
        &StringArray::from(vec!["alice", "bob", "carol"])
    );
    assert_eq!(
        col(valid, "age").as_primitive::<Int64Type>(),
        &Int64Array::from(vec![Some(30), None, Some(0)])
    );
    // Defaults fill nulls: role "user", active true, score 0.0.
    assert_eq!(
        col(valid, "role").as_string::<i32>(),
        &StringArray::from(vec!["admin", "user", "guest"])
    );
    assert_eq!(
        col(valid, "active").as_boolean(),
        &BooleanArray::from(vec![true, true, true])
    );
    assert_eq!(
        col(valid, "score").as_primitive::<Float64Type>(),
        &Float64Array::from(vec![1.5, 0.0, -25.0])
    );
    let joined = col(valid, "joined").as_primitive::<Date32Type>();
    assert_eq!(joined.values().to_vec(), vec![19724, 19756, 11322]);
    let last = col(valid, "last_login").as_primitive::<TimestampMicrosecondType>();
    assert_eq!(
        last.iter().collect::<Vec<_>>(),
        vec![
            Some(MICROS_2024_01_02_08_00),
            None,
            Some(1_709_528_767_000_000)
        ]
    );
    assert_eq!(
        last.data_type(),
        &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
    );
}

#[test]
fn errors_serialize_like_the_error_sink_expects() {
    let e = err(
        "age",
        ErrorKind::MissingColumn,
        "Field required (column missing from input)",
    );
    assert_eq!(
        serde_json::to_value(&e).unwrap(),
        json!({"field": "age", "type": "missing_column", "message": "Field required (column missing from input)"})
    );
}

#[test]
fn string_lengths_count_characters_not_bytes() {
    let schema = CompiledSchema::from_json_schema(&json!({
        "type": "object",
        "properties": {"s": {"type": "string", "minLength": 3, "maxLength": 3}},
        "required": ["s"]
    }))
    .unwrap();
    let input = text_batch(&[(
        "s",
        vec![Some("ééé"), Some("éé"), Some("日本語"), Some("abcd")],
    )]);
    let out = schema.validate(&input).unwrap();
    check_counts(&input, &out);
    let rows: Vec<usize> = out.invalid.iter().map(|(r, _)| *r).collect();
    assert_eq!(rows, vec![1, 3]);
    assert_eq!(
        out.invalid[0].1[0].message,
        "String should have at least 3 characters"
    );
    assert_eq!(
        out.invalid[1].1[0].message,
        "String should have at most 3 characters"
    );
}

#[test]
fn formats_and_numeric_constraints() {
    let schema = CompiledSchema::from_json_schema(&json!({
        "type": "object",
        "properties": {
            "u": {"type": "string", "format": "uuid"},
            "w": {"type": "string", "format": "uri"},
            "ip": {"type": "string", "format": "ipv4"},
            "n": {"type": "number", "multipleOf": 0.5, "exclusiveMinimum": 0},
            "k": {"type": "integer", "multipleOf": 5, "maximum": 20},
            "c": {"type": "integer", "const": 2},
            "p": {"type": "string", "pattern": "b+"}
        }
    }))
    .unwrap();
    let input = text_batch(&[
        (
            "u",
            vec![Some("123e4567-e89b-42d3-a456-426614174000"), Some("xyz")],
        ),
        ("w", vec![Some("https://example.com/a"), Some("/relative")]),
        ("ip", vec![Some("10.0.0.1"), Some("1.2.3.999")]),
        ("n", vec![Some("2.5"), Some("0.3")]),
        ("k", vec![Some("15"), Some("25")]),
        ("c", vec![Some("2"), Some("3")]),
        // Search semantics: "abba" matches the unanchored pattern.
        ("p", vec![Some("abba"), Some("ac")]),
    ]);
    let out = schema.validate(&input).unwrap();
    check_counts(&input, &out);
    assert_eq!(out.valid.num_rows(), 1);
    let c = ErrorKind::Constraint;
    assert_eq!(
        out.invalid,
        vec![(
            1,
            vec![
                err("u", c, "Input should be a valid UUID"),
                err("w", c, "Input should be a valid URL"),
                err("ip", c, "Input should be a valid IPv4 address"),
                err("n", c, "Input should be a multiple of 0.5"),
                // multipleOf runs first; one error per field, like pydantic.
                err("k", c, "Input should be less than or equal to 20"),
                err("c", c, "Input should be 2"),
                err("p", c, "String should match pattern 'b+'"),
            ]
        )]
    );
    let n = out
        .valid
        .column_by_name("n")
        .unwrap()
        .as_primitive::<Float64Type>();
    assert_eq!(n.value(0), 2.5);
}

#[test]
fn typed_inputs_are_cast_without_silent_truncation() {
    let schema = CompiledSchema::from_json_schema(&json!({
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "qty": {"type": "integer"},
            "price": {"type": "number"},
            "at": {"type": "string", "format": "date-time"},
            "at_zoned": {"type": "string", "format": "date-time"},
            "label": {"type": "string"},
            "flag": {"type": "boolean"}
        },
        "required": ["id", "qty", "price", "at", "at_zoned", "label", "flag"]
    }))
    .unwrap();
    let ms = 1_704_182_400_000; // 2024-01-02T08:00:00Z
    let input = typed_batch(vec![
        ("id", Arc::new(Int32Array::from(vec![1, 2, 3])) as ArrayRef),
        (
            "qty",
            Arc::new(Float64Array::from(vec![1.0, 2.5, f64::NAN])),
        ),
        ("price", Arc::new(Int32Array::from(vec![10, 20, 30]))),
        (
            "at",
            Arc::new(TimestampMillisecondArray::from(vec![ms, ms + 1, ms + 2])),
        ),
        (
            "at_zoned",
            Arc::new(TimestampMillisecondArray::from(vec![ms, ms, ms]).with_timezone("+02:00")),
        ),
        // A number where a string belongs would fail, as in pydantic (see `pydantic_models`).
        ("label", Arc::new(StringArray::from(vec!["7", "8", "9"]))),
        ("flag", Arc::new(Int32Array::from(vec![1, 0, 2]))),
    ]);
    let out = schema.validate(&input).unwrap();
    check_counts(&input, &out);
    assert_eq!(
        out.invalid,
        vec![
            (
                1,
                vec![err(
                    "qty",
                    ErrorKind::Coercion,
                    "Input should be a valid integer, got a number with a fractional part"
                )]
            ),
            (
                2,
                vec![
                    err(
                        "qty",
                        ErrorKind::Coercion,
                        "Input should be a finite number"
                    ),
                    err(
                        "flag",
                        ErrorKind::Coercion,
                        "Input should be a valid boolean, unable to interpret input"
                    ),
                ]
            ),
        ]
    );
    let v = &out.valid;
    assert_eq!(v.schema(), schema.arrow_schema());
    assert_eq!(col(v, "id").as_primitive::<Int64Type>().value(0), 1);
    assert_eq!(col(v, "qty").as_primitive::<Int64Type>().value(0), 1);
    assert_eq!(col(v, "price").as_primitive::<Float64Type>().value(0), 10.0);
    // Zoned timestamps hold UTC epoch values already; naive ones are read as UTC.
    assert_eq!(
        col(v, "at")
            .as_primitive::<TimestampMicrosecondType>()
            .value(0),
        MICROS_2024_01_02_08_00
    );
    assert_eq!(
        col(v, "at_zoned")
            .as_primitive::<TimestampMicrosecondType>()
            .value(0),
        MICROS_2024_01_02_08_00
    );
    assert_eq!(col(v, "label").as_string::<i32>().value(0), "7");
    assert!(col(v, "flag").as_boolean().value(0));
}

#[test]
fn missing_columns() {
    let schema = CompiledSchema::from_json_str(USER_SCHEMA).unwrap();
    // No "email" (required) and no "role"/"active"/"last_login" (defaults / null).
    let input = text_batch(&[
        ("id", vec![Some("1"), Some("2")]),
        ("name", vec![Some("alice"), Some("bob")]),
        ("joined", vec![Some("2024-01-02"), Some("2024-01-03")]),
    ]);
    let out = schema.validate(&input).unwrap();
    check_counts(&input, &out);
    let missing = err(
        "email",
        ErrorKind::MissingColumn,
        "Field required (column missing from input)",
    );
    assert_eq!(
        out.invalid,
        vec![(0, vec![missing.clone()]), (1, vec![missing])]
    );

    // Once the required column is there, absent optional columns get their defaults or null.
    let input = text_batch(&[
        ("id", vec![Some("1")]),
        ("name", vec![Some("alice")]),
        ("email", vec![Some("a@b.co")]),
        ("joined", vec![Some("2024-01-02")]),
    ]);
    let out = schema.validate(&input).unwrap();
    assert!(out.invalid.is_empty());
    let v = &out.valid;
    assert_eq!(col(v, "role").as_string::<i32>().value(0), "user");
    assert!(col(v, "active").as_boolean().value(0));
    assert_eq!(col(v, "score").as_primitive::<Float64Type>().value(0), 0.0);
    assert!(col(v, "age").is_null(0));
    assert!(col(v, "last_login").is_null(0));
}

#[test]
fn additional_properties_false_rejects_non_null_extras() {
    let schema = CompiledSchema::from_json_schema(&json!({
        "additionalProperties": false,
        "properties": {"a": {"title": "A", "type": "integer"}},
        "required": ["a"],
        "title": "M",
        "type": "object"
    }))
    .unwrap();
    assert!(!schema.additional_properties());
    let input = text_batch(&[
        ("a", vec![Some("1"), Some("2"), Some("x")]),
        ("extra", vec![None, Some("surprise"), Some("also")]),
    ]);
    let out = schema.validate(&input).unwrap();
    check_counts(&input, &out);
    assert_eq!(
        out.invalid,
        vec![
            (
                1,
                vec![err(
                    "extra",
                    ErrorKind::ExtraColumn,
                    "Extra inputs are not permitted"
                )]
            ),
            (
                2,
                vec![
                    err(
                        "a",
                        ErrorKind::Coercion,
                        "Input should be a valid integer, unable to parse string as an integer"
                    ),
                    err(
                        "extra",
                        ErrorKind::ExtraColumn,
                        "Extra inputs are not permitted"
                    ),
                ]
            ),
        ]
    );
    assert_eq!(out.valid.num_columns(), 1);
    assert_eq!(col(&out.valid, "a").as_primitive::<Int64Type>().value(0), 1);
}

#[test]
fn pydantic_generated_fixture_compiles_and_validates() {
    let text = include_str!("fixtures/pydantic_customer.schema.json");
    let schema = CompiledSchema::from_json_str(text).unwrap();
    let input = text_batch(&[
        ("id", vec![Some("1"), Some("0")]),
        ("name", vec![Some("Ann"), Some("")]),
        ("email", vec![Some("ann@example.com"), Some("bad")]),
        ("score", vec![Some("99.5"), Some("0.3")]),
        ("plan", vec![Some("pro"), Some("gold")]),
        ("signup_date", vec![Some("2024-01-02"), Some("2024-01-02")]),
        (
            "account_id",
            vec![Some("123e4567-e89b-42d3-a456-426614174000"), Some("xyz")],
        ),
        ("website", vec![Some("https://example.com"), Some("/rel")]),
        ("ip", vec![Some("10.1.2.3"), Some("1.2.3.999")]),
        ("code", vec![Some("ABC-1234"), Some("abc")]),
        ("tier", vec![None, Some("d")]),
        ("version", vec![None, Some("3")]),
    ]);
    let out = schema.validate(&input).unwrap();
    check_counts(&input, &out);
    assert_eq!(out.valid.num_rows(), 1);
    let (row, errors) = &out.invalid[0];
    assert_eq!(*row, 1);
    // Messages checked against pydantic 2.14 output for the same values (see the report for the
    // few deliberate wording differences: email/uuid/url details and the IPv4 message).
    let messages: Vec<(&str, &str)> = errors
        .iter()
        .map(|e| (e.field.as_deref().unwrap(), e.message.as_str()))
        .collect();
    assert_eq!(
        messages,
        vec![
            ("id", "Input should be greater than or equal to 1"),
            ("name", "String should have at least 1 character"),
            ("email", "value is not a valid email address"),
            ("score", "Input should be a multiple of 0.5"),
            ("plan", "Input should be 'free', 'pro' or 'enterprise'"),
            ("account_id", "Input should be a valid UUID"),
            ("website", "Input should be a valid URL"),
            ("ip", "Input should be a valid IPv4 address"),
            ("code", "String should match pattern '^[A-Z]{3}-\\d{4}$'"),
            ("tier", "Input should be 'a', 'b' or 'c'"),
            ("version", "Input should be 2"),
        ]
    );
    let v = &out.valid;
    assert_eq!(col(v, "tier").as_string::<i32>().value(0), "a");
    assert_eq!(col(v, "version").as_primitive::<Int64Type>().value(0), 2);
    assert_eq!(col(v, "plan").as_string::<i32>().value(0), "pro");
    assert!(col(v, "active").as_boolean().value(0));
}

#[test]
fn empty_batch_and_from_arrow_passthrough() {
    let schema = CompiledSchema::from_json_str(USER_SCHEMA).unwrap();
    let input = text_batch(&[("id", vec![]), ("name", vec![])]);
    let out = schema.validate(&input).unwrap();
    assert_eq!(out.valid.num_rows(), 0);
    assert!(out.invalid.is_empty());

    let typed = typed_batch(vec![
        (
            "a",
            Arc::new(Int32Array::from(vec![Some(1), None])) as ArrayRef,
        ),
        ("b", Arc::new(StringArray::from(vec![Some("x"), None]))),
    ]);
    let schema = CompiledSchema::from_arrow(&typed.schema());
    let out = schema.validate(&typed).unwrap();
    assert!(out.invalid.is_empty());
    assert_eq!(out.valid.columns(), typed.columns());
}
