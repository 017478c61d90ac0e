//! PostgreSQL column types → how their binary COPY form is decoded, and the Arrow type it
//! becomes. Types not listed are refused at planning, naming the column.

use arrow::datatypes::{DataType, Field, Fields, TimeUnit};
use std::sync::Arc;
use tokio_postgres::types::{Kind, Type};

/// The precision and scale an unconstrained `numeric` becomes (as an unconstrained pydantic
/// Decimal): a value with more places, or more digits, is an invalid row, never rounded.
pub const UNCONSTRAINED_NUMERIC: (u8, i8) = (38, 18);

/// How one column's binary values are decoded.
#[derive(Clone, Debug, PartialEq)]
pub enum ColumnType {
    Bool,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    Numeric {
        precision: u8,
        scale: i8,
    },
    /// text, varchar, char(n), name, citext, enums, json, xml: their bytes are UTF-8 text.
    Text,
    /// jsonb: a version byte, then the JSON text.
    Jsonb,
    Uuid,
    Bytea,
    Date,
    Timestamp,
    TimestampTz,
    Time,
    Interval,
    Array(Box<ColumnType>),
}

/// A result column: its name, its PostgreSQL type, and how it is decoded.
#[derive(Clone, Debug)]
pub struct SqlColumn {
    pub name: String,
    pub ty: Type,
    pub kind: ColumnType,
}

/// The columns `statement` returns, each with its decoding; a type we cannot decode is refused
/// naming the column (`what`: the database and relation, for the message).
pub fn describe(
    statement: &tokio_postgres::Statement,
    what: &str,
) -> crate::Result<Vec<SqlColumn>> {
    statement
        .columns()
        .iter()
        .map(|c| {
            let kind = ColumnType::of(c.type_(), c.type_modifier()).map_err(|why| {
                crate::Error::config(format!("{what}: column '{}': {why}", c.name()))
            })?;
            Ok(SqlColumn {
                name: c.name().to_string(),
                ty: c.type_().clone(),
                kind,
            })
        })
        .collect()
}

impl ColumnType {
    /// The decoding of a column of type `ty` (with its type modifier), or why it has none.
    pub fn of(ty: &Type, typmod: i32) -> Result<Self, String> {
        if let Kind::Domain(base) = ty.kind() {
            return Self::of(base, typmod);
        }
        if let Kind::Array(element) = ty.kind() {
            return Ok(Self::Array(Box::new(Self::of(element, typmod)?)));
        }
        if let Kind::Enum(_) = ty.kind() {
            return Ok(Self::Text);
        }
        Ok(match *ty {
            Type::BOOL => Self::Bool,
            Type::INT2 => Self::Int16,
            Type::INT4 => Self::Int32,
            Type::INT8 => Self::Int64,
            Type::FLOAT4 => Self::Float32,
            Type::FLOAT8 => Self::Float64,
            Type::NUMERIC => numeric(typmod)?,
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::JSON | Type::XML => {
                Self::Text
            }
            Type::JSONB => Self::Jsonb,
            Type::UUID => Self::Uuid,
            Type::BYTEA => Self::Bytea,
            Type::DATE => Self::Date,
            Type::TIMESTAMP => Self::Timestamp,
            Type::TIMESTAMPTZ => Self::TimestampTz,
            Type::TIME => Self::Time,
            Type::INTERVAL => Self::Interval,
            _ if ty.name() == "citext" => Self::Text,
            _ => {
                return Err(format!(
                    "type {} is not supported (cast it in --query, e.g. to text)",
                    ty.name()
                ));
            }
        })
    }

    /// The Arrow type values are decoded into.
    pub fn arrow(&self) -> DataType {
        match self {
            Self::Bool => DataType::Boolean,
            Self::Int16 => DataType::Int16,
            Self::Int32 => DataType::Int32,
            Self::Int64 => DataType::Int64,
            Self::Float32 => DataType::Float32,
            Self::Float64 => DataType::Float64,
            Self::Numeric { precision, scale } => DataType::Decimal128(*precision, *scale),
            Self::Text | Self::Jsonb | Self::Uuid => DataType::Utf8,
            Self::Bytea => DataType::Binary,
            Self::Date => DataType::Date32,
            Self::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            Self::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            Self::Time => DataType::Time64(TimeUnit::Microsecond),
            Self::Interval => DataType::Struct(interval_fields()),
            Self::Array(element) => {
                DataType::List(Arc::new(Field::new("item", element.arrow(), true)))
            }
        }
    }
}

/// An interval is months, days and microseconds, kept apart as PostgreSQL keeps them (a month
/// is not a fixed number of days): readers get a struct of the three.
pub fn interval_fields() -> Fields {
    Fields::from(vec![
        Field::new("months", DataType::Int32, false),
        Field::new("days", DataType::Int32, false),
        Field::new("microseconds", DataType::Int64, false),
    ])
}

/// `numeric(p, s)` from its type modifier ((p << 16 | s) + 4; -1 when unconstrained).
fn numeric(typmod: i32) -> Result<ColumnType, String> {
    if typmod < 4 {
        let (precision, scale) = UNCONSTRAINED_NUMERIC;
        return Ok(ColumnType::Numeric { precision, scale });
    }
    let bits = typmod - 4;
    let precision = (bits >> 16) & 0xffff;
    // The scale is an 11-bit signed number since PostgreSQL 15 (numeric(5, -2)).
    let scale = ((bits & 0x7ff) ^ 0x400) - 0x400;
    if scale > precision {
        return Err(format!(
            "numeric({precision},{scale}) has more places than digits, which Decimal128 cannot hold (cast it in --query)"
        ));
    }
    if !(1..=38).contains(&precision) {
        return Err(format!(
            "numeric({precision},{scale}) has more than 38 digits, more than Decimal128 holds (cast it in --query, e.g. to text)"
        ));
    }
    if scale < 0 {
        // numeric(5, -2) holds whole numbers of up to 7 digits (12300): Parquet has no
        // negative scale, so they are kept as whole decimals.
        let digits = precision - scale;
        if digits > 38 {
            return Err(format!(
                "numeric({precision},{scale}) has up to {digits} digits, more than Decimal128 holds (cast it in --query, e.g. to text)"
            ));
        }
        return Ok(ColumnType::Numeric {
            precision: digits as u8,
            scale: 0,
        });
    }
    Ok(ColumnType::Numeric {
        precision: precision as u8,
        scale: scale as i8,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_modifiers_give_precision_and_scale() {
        let typmod = |p: i32, s: i32| ((p << 16) | (s & 0x7ff)) + 4;
        assert_eq!(
            numeric(typmod(10, 2)),
            Ok(ColumnType::Numeric {
                precision: 10,
                scale: 2
            })
        );
        // A negative scale (PostgreSQL 15): whole numbers, kept as whole decimals (Parquet
        // has no negative scale).
        assert_eq!(
            numeric(typmod(5, -2)),
            Ok(ColumnType::Numeric {
                precision: 7,
                scale: 0
            })
        );
        assert!(numeric(typmod(37, -3)).unwrap_err().contains("40 digits"));
        assert_eq!(
            numeric(-1),
            Ok(ColumnType::Numeric {
                precision: 38,
                scale: 18
            })
        );
        assert!(numeric(typmod(50, 2)).unwrap_err().contains("38 digits"));
    }
}
