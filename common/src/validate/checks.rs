//! Runs compiled checks on a coerced column and returns the rows that violate them.
//!
//! Numeric bounds use arrow's comparison kernels; the rest loop over the values (there is no
//! kernel for character length, enum sets or format parsing). Null values never fail a check:
//! they are either real nulls (handled by the required/default logic) or failed coercions.

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, Scalar};
use arrow::compute::cast;
use arrow::compute::kernels::cmp::{gt, gt_eq, lt, lt_eq};
use arrow::datatypes::{DataType, Date32Type, Float64Type, Int64Type, TimestampMicrosecondType};
use arrow::error::ArrowError;

use super::formats;
use crate::schema::{Bound, BoundOp, EnumSet, Format, Rule};

/// Rows (ascending) whose non-null value breaks `rule`.
pub(crate) fn failing_rows(rule: &Rule, array: &ArrayRef) -> Result<Vec<usize>, ArrowError> {
    match rule {
        Rule::Bound(op, bound) => bound_violations(*op, *bound, array),
        Rule::MultipleOf(step) => multiple_of_violations(*step, array),
        Rule::MinLength(min) => Ok(string_violations(array, |s| !has_at_least_chars(s, *min))),
        Rule::MaxLength(max) => Ok(string_violations(array, |s| has_at_least_chars(s, max + 1))),
        Rule::Pattern(re) => Ok(string_violations(array, |s| !re.is_match(s))),
        Rule::Format(format) => Ok(string_violations(array, |s| !format_ok(*format, s))),
        Rule::OneOf(set) => enum_violations(set, array),
    }
}

/// Character count (like Python's `len`) compared with `n`, counting only when bytes can't decide.
fn has_at_least_chars(s: &str, n: usize) -> bool {
    // A char is 1..=4 bytes, so the byte length bounds the char count from both sides.
    if s.len() < n {
        false
    } else if s.len() / 4 >= n || s.is_ascii() {
        true
    } else {
        s.chars().count() >= n
    }
}

fn format_ok(format: Format, s: &str) -> bool {
    match format {
        Format::Email => formats::is_email(s),
        Format::Uuid(version) => formats::is_uuid(s, version),
        Format::Uri => formats::is_url(s),
        Format::Ipv4 => formats::is_ipv4(s),
        Format::Ipv6 => formats::is_ipv6(s),
        Format::IpAny => formats::is_ip(s),
    }
}

/// An integer bound as the unscaled value of a decimal of `scale`, if it fits.
fn decimal_bound(bound: i64, scale: i8) -> Option<i128> {
    let scale = u32::try_from(scale).ok()?;
    i128::from(bound).checked_mul(10i128.checked_pow(scale)?)
}

/// Set rows of a comparison result, ignoring null results.
fn true_rows(mask: &BooleanArray) -> Vec<usize> {
    match mask.nulls() {
        Some(nulls) => (mask.values() & nulls.inner()).set_indices().collect(),
        None => mask.values().set_indices().collect(),
    }
}

fn bound_violations(op: BoundOp, bound: Bound, array: &ArrayRef) -> Result<Vec<usize>, ArrowError> {
    // Compare in the column's type when the bound fits it, else in Float64 (e.g. int >= 0.5).
    let (values, scalar): (ArrayRef, ArrayRef) = match (array.data_type(), bound) {
        (DataType::Int64, Bound::Int(b)) => (
            array.clone(),
            std::sync::Arc::new(Int64Array::from(vec![b])),
        ),
        // Exact for decimals: the bound at the column's scale.
        (DataType::Decimal128(p, s), Bound::Int(b)) if decimal_bound(b, *s).is_some() => {
            let scaled = decimal_bound(b, *s).unwrap_or_default();
            (
                array.clone(),
                std::sync::Arc::new(
                    arrow::array::Decimal128Array::from(vec![scaled])
                        .with_data_type(DataType::Decimal128(*p, *s)),
                ),
            )
        }
        (_, Bound::Int(b)) => (
            cast(array, &DataType::Float64)?,
            std::sync::Arc::new(Float64Array::from(vec![b as f64])),
        ),
        (_, Bound::Float(b)) => (
            cast(array, &DataType::Float64)?,
            std::sync::Arc::new(Float64Array::from(vec![b])),
        ),
    };
    let limit = Scalar::new(scalar);
    // Each kernel computes "violates": e.g. `>= min` is violated where value < min.
    let violated = match op {
        BoundOp::Ge => lt(&values, &limit)?,
        BoundOp::Gt => lt_eq(&values, &limit)?,
        BoundOp::Le => gt(&values, &limit)?,
        BoundOp::Lt => gt_eq(&values, &limit)?,
    };
    let mut rows = true_rows(&violated);
    // NaN fails every bound in pydantic (each comparison with it is false); arrow's kernels
    // order it above +inf, so only upper bounds would catch it.
    if let Some(floats) = values.as_primitive_opt::<Float64Type>() {
        let before = rows.len();
        rows.extend((0..floats.len()).filter(|&i| floats.is_valid(i) && floats.value(i).is_nan()));
        if rows.len() > before {
            rows.sort_unstable();
            rows.dedup();
        }
    }
    Ok(rows)
}

