//! PostgreSQL's binary COPY values decoded straight into Arrow builders, one decoder per column.
//! A row is first checked whole (`check`: lengths, and values Arrow cannot hold such as a NaN
//! numeric or an infinite date), then appended (`append`), so a bad value never leaves a row
//! half-built: that row becomes an error row and the others go on.

use super::types::{ColumnType, interval_fields};
use arrow::array::NullBufferBuilder;
use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder,
    Float64Builder, Int16Builder, Int32Builder, Int64Builder, ListArray, StringBuilder,
    StructArray, Time64MicrosecondBuilder, TimestampMicrosecondBuilder,
};
use arrow::buffer::{OffsetBuffer, ScalarBuffer};
use arrow::datatypes::Field;
use std::sync::Arc;

/// Days from 1970-01-01 to PostgreSQL's epoch, 2000-01-01.
const PG_EPOCH_DAYS: i32 = 10_957;
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
const MICROS_PER_DAY: i64 = 86_400_000_000;
/// Dates and times Arrow holds but its readers and writers cannot print (chrono's range),
/// which PostgreSQL's go beyond (dates up to 5874897 AD).
const OUTSIDE_ARROW_YEARS: &str = "Input should be a valid {what} (its year is outside -262143 to 262142, which Arrow's readers hold)";

// Decoders live one per column: their sizes do not matter, boxing them would only add a hop.
#[allow(clippy::large_enum_variant)]
pub enum Decoder {
    Bool(BooleanBuilder),
    Int16(Int16Builder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Numeric {
        builder: Decimal128Builder,
        precision: u8,
        scale: i8,
    },
    Text(StringBuilder),
    Jsonb(StringBuilder),
    Uuid(StringBuilder),
    Bytea(BinaryBuilder),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder),
    Time(Time64MicrosecondBuilder),
    Interval {
        months: Int32Builder,
        days: Int32Builder,
        micros: Int64Builder,
        nulls: NullBufferBuilder,
    },
    List {
        field: Arc<Field>,
        offsets: Vec<i32>,
        nulls: NullBufferBuilder,
        element: Box<Decoder>,
    },
}

impl Decoder {
    pub fn new(kind: &ColumnType) -> Self {
        match kind {
            ColumnType::Bool => Self::Bool(BooleanBuilder::new()),
            ColumnType::Int16 => Self::Int16(Int16Builder::new()),
            ColumnType::Int32 => Self::Int32(Int32Builder::new()),
            ColumnType::Int64 => Self::Int64(Int64Builder::new()),
            ColumnType::Float32 => Self::Float32(Float32Builder::new()),
            ColumnType::Float64 => Self::Float64(Float64Builder::new()),
            ColumnType::Numeric { precision, scale } => Self::Numeric {
                builder: Decimal128Builder::new(),
                precision: *precision,
                scale: *scale,
            },
            ColumnType::Text => Self::Text(StringBuilder::new()),
            ColumnType::Jsonb => Self::Jsonb(StringBuilder::new()),
            ColumnType::Uuid => Self::Uuid(StringBuilder::new()),
            ColumnType::Bytea => Self::Bytea(BinaryBuilder::new()),
            ColumnType::Date => Self::Date(Date32Builder::new()),
            ColumnType::Timestamp => Self::Timestamp(TimestampMicrosecondBuilder::new()),
            ColumnType::TimestampTz => {
                Self::Timestamp(TimestampMicrosecondBuilder::new().with_timezone("UTC"))
            }
            ColumnType::Time => Self::Time(Time64MicrosecondBuilder::new()),
            ColumnType::Interval => Self::Interval {
                months: Int32Builder::new(),
                days: Int32Builder::new(),
                micros: Int64Builder::new(),
                nulls: NullBufferBuilder::new(0),
            },
            ColumnType::Array(element) => Self::List {
                field: Arc::new(Field::new("item", element.arrow(), true)),
                offsets: vec![0],
                nulls: NullBufferBuilder::new(0),
                element: Box::new(Decoder::new(element)),
            },
        }
    }

