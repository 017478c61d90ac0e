//! Per-column checks compiled from JSON Schema constraint keywords.
//!
//! Everything expensive (regexes, enum sets, messages) is built here once, at schema compile time,
//! so validating a batch only runs the prepared checks.

/// Longest `pattern` accepted, in characters.
pub const MAX_PATTERN_LEN: usize = 4096;
/// Largest compiled `pattern` program, in bytes (the regex crate's own limit is 10 MiB).
pub const MAX_PATTERN_PROGRAM: usize = 1 << 20;

use std::collections::HashSet;

use arrow::datatypes::DataType;
use serde_json::Value;

use super::SchemaError;
use crate::validate::text::{parse_date_days, parse_iso_datetime_micros};

/// A compiled check plus what is needed to describe it and write it back as JSON Schema.
#[derive(Debug, Clone)]
pub(crate) struct Check {
    pub(crate) rule: Rule,
    /// pydantic's error message for a failing value, prepared once.
    pub(crate) message: String,
    /// The JSON Schema keyword and value it came from (for `to_json_schema`).
    pub(crate) keyword: &'static str,
    pub(crate) value: Value,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Bound {
    Int(i64),
    Float(f64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BoundOp {
    Ge,
    Gt,
    Le,
    Lt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Email,
    Uuid(Option<u8>),
    Uri,
    Ipv4,
    Ipv6,
    IpAny,
}

/// Allowed values, already in the column's physical type.
#[derive(Debug, Clone)]
pub(crate) enum EnumSet {
    Str(HashSet<String>),
    /// Int64, and also Date32 days / Timestamp micros.
    Int(HashSet<i64>),
    Float(Vec<f64>),
    Bool {
        allow_true: bool,
        allow_false: bool,
    },
}

#[derive(Debug, Clone)]
pub(crate) enum Rule {
    Bound(BoundOp, Bound),
    MultipleOf(Bound),
    MinLength(usize),
    MaxLength(usize),
    Pattern(super::Pattern),
    Format(Format),
    OneOf(EnumSet),
}

impl Check {
    /// A short human description for `describe()`.
    pub(crate) fn words(&self) -> String {
        match &self.rule {
            Rule::Bound(op, _) => {
                let sym = match op {
                    BoundOp::Ge => ">=",
                    BoundOp::Gt => ">",
                    BoundOp::Le => "<=",
                    BoundOp::Lt => "<",
                };
                format!("{sym} {}", self.value)
            }
            Rule::MultipleOf(_) => format!("multiple of {}", self.value),
            Rule::MinLength(n) => format!("at least {n} characters"),
            Rule::MaxLength(n) => format!("at most {n} characters"),
            Rule::Pattern(re) => format!("matches pattern '{}'", re.as_str()),
            Rule::Format(_) => format!("format {}", self.value.as_str().unwrap_or_default()),
            Rule::OneOf(_) if self.keyword == "const" => {
                format!("equals {}", python_repr(&self.value))
            }
            Rule::OneOf(_) => {
                let values = self.value.as_array().map(Vec::as_slice).unwrap_or_default();
                format!(
                    "one of {}",
                    values
                        .iter()
                        .map(python_repr)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        }
    }
}

fn unsupported(path: &str, message: impl Into<String>) -> SchemaError {
    SchemaError::Unsupported {
        path: path.to_string(),
        message: message.into(),
    }
}

fn invalid(path: &str, message: impl Into<String>) -> SchemaError {
    SchemaError::Invalid {
        path: path.to_string(),
        message: message.into(),
    }
}

fn number(value: &Value, path: &str) -> Result<Bound, SchemaError> {
    if let Some(i) = value.as_i64() {
        Ok(Bound::Int(i))
    } else if let Some(f) = value.as_f64() {
        Ok(Bound::Float(f))
    } else {
        Err(invalid(path, "expected a number"))
    }
}

fn length(value: &Value, path: &str) -> Result<usize, SchemaError> {
    value
        .as_u64()
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| invalid(path, "expected a non-negative integer"))
}

fn is_numeric(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Int64 | DataType::Float64 | DataType::Decimal128(_, _)
    )
}

/// Python's repr of a JSON scalar, as pydantic prints expected values ('a', 1, True).
pub(crate) fn python_repr(value: &Value) -> String {
    match value {
        Value::String(s) => format!("'{s}'"),
        Value::Bool(true) => "True".to_string(),
        Value::Bool(false) => "False".to_string(),
        Value::Null => "None".to_string(),
        other => other.to_string(),
    }
}

/// "Input should be 'a', 'b' or 'c'" — pydantic's literal_error wording.
fn enum_message(values: &[Value]) -> String {
    let reprs: Vec<String> = values.iter().map(python_repr).collect();
    match reprs.split_last() {
        Some((last, rest)) if !rest.is_empty() => {
            format!("Input should be {} or {last}", rest.join(", "))
        }
        _ => format!("Input should be {}", reprs.join("")),
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Compile one constraint keyword for a column of type `dt`. `path` points at the keyword.
pub(crate) fn compile(
    keyword: &str,
    value: &Value,
    dt: &DataType,
    path: &str,
) -> Result<Check, SchemaError> {
    let numeric_only = || {
        if is_numeric(dt) {
            Ok(())
        } else {
            Err(unsupported(
                path,
                format!("'{keyword}' only applies to integer or number fields"),
            ))
        }
    };
    let string_only = || {
        if *dt == DataType::Utf8 {
            Ok(())
        } else {
            Err(unsupported(
                path,
                format!("'{keyword}' only applies to plain string fields"),
            ))
        }
    };
    let (keyword, rule, message): (&'static str, Rule, String) = match keyword {
        "minimum" | "maximum" | "exclusiveMinimum" | "exclusiveMaximum" => {
            numeric_only()?;
            let mut bound = number(value, path)?;
            // pydantic writes a Decimal's bounds as floats (`ge=0` → 0.0) and says them as
            // decimals ("greater than or equal to 0"): compare exactly, say them the same.
            let mut shown = value.to_string();
            if let (DataType::Decimal128(..), Bound::Float(f)) = (dt, bound)
                && f.fract() == 0.0
                && f.abs() < 9.0e15
            {
                bound = Bound::Int(f as i64);
                shown = (f as i64).to_string();
            }
            let (kw, op, words): (&'static str, _, _) = match keyword {
                "minimum" => ("minimum", BoundOp::Ge, "greater than or equal to"),
                "exclusiveMinimum" => ("exclusiveMinimum", BoundOp::Gt, "greater than"),
                "maximum" => ("maximum", BoundOp::Le, "less than or equal to"),
                _ => ("exclusiveMaximum", BoundOp::Lt, "less than"),
            };
            (
                kw,
                Rule::Bound(op, bound),
                format!("Input should be {words} {shown}"),
            )
        }
        "multipleOf" => {
            numeric_only()?;
            let bound = number(value, path)?;
            if matches!(bound, Bound::Int(0))
                || matches!(bound, Bound::Float(f) if f <= 0.0 || !f.is_finite())
            {
                return Err(invalid(path, "multipleOf must be a positive number"));
            }
            let bound = match bound {
                Bound::Int(i) if i < 0 => {
                    return Err(invalid(path, "multipleOf must be a positive number"));
                }
                other => other,
            };
            (
                "multipleOf",
                Rule::MultipleOf(bound),
                format!("Input should be a multiple of {value}"),
            )
        }
        "minLength" => {
            string_only()?;
            let n = length(value, path)?;
            (
                "minLength",
                Rule::MinLength(n),
                format!("String should have at least {n} character{}", plural(n)),
            )
        }
        "maxLength" => {
            string_only()?;
            let n = length(value, path)?;
            (
                "maxLength",
                Rule::MaxLength(n),
                format!("String should have at most {n} character{}", plural(n)),
            )
        }
        "pattern" => {
            string_only()?;
            let text = value
                .as_str()
                .ok_or_else(|| invalid(path, "pattern must be a string"))?;
            // pydantic-core also uses the Rust regex engine, so search semantics and syntax match;
            // look-around/backreferences (Python `re` only) are refused here.
            // Bounded: one hostile pattern must not take a coordinator's or worker's memory.
            if text.len() > MAX_PATTERN_LEN {
                return Err(unsupported(
                    path,
                    format!("pattern is longer than {MAX_PATTERN_LEN} characters"),
                ));
            }
            let re = regex::RegexBuilder::new(text)
                .size_limit(MAX_PATTERN_PROGRAM)
                .build()
                .map_err(|e| {
                    unsupported(
                        path,
                        format!("pattern does not compile with the Rust regex engine: {e}"),
                    )
                })?;
            (
                "pattern",
                Rule::Pattern(super::Pattern::new(re)),
                format!("String should match pattern '{text}'"),
            )
        }
        "enum" | "const" => {
            let values: Vec<Value> = if keyword == "const" {
                vec![value.clone()]
            } else {
                value
                    .as_array()
                    .filter(|a| !a.is_empty())
                    .cloned()
                    .ok_or_else(|| invalid(path, "enum must be a non-empty array"))?
            };
            let set = enum_set(&values, dt, path)?;
            let kw: &'static str = if keyword == "const" { "const" } else { "enum" };
            (kw, Rule::OneOf(set), enum_message(&values))
        }
        other => {
            return Err(unsupported(
                path,
                format!("keyword '{other}' is not supported"),
            ));
        }
    };
    Ok(Check {
        rule,
        message,
        keyword,
        value: value.clone(),
    })
}

/// Compile a string `format` that is a check (date/date-time change the column type instead).
pub(crate) fn compile_format(name: &str, path: &str) -> Result<Option<Check>, SchemaError> {
    let (format, message) = match name {
        "email" => (Format::Email, "value is not a valid email address"),
        "uuid" => (Format::Uuid(None), "Input should be a valid UUID"),
        "uuid1" => (Format::Uuid(Some(1)), "UUID version 1 expected"),
        "uuid3" => (Format::Uuid(Some(3)), "UUID version 3 expected"),
        "uuid4" => (Format::Uuid(Some(4)), "UUID version 4 expected"),
        "uuid5" => (Format::Uuid(Some(5)), "UUID version 5 expected"),
        "uri" => (Format::Uri, "Input should be a valid URL"),
        "ipv4" => (Format::Ipv4, "Input should be a valid IPv4 address"),
        "ipv6" => (Format::Ipv6, "Input should be a valid IPv6 address"),
        "ipvanyaddress" => (Format::IpAny, "value is not a valid IPv4 or IPv6 address"),
        "password" => return Ok(None),
        other => {
            return Err(unsupported(
                path,
                format!("string format '{other}' is not supported"),
            ));
        }
    };
    Ok(Some(Check {
        rule: Rule::Format(format),
        message: message.to_string(),
        keyword: "format",
        value: Value::String(name.to_string()),
    }))
}

/// Enum values converted to the column's physical type; a value of the wrong type is a schema error.
fn enum_set(values: &[Value], dt: &DataType, path: &str) -> Result<EnumSet, SchemaError> {
    let wrong = |v: &Value| {
        invalid(
            path,
            format!("enum value {v} does not match the field type {dt}"),
        )
    };
    Ok(match dt {
        DataType::Utf8 => EnumSet::Str(
            values
                .iter()
                .map(|v| v.as_str().map(str::to_string).ok_or_else(|| wrong(v)))
                .collect::<Result<_, _>>()?,
        ),
        DataType::Int64 => EnumSet::Int(
            values
                .iter()
                .map(|v| {
                    v.as_i64()
                        .or_else(|| v.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
                        .ok_or_else(|| wrong(v))
                })
                .collect::<Result<_, _>>()?,
        ),
        DataType::Float64 => EnumSet::Float(
            values
                .iter()
                .map(|v| v.as_f64().ok_or_else(|| wrong(v)))
                .collect::<Result<_, _>>()?,
        ),
        DataType::Boolean => {
            let mut allow_true = false;
            let mut allow_false = false;
            for v in values {
                match v.as_bool().ok_or_else(|| wrong(v))? {
                    true => allow_true = true,
                    false => allow_false = true,
                }
            }
            EnumSet::Bool {
                allow_true,
                allow_false,
            }
        }
        DataType::Date32 => EnumSet::Int(
            values
                .iter()
                .map(|v| {
                    v.as_str()
                        .and_then(parse_date_days)
                        .map(i64::from)
                        .ok_or_else(|| wrong(v))
                })
                .collect::<Result<_, _>>()?,
        ),
        DataType::Timestamp(_, _) => EnumSet::Int(
            values
                .iter()
                .map(|v| {
                    v.as_str()
                        .and_then(parse_iso_datetime_micros)
                        .ok_or_else(|| wrong(v))
                })
                .collect::<Result<_, _>>()?,
        ),
        other => {
            return Err(unsupported(
                path,
                format!("enum on {other} fields is not supported"),
            ));
        }
    })
}
