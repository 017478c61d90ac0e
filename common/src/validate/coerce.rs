//! Column-at-a-time coercion of an input array to a field's output type.
//!
//! Arrow's cast kernels are the fast path. Values a kernel turns into null although the input
//! was not null are re-examined with the lax pydantic-like parsers in `text`; only those that
//! still fail become row errors. Where arrow's semantics differ from pydantic's (float → int
//! would truncate, text → bool, text → date and date-time, which pydantic parses with its own
//! rules), a single loop over the values replaces the kernel.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, ArrowPrimitiveType, AsArray, BooleanArray, BooleanBufferBuilder,
    PrimitiveArray, StringArray, new_null_array,
};
use arrow::buffer::NullBuffer;
use arrow::compute::{CastOptions, cast, cast_with_options};
use arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Float64Type, Int64Type, TimeUnit,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType,
};
use arrow::error::ArrowError;

use super::{decimal, text};

pub(crate) const INT_PARSING: &str =
    "Input should be a valid integer, unable to parse string as an integer";
pub(crate) const INT_FRACTION: &str =
    "Input should be a valid integer, got a number with a fractional part";
pub(crate) const FINITE_NUMBER: &str = "Input should be a finite number";
pub(crate) const FLOAT_PARSING: &str =
    "Input should be a valid number, unable to parse string as a number";
pub(crate) const BOOL_PARSING: &str = "Input should be a valid boolean, unable to interpret input";
pub(crate) const DATETIME_PARSING: &str =
    "Input should be a valid datetime, unable to parse input as an ISO 8601 date-time";
pub(crate) const DATE_PARSING: &str =
    "Input should be a valid date, unable to parse input as a date in the format YYYY-MM-DD";

/// The coerced column (failed rows are null) and the failing rows, ascending, with messages.
pub(crate) struct Coerced {
    pub(crate) array: ArrayRef,
    pub(crate) failures: Vec<(usize, &'static str)>,
}

impl Coerced {
    fn ok(array: ArrayRef) -> Self {
        Self {
            array,
            failures: Vec::new(),
        }
    }
}

const SAFE: CastOptions<'static> = CastOptions {
    safe: true,
    format_options: arrow::util::display::FormatOptions::new(),
};

/// Generic message when a cast kernel rejects a value, by target type.
pub(crate) fn type_message(target: &DataType) -> &'static str {
    match target {
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => {
            "Input should be a valid integer"
        }
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => {
            "Input should be a valid integer"
        }
        DataType::Float16 | DataType::Float32 | DataType::Float64 => {
            "Input should be a valid number"
        }
        DataType::Boolean => "Input should be a valid boolean",
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            "Input should be a valid string"
        }
        DataType::Date32 | DataType::Date64 => "Input should be a valid date",
        DataType::Timestamp(_, _) => "Input should be a valid datetime",
        _ => "Input could not be converted to the column type",
    }
}

fn is_utc_micros(target: &DataType) -> bool {
    matches!(target, DataType::Timestamp(TimeUnit::Microsecond, Some(tz)) if tz.as_ref() == "UTC")
}