    /// Why `value` cannot be appended, if it cannot (checked before anything of its row is).
    pub fn check(&self, value: &[u8]) -> Result<(), String> {
        let sized = |n: usize| {
            if value.len() == n {
                Ok(())
            } else {
                Err(format!(
                    "a {n}-byte value came as {} bytes (corrupt COPY data)",
                    value.len()
                ))
            }
        };
        match self {
            Self::Bool(_) => sized(1),
            Self::Int16(_) => sized(2),
            Self::Int32(_) | Self::Float32(_) => sized(4),
            Self::Int64(_) | Self::Float64(_) => sized(8),
            Self::Time(_) => {
                sized(8)?;
                // PostgreSQL's `24:00:00`: no time of day in Arrow (or Python) is.
                if (0..MICROS_PER_DAY).contains(&be_i64(value)) {
                    Ok(())
                } else {
                    Err("Input should be a valid time (24:00:00 is not one)".into())
                }
            }
            Self::Uuid(_) => sized(16),
            Self::Interval { .. } => sized(16),
            Self::Date(_) => {
                sized(4)?;
                match be_i32(value) {
                    i32::MAX | i32::MIN => {
                        Err("Input should be a valid date (infinity is not one)".into())
                    }
                    days if chrono::DateTime::from_timestamp(
                        i64::from(days.saturating_add(PG_EPOCH_DAYS)) * 86_400,
                        0,
                    )
                    .is_none() =>
                    {
                        Err(OUTSIDE_ARROW_YEARS.replace("{what}", "date"))
                    }
                    _ => Ok(()),
                }
            }
            Self::Timestamp(_) => {
                sized(8)?;
                match be_i64(value) {
                    i64::MAX | i64::MIN => {
                        Err("Input should be a valid datetime (infinity is not one)".into())
                    }
                    micros
                        if micros
                            .checked_add(PG_EPOCH_MICROS)
                            .and_then(chrono::DateTime::from_timestamp_micros)
                            .is_none() =>
                    {
                        Err(OUTSIDE_ARROW_YEARS.replace("{what}", "datetime"))
                    }
                    _ => Ok(()),
                }
            }
            Self::Numeric {
                precision, scale, ..
            } => numeric(value, *precision, *scale).map(|_| ()),
            Self::Jsonb(_) => match value.first() {
                Some(1) => Ok(()),
                _ => Err("unknown jsonb format version".into()),
            },
            Self::Text(_) | Self::Bytea(_) => Ok(()),
            Self::List { element, .. } => {
                let items = array_items(value)?;
                items
                    .into_iter()
                    .flatten()
                    .try_for_each(|item| element.check(item))
            }
        }
    }

    /// Append a value that passed `check` (`None`: SQL NULL).
    pub fn append(&mut self, value: Option<&[u8]>) {
        let Some(v) = value else {
            self.append_null();
            return;
        };
        match self {
            Self::Bool(b) => b.append_value(v.first().is_some_and(|x| *x != 0)),
            Self::Int16(b) => b.append_value(i16::from_be_bytes(fixed(v))),
            Self::Int32(b) => b.append_value(be_i32(v)),
            Self::Int64(b) => b.append_value(be_i64(v)),
            Self::Float32(b) => b.append_value(f32::from_be_bytes(fixed(v))),
            Self::Float64(b) => b.append_value(f64::from_be_bytes(fixed(v))),
            Self::Numeric {
                builder,
                precision,
                scale,
            } => builder.append_value(numeric(v, *precision, *scale).unwrap_or(0)),
            Self::Text(b) => append_text(b, v),
            Self::Jsonb(b) => append_text(b, v.get(1..).unwrap_or_default()),
            Self::Uuid(b) => {
                // Formatted on the stack: no String per row.
                let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
                b.append_value(
                    uuid::Uuid::from_bytes(fixed(v))
                        .hyphenated()
                        .encode_lower(&mut text),
                )
            }
            Self::Bytea(b) => b.append_value(v),
            Self::Date(b) => b.append_value(be_i32(v).saturating_add(PG_EPOCH_DAYS)),
            Self::Timestamp(b) => b.append_value(be_i64(v).saturating_add(PG_EPOCH_MICROS)),
            Self::Time(b) => b.append_value(be_i64(v)),
            Self::Interval {
                months,
                days,
                micros,
                nulls,
            } => {
                micros.append_value(be_i64(v));
                days.append_value(be_i32(v.get(8..).unwrap_or_default()));
                months.append_value(be_i32(v.get(12..).unwrap_or_default()));
                nulls.append_non_null();
            }
            Self::List {
                offsets,
                nulls,
                element,
                ..
            } => {
                let items = array_items(v).unwrap_or_default();
                let count = items.len() as i32;
                for item in items {
                    element.append(item);
                }
                let last = offsets.last().copied().unwrap_or(0);
                offsets.push(last + count);
                nulls.append_non_null();
            }
        }
    }