fn multiple_of_violations(step: Bound, array: &ArrayRef) -> Result<Vec<usize>, ArrowError> {
    if let (DataType::Int64, Bound::Int(step)) = (array.data_type(), step) {
        let ints = array.as_primitive::<Int64Type>();
        return Ok(rows_where(ints.len(), |i| {
            ints.is_valid(i) && ints.value(i) % step != 0
        }));
    }
    let step = match step {
        Bound::Int(i) => i as f64,
        Bound::Float(f) => f,
    };
    let floats = cast(array, &DataType::Float64)?;
    let floats = floats.as_primitive::<Float64Type>();
    // pydantic-core's float tolerance: the remainder may be off by a relative 1e-9.
    Ok(rows_where(floats.len(), |i| {
        if floats.is_null(i) {
            return false;
        }
        let v = floats.value(i);
        let rem = v % step;
        let tolerance = v.abs() / 1e9;
        rem.abs() > tolerance && (rem.abs() - step).abs() > tolerance
    }))
}

fn rows_where(len: usize, predicate: impl Fn(usize) -> bool) -> Vec<usize> {
    (0..len).filter(|&i| predicate(i)).collect()
}

fn string_violations(array: &ArrayRef, violates: impl Fn(&str) -> bool) -> Vec<usize> {
    // Checks on strings are only compiled for Utf8 columns; anything else has nothing to check.
    let Some(strings) = array.as_string_opt::<i32>() else {
        return Vec::new();
    };
    rows_where(strings.len(), |i| {
        strings.is_valid(i) && violates(strings.value(i))
    })
}

fn enum_violations(set: &EnumSet, array: &ArrayRef) -> Result<Vec<usize>, ArrowError> {
    Ok(match (set, array.data_type()) {
        (EnumSet::Str(allowed), _) => string_violations(array, |s| !allowed.contains(s)),
        (EnumSet::Int(allowed), DataType::Int64) => {
            let v = array.as_primitive::<Int64Type>();
            rows_where(v.len(), |i| v.is_valid(i) && !allowed.contains(&v.value(i)))
        }
        (EnumSet::Int(allowed), DataType::Date32) => {
            let v = array.as_primitive::<Date32Type>();
            rows_where(v.len(), |i| {
                v.is_valid(i) && !allowed.contains(&i64::from(v.value(i)))
            })
        }
        (EnumSet::Int(allowed), DataType::Timestamp(_, _)) => {
            let v = array.as_primitive::<TimestampMicrosecondType>();
            rows_where(v.len(), |i| v.is_valid(i) && !allowed.contains(&v.value(i)))
        }
        (EnumSet::Float(allowed), DataType::Float64) => {
            let v = array.as_primitive::<Float64Type>();
            rows_where(v.len(), |i| v.is_valid(i) && !allowed.contains(&v.value(i)))
        }
        (
            EnumSet::Bool {
                allow_true,
                allow_false,
            },
            DataType::Boolean,
        ) => {
            let v = array.as_boolean();
            rows_where(v.len(), |i| {
                v.is_valid(i)
                    && !(if v.value(i) {
                        *allow_true
                    } else {
                        *allow_false
                    })
            })
        }
        (_, other) => {
            return Err(ArrowError::InvalidArgumentError(format!(
                "enum check does not apply to a {other} column"
            )));
        }
    })
}