pub(crate) fn coerce(input: &ArrayRef, target: &DataType) -> Result<Coerced, ArrowError> {
    if input.data_type() == target {
        return Ok(Coerced::ok(Arc::clone(input)));
    }
    // All string flavours take the Utf8 path.
    let input = match input.data_type() {
        DataType::LargeUtf8 | DataType::Utf8View => cast(input, &DataType::Utf8)?,
        _ => Arc::clone(input),
    };
    if input.data_type() == target {
        return Ok(Coerced::ok(input));
    }
    let source = input.data_type().clone();
    match (&source, target) {
        (DataType::Utf8, DataType::Int64) => {
            text_with_fast_path::<Int64Type>(&input, target, INT_PARSING, text::parse_int)
        }
        (DataType::Utf8, DataType::Float64) => {
            text_with_fast_path::<Float64Type>(&input, target, FLOAT_PARSING, text::parse_float)
        }
        (DataType::Utf8, DataType::Boolean) => Ok(text_to_bool(input.as_string::<i32>())),
        (DataType::Utf8, DataType::Decimal128(p, s)) => {
            Ok(decimal::text_to_decimal(input.as_string::<i32>(), *p, *s))
        }
        // Numbers (and other decimals) go by their exact text: never rounded into the column.
        (s, DataType::Decimal128(p, sc)) if s.is_numeric() => {
            let text = cast(&input, &DataType::Utf8)?;
            Ok(decimal::text_to_decimal(text.as_string::<i32>(), *p, *sc))
        }
        // pydantic refuses a number, boolean, date or time where a string belongs (typed
        // Parquet/Arrow columns; JSON values are flagged by the reader).
        (s, DataType::Utf8) if s.is_numeric() || s.is_temporal() || *s == DataType::Boolean => {
            Ok(every_value_fails(&input, target))
        }
        (DataType::Utf8, DataType::Date32) => Ok(text_to_date(input.as_string::<i32>())),
        (DataType::Utf8, t) if is_utc_micros(t) => {
            Ok(text_to_timestamp(input.as_string::<i32>(), target))
        }
        (s, DataType::Int64) if s.is_floating() => float_to_int(&input),
        (
            DataType::Decimal32(_, scale)
            | DataType::Decimal64(_, scale)
            | DataType::Decimal128(_, scale)
            | DataType::Decimal256(_, scale),
            DataType::Int64,
        ) => decimal_to_int(&input, *scale),
        (s, DataType::Boolean) if s.is_numeric() => numeric_to_bool(&input),
        (DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64, t)
            if is_utc_micros(t) =>
        {
            temporal_to_utc_micros(&input)
        }
        (s, t) if s.is_numeric() && is_utc_micros(t) => numeric_to_timestamp(&input),
        _ => generic(&input, target),
    }
}

/// A null column of `target`, every non-null input value a failure with the type's message.
fn every_value_fails(input: &ArrayRef, target: &DataType) -> Coerced {
    let message = type_message(target);
    Coerced {
        array: new_null_array(target, input.len()),
        failures: (0..input.len())
            .filter(|&row| input.is_valid(row))
            .map(|row| (row, message))
            .collect(),
    }
}

/// Any other pair: arrow's safe cast; values it nulls are failures, an impossible cast fails every value.
fn generic(input: &ArrayRef, target: &DataType) -> Result<Coerced, ArrowError> {
    let message = type_message(target);
    match cast_with_options(input, target, &SAFE) {
        Ok(array) => {
            let failures = newly_null(input.as_ref(), array.as_ref())
                .into_iter()
                .map(|row| (row, message))
                .collect();
            Ok(Coerced { array, failures })
        }
        Err(ArrowError::CastError(_) | ArrowError::NotYetImplemented(_)) => {
            Ok(every_value_fails(input, target))
        }
        Err(e) => Err(e),
    }
}

/// Rows valid in `before` but null in `after`; cheap when null counts already match.
fn newly_null(before: &dyn Array, after: &dyn Array) -> Vec<usize> {
    if before.null_count() == after.null_count() {
        return Vec::new();
    }
    (0..before.len())
        .filter(|&i| before.is_valid(i) && after.is_null(i))
        .collect()
}

/// Text → primitive via arrow's cast, then the lax parser for whatever the kernel refused.
fn text_with_fast_path<T: ArrowPrimitiveType>(
    input: &ArrayRef,
    target: &DataType,
    message: &'static str,
    parse: impl Fn(&str) -> Option<T::Native>,
) -> Result<Coerced, ArrowError> {
    let fast = cast_with_options(input, target, &SAFE)?;
    let retry = newly_null(input.as_ref(), fast.as_ref());
    if retry.is_empty() {
        return Ok(Coerced::ok(fast));
    }
    let strings = input.as_string::<i32>();
    let fast = fast.as_primitive::<T>();
    let mut values = fast.values().to_vec();
    let mut valid = validity_builder(fast);
    let mut failures = Vec::new();
    for row in retry {
        match parse(strings.value(row)) {
            Some(v) => {
                values[row] = v;
                valid.set_bit(row, true);
            }
            None => failures.push((row, message)),
        }
    }
    let array = PrimitiveArray::<T>::new(values.into(), Some(NullBuffer::new(valid.finish())))
        .with_data_type(target.clone());
    Ok(Coerced {
        array: Arc::new(array),
        failures,
    })
}

fn validity_builder(array: &dyn Array) -> BooleanBufferBuilder {
    let mut builder = BooleanBufferBuilder::new(array.len());
    match array.logical_nulls() {
        Some(nulls) => builder.append_buffer(nulls.inner()),
        None => builder.append_n(array.len(), true),
    }
    builder
}