    fn append_null(&mut self) {
        match self {
            Self::Bool(b) => b.append_null(),
            Self::Int16(b) => b.append_null(),
            Self::Int32(b) => b.append_null(),
            Self::Int64(b) => b.append_null(),
            Self::Float32(b) => b.append_null(),
            Self::Float64(b) => b.append_null(),
            Self::Numeric { builder, .. } => builder.append_null(),
            Self::Text(b) | Self::Jsonb(b) | Self::Uuid(b) => b.append_null(),
            Self::Bytea(b) => b.append_null(),
            Self::Date(b) => b.append_null(),
            Self::Timestamp(b) => b.append_null(),
            Self::Time(b) => b.append_null(),
            Self::Interval {
                months,
                days,
                micros,
                nulls,
            } => {
                months.append_value(0);
                days.append_value(0);
                micros.append_value(0);
                nulls.append_null();
            }
            Self::List { offsets, nulls, .. } => {
                let last = offsets.last().copied().unwrap_or(0);
                offsets.push(last);
                nulls.append_null();
            }
        }
    }

    /// The values appended so far, as one array; the decoder starts empty again.
    pub fn finish(&mut self) -> ArrayRef {
        match self {
            Self::Bool(b) => Arc::new(b.finish()),
            Self::Int16(b) => Arc::new(b.finish()),
            Self::Int32(b) => Arc::new(b.finish()),
            Self::Int64(b) => Arc::new(b.finish()),
            Self::Float32(b) => Arc::new(b.finish()),
            Self::Float64(b) => Arc::new(b.finish()),
            Self::Numeric {
                builder,
                precision,
                scale,
            } => Arc::new(
                builder
                    .finish()
                    .with_precision_and_scale(*precision, *scale)
                    .unwrap_or_else(|_| arrow::array::Decimal128Array::from(Vec::<i128>::new())),
            ),
            Self::Text(b) | Self::Jsonb(b) | Self::Uuid(b) => Arc::new(b.finish()),
            Self::Bytea(b) => Arc::new(b.finish()),
            Self::Date(b) => Arc::new(b.finish()),
            Self::Timestamp(b) => Arc::new(b.finish()),
            Self::Time(b) => Arc::new(b.finish()),
            Self::Interval {
                months,
                days,
                micros,
                nulls,
            } => Arc::new(StructArray::new(
                interval_fields(),
                vec![
                    Arc::new(months.finish()),
                    Arc::new(days.finish()),
                    Arc::new(micros.finish()),
                ],
                nulls.finish(),
            )),
            Self::List {
                field,
                offsets,
                nulls,
                element,
            } => {
                let taken = std::mem::replace(offsets, vec![0]);
                Arc::new(ListArray::new(
                    field.clone(),
                    OffsetBuffer::new(ScalarBuffer::from(taken)),
                    element.finish(),
                    nulls.finish(),
                ))
            }
        }
    }
}

fn fixed<const N: usize>(v: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    let n = v.len().min(N);
    out[..n].copy_from_slice(&v[..n]);
    out
}

fn be_i32(v: &[u8]) -> i32 {
    i32::from_be_bytes(fixed(v))
}

fn be_i64(v: &[u8]) -> i64 {
    i64::from_be_bytes(fixed(v))
}

/// Text is UTF-8: the connection's client encoding is UTF8, so the server converts or refuses.
fn append_text(b: &mut StringBuilder, v: &[u8]) {
    match std::str::from_utf8(v) {
        Ok(text) => b.append_value(text),
        Err(_) => b.append_value(String::from_utf8_lossy(v)),
    }
}

/// A numeric's value as a Decimal128 integer of `scale` places with at most `precision`
/// digits; the messages are pydantic's for a Decimal that does not fit.
fn numeric(v: &[u8], precision: u8, scale: i8) -> Result<i128, String> {
    let word = |i: usize| -> Result<i16, String> {
        v.get(i * 2..i * 2 + 2)
            .map(|b| i16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| "a numeric value is cut short (corrupt COPY data)".to_string())
    };
    let ndigits = word(0)?.max(0) as usize;
    let weight = i32::from(word(1)?);
    let sign = word(2)? as u16;
    match sign {
        0x0000 | 0x4000 => {}
        0xC000 => return Err("Input should be a finite number (NaN is not one)".into()),
        _ => return Err("Input should be a finite number (infinity is not one)".into()),
    }
    let too_many_digits =
        || format!("Decimal input should have no more than {precision} digits in total");
    let too_many_places = || {
        format!(
            "Decimal input should have no more than {scale} decimal place{}",
            if scale == 1 { "" } else { "s" }
        )
    };
    // Each base-10000 group is scaled to the column's places on its own, so no intermediate
    // sum grows past what the column holds (38 digits fit i128; 40 would not).
    let mut value: i128 = 0;
    for i in 0..ndigits {
        let digit = i128::from(word(4 + i)?);
        if digit == 0 {
            continue;
        }
        // This group stands for digit × 10^(4·(weight − i)); the column wants × 10^scale.
        let exponent = 4 * (weight - i as i32) + i32::from(scale);
        let term = if exponent >= 0 {
            10i128
                .checked_pow(exponent as u32)
                .and_then(|p| digit.checked_mul(p))
                .ok_or_else(too_many_digits)?
        } else {
            match 10i128.checked_pow((-exponent) as u32) {
                Some(d) if digit % d == 0 => digit / d,
                _ => return Err(too_many_places()),
            }
        };
        value = value.checked_add(term).ok_or_else(too_many_digits)?;
    }
    if value.unsigned_abs() >= 10u128.pow(u32::from(precision)) {
        return Err(too_many_digits());
    }
    Ok(if sign == 0x4000 { -value } else { value })
}

/// The elements of a one-dimensional array value (`None`: a NULL element).
fn array_items(v: &[u8]) -> Result<Vec<Option<&[u8]>>, String> {
    let corrupt = || "an array value is cut short (corrupt COPY data)".to_string();
    let int = |at: usize| -> Result<i32, String> {
        v.get(at..at + 4)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(corrupt)
    };
    let ndim = int(0)?;
    if ndim == 0 {
        return Ok(Vec::new());
    }
    if ndim != 1 {
        return Err(format!(
            "a {ndim}-dimensional array is not supported (only one-dimensional arrays become lists)"
        ));
    }
    let count = int(12)?.max(0) as usize;
    let mut at = 20;
    // The count comes from the wire: never reserve more than the value could hold.
    let mut items = Vec::with_capacity(count.min(v.len() / 4));
    for _ in 0..count {
        let len = int(at)?;
        at += 4;
        if len < 0 {
            items.push(None);
            continue;
        }
        let end = at + len as usize;
        items.push(Some(v.get(at..end).ok_or_else(corrupt)?));
        at = end;
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric_bytes(ndigits: &[i16], weight: i16, sign: u16, dscale: i16) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend((ndigits.len() as i16).to_be_bytes());
        out.extend(weight.to_be_bytes());
        out.extend(sign.to_be_bytes());
        out.extend(dscale.to_be_bytes());
        for d in ndigits {
            out.extend(d.to_be_bytes());
        }
        out
    }

    #[test]
    fn numerics_become_exact_decimals_or_clear_errors() {
        // 12345.67 = [1, 2345, 6700] weight 1
        let v = numeric_bytes(&[1, 2345, 6700], 1, 0, 2);
        assert_eq!(numeric(&v, 10, 2), Ok(1_234_567));
        assert_eq!(numeric(&v, 10, 4), Ok(123_456_700));
        assert!(numeric(&v, 10, 1).unwrap_err().contains("1 decimal place"));
        assert!(numeric(&v, 6, 2).unwrap_err().contains("6 digits"));
        let negative = numeric_bytes(&[5], -1, 0x4000, 4); // -0.0005
        assert_eq!(numeric(&negative, 10, 4), Ok(-5));
        let zero = numeric_bytes(&[], 0, 0, 2);
        assert_eq!(numeric(&zero, 10, 2), Ok(0));
        let nan = numeric_bytes(&[], 0, 0xC000, 0);
        assert!(numeric(&nan, 10, 2).unwrap_err().contains("NaN"));
        // 1e28 with 18 places: 29 + 18 = 47 digits, more than 38.
        let big = numeric_bytes(&[1], 7, 0, 0);
        assert!(numeric(&big, 38, 18).unwrap_err().contains("38 digits"));
        // 20 + 18 digits, ten groups: fits Decimal128(38, 18) exactly.
        let widest = numeric_bytes(
            &[9999, 9999, 9999, 9999, 9999, 9999, 9999, 9999, 9999, 9900],
            4,
            0,
            18,
        );
        assert_eq!(numeric(&widest, 38, 18), Ok(10i128.pow(38) - 1));
        // Zero in a column of many places.
        assert_eq!(numeric(&zero, 38, 37), Ok(0));
    }

    #[test]
    fn arrays_of_one_dimension_become_lists() {
        let mut v = Vec::new();
        for x in [1i32, 1, 23, 2, 1] {
            v.extend(x.to_be_bytes()); // ndim, has nulls, int4 oid, 2 items from 1
        }
        v.extend(4i32.to_be_bytes());
        v.extend(7i32.to_be_bytes());
        v.extend((-1i32).to_be_bytes());
        let mut decoder = Decoder::new(&ColumnType::Array(Box::new(ColumnType::Int32)));
        decoder.check(&v).unwrap();
        decoder.append(Some(&v));
        decoder.append(None);
        let list = decoder.finish();
        assert_eq!(list.len(), 2);
        assert_eq!(list.null_count(), 1);
        let mut two = vec![0, 0, 0, 2];
        two.extend([0u8; 16]);
        assert!(decoder.check(&two).unwrap_err().contains("2-dimensional"));
    }
}