/// Build a primitive column with one pass of `convert` over the non-null rows of `input`.
fn map_rows<T: ArrowPrimitiveType, S>(
    len: usize,
    target: &DataType,
    value_at: impl Fn(usize) -> Option<S>,
    convert: impl Fn(S) -> Result<T::Native, &'static str>,
) -> Coerced {
    let mut values = Vec::with_capacity(len);
    let mut valid = BooleanBufferBuilder::new(len);
    let mut failures = Vec::new();
    for row in 0..len {
        let converted = match value_at(row) {
            None => None,
            Some(v) => match convert(v) {
                Ok(out) => Some(out),
                Err(message) => {
                    failures.push((row, message));
                    None
                }
            },
        };
        valid.append(converted.is_some());
        values.push(converted.unwrap_or_default());
    }
    let array = PrimitiveArray::<T>::new(values.into(), Some(NullBuffer::new(valid.finish())))
        .with_data_type(target.clone());
    Coerced {
        array: Arc::new(array),
        failures,
    }
}

fn text_to_date(strings: &StringArray) -> Coerced {
    map_rows::<Date32Type, &str>(
        strings.len(),
        &DataType::Date32,
        |i| strings.is_valid(i).then(|| strings.value(i)),
        |s| text::parse_date_lax(s).ok_or(DATE_PARSING),
    )
}

fn text_to_bool(strings: &StringArray) -> Coerced {
    let len = strings.len();
    let mut values = BooleanBufferBuilder::new(len);
    let mut valid = BooleanBufferBuilder::new(len);
    let mut failures = Vec::new();
    for row in 0..len {
        let parsed = if strings.is_valid(row) {
            let parsed = text::parse_bool(strings.value(row));
            if parsed.is_none() {
                failures.push((row, BOOL_PARSING));
            }
            parsed
        } else {
            None
        };
        valid.append(parsed.is_some());
        values.append(parsed.unwrap_or(false));
    }
    let array = BooleanArray::new(values.finish(), Some(NullBuffer::new(valid.finish())));
    Coerced {
        array: Arc::new(array),
        failures,
    }
}

/// Text → Timestamp(µs, UTC), one value at a time with pydantic's own parser (speedate): arrow's
/// kernel takes what pydantic refuses (`+05` offsets, a 60th second, spaces around the value,
/// one-digit hours) and refuses what it takes (`_` as the separator, `,` before the fraction).
fn text_to_timestamp(strings: &StringArray, target: &DataType) -> Coerced {
    map_rows::<TimestampMicrosecondType, &str>(
        strings.len(),
        target,
        |i| strings.is_valid(i).then(|| strings.value(i)),
        |s| text::parse_datetime_micros(s).ok_or(DATETIME_PARSING),
    )
}

/// Decimal → Int64 only for whole values that fit: arrow's cast would truncate 999.99 to 999.
fn decimal_to_int(input: &ArrayRef, scale: i8) -> Result<Coerced, ArrowError> {
    // Other widths through Decimal128: exact for 32/64 bits; a 256-bit value past 38 digits
    // (which no i64 holds anyway) becomes null there, and fails.
    let wide = match input.data_type() {
        DataType::Decimal128(..) => Arc::clone(input),
        _ => cast_with_options(input, &DataType::Decimal128(38, scale), &SAFE)?,
    };
    let too_wide = newly_null(input.as_ref(), wide.as_ref());
    let decimals = wide.as_primitive::<Decimal128Type>();
    // A Decimal128's scale is within ±38, and 10^38 fits an i128.
    let unit = 10i128.pow(u32::from(scale.unsigned_abs()));
    let mut coerced = map_rows::<Int64Type, i128>(
        decimals.len(),
        &DataType::Int64,
        |i| decimals.is_valid(i).then(|| decimals.value(i)),
        |v| {
            let whole = if scale >= 0 {
                if v % unit != 0 {
                    return Err(INT_FRACTION);
                }
                Some(v / unit)
            } else {
                v.checked_mul(unit)
            };
            whole.and_then(|w| i64::try_from(w).ok()).ok_or(INT_PARSING)
        },
    );
    if !too_wide.is_empty() {
        coerced
            .failures
            .extend(too_wide.into_iter().map(|row| (row, INT_PARSING)));
        coerced.failures.sort_by_key(|f| f.0);
    }
    Ok(coerced)
}

/// Float → Int64 only for whole values: arrow's cast would truncate 4.5 to 4 silently.
fn float_to_int(input: &ArrayRef) -> Result<Coerced, ArrowError> {
    let floats = cast(input, &DataType::Float64)?;
    let floats = floats.as_primitive::<Float64Type>();
    Ok(map_rows::<Int64Type, f64>(
        floats.len(),
        &DataType::Int64,
        |i| floats.is_valid(i).then(|| floats.value(i)),
        |v| {
            if !v.is_finite() {
                Err(FINITE_NUMBER)
            } else if v.fract() != 0.0 {
                Err(INT_FRACTION)
            } else if v.abs() >= 9.223_372_036_854_775e18 {
                Err(INT_PARSING)
            } else {
                Ok(v as i64)
            }
        },
    ))
}

/// Numbers → bool like pydantic: only 0 and 1 (arrow would map any non-zero to true).
fn numeric_to_bool(input: &ArrayRef) -> Result<Coerced, ArrowError> {
    let floats = cast(input, &DataType::Float64)?;
    let floats = floats.as_primitive::<Float64Type>();
    let len = floats.len();
    let mut values = BooleanBufferBuilder::new(len);
    let mut valid = BooleanBufferBuilder::new(len);
    let mut failures = Vec::new();
    for row in 0..len {
        let parsed = if floats.is_valid(row) {
            match floats.value(row) {
                0.0 => Some(false),
                1.0 => Some(true),
                _ => {
                    failures.push((row, BOOL_PARSING));
                    None
                }
            }
        } else {
            None
        };
        valid.append(parsed.is_some());
        values.append(parsed.unwrap_or(false));
    }
    let array = BooleanArray::new(values.finish(), Some(NullBuffer::new(valid.finish())));
    Ok(Coerced {
        array: Arc::new(array),
        failures,
    })
}

/// Timestamps of any unit/zone and dates → µs UTC. Arrow stores zoned timestamps as UTC epoch
/// values and naive ones as wall time, which we read as UTC, so only the unit changes.
fn temporal_to_utc_micros(input: &ArrayRef) -> Result<Coerced, ArrowError> {
    let target = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let scaled: PrimitiveArray<TimestampMicrosecondType> = match input.data_type() {
        DataType::Timestamp(TimeUnit::Second, _) => input
            .as_primitive::<TimestampSecondType>()
            .unary_opt(|v| v.checked_mul(1_000_000)),
        DataType::Timestamp(TimeUnit::Millisecond, _) => input
            .as_primitive::<TimestampMillisecondType>()
            .unary_opt(|v| v.checked_mul(1_000)),
        DataType::Timestamp(TimeUnit::Microsecond, _) => input
            .as_primitive::<TimestampMicrosecondType>()
            .clone()
            .with_timezone("UTC"),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => input
            .as_primitive::<TimestampNanosecondType>()
            .unary(|v| v.div_euclid(1_000)),
        DataType::Date32 => input
            .as_primitive::<Date32Type>()
            .unary_opt(|d| i64::from(d).checked_mul(86_400_000_000)),
        _ => {
            // Date64 (ms since epoch).
            let ms = cast(input, &DataType::Int64)?;
            ms.as_primitive::<Int64Type>()
                .unary_opt(|v| v.checked_mul(1_000))
        }
    };
    let array: ArrayRef = Arc::new(scaled.with_data_type(target.clone()));
    let failures = newly_null(input.as_ref(), array.as_ref())
        .into_iter()
        .map(|row| (row, DATETIME_PARSING))
        .collect();
    Ok(Coerced { array, failures })
}

/// Numbers → timestamp as Unix time (seconds, or ms when large), like pydantic.
fn numeric_to_timestamp(input: &ArrayRef) -> Result<Coerced, ArrowError> {
    let target = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let floats = cast(input, &DataType::Float64)?;
    let floats = floats.as_primitive::<Float64Type>();
    Ok(map_rows::<TimestampMicrosecondType, f64>(
        floats.len(),
        &target,
        |i| floats.is_valid(i).then(|| floats.value(i)),
        |v| text::unix_number_to_micros(v).ok_or(DATETIME_PARSING),
    ))
}
