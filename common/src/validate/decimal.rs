//! Text → `Decimal128(p, s)` as pydantic validates a `Decimal` with `max_digits = p` and
//! `decimal_places = s`: exact (never rounded), counting digits on the normalised value (so
//! `1.50` has one decimal place), with pydantic's messages in its order.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use arrow::array::{Array, ArrayRef, Decimal128Builder, StringArray};

use super::coerce::{Coerced, FINITE_NUMBER};

pub(crate) const DECIMAL_PARSING: &str = "Input should be a valid decimal";

/// Why a value is not a valid decimal of the column's type.
enum Refusal {
    Parsing,
    NotFinite,
    Digits(u32),
    Places(u32),
    Whole(u32),
}

/// A message with a count in it, made once per distinct text (a handful per schema).
fn interned(text: String) -> &'static str {
    static MESSAGES: OnceLock<Mutex<HashMap<String, &'static str>>> = OnceLock::new();
    let mut messages = match MESSAGES.get_or_init(Default::default).lock() {
        Ok(m) => m,
        Err(poisoned) => poisoned.into_inner(),
    };
    if let Some(message) = messages.get(&text) {
        return message;
    }
    let leaked: &'static str = Box::leak(text.clone().into_boxed_str());
    messages.insert(text, leaked);
    leaked
}

fn plural(n: u32) -> &'static str {
    if n == 1 { "" } else { "s" }
}

impl Refusal {
    fn message(&self) -> &'static str {
        match self {
            Refusal::Parsing => DECIMAL_PARSING,
            Refusal::NotFinite => FINITE_NUMBER,
            Refusal::Digits(n) => interned(format!(
                "Decimal input should have no more than {n} digit{} in total",
                plural(*n)
            )),
            Refusal::Places(n) => interned(format!(
                "Decimal input should have no more than {n} decimal place{}",
                plural(*n)
            )),
            Refusal::Whole(n) => interned(format!(
                "Decimal input should have no more than {n} digit{} before the decimal point",
                plural(*n)
            )),
        }
    }
}

/// `text` as the unscaled value of a `Decimal128(precision, scale)`.
fn parse(text: &str, precision: u8, scale: i8) -> Result<i128, Refusal> {
    // pydantic drops every underscore of a decimal's text (`1_000.5`, even `_1` or `1__0`).
    let without_underscores;
    let text = if text.contains('_') {
        without_underscores = text.replace('_', "");
        without_underscores.trim()
    } else {
        text.trim()
    };
    let (negative, body) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let lower = body.to_ascii_lowercase();
    if matches!(lower.as_str(), "inf" | "infinity" | "nan" | "snan") {
        return Err(Refusal::NotFinite);
    }
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => (
            &body[..i],
            body[i + 1..].parse::<i64>().map_err(|_| Refusal::Parsing)?,
        ),
        None => (body, 0),
    };
    let (int_part, frac_part) = match mantissa.split_once('.') {
        Some((i, f)) => (i, f),
        None => (mantissa, ""),
    };
    if int_part.is_empty() && frac_part.is_empty()
        || !int_part
            .bytes()
            .chain(frac_part.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return Err(Refusal::Parsing);
    }
    // value = digits × 10^exp, normalised: no leading zeros, no trailing zeros.
    let all: String = format!("{int_part}{frac_part}");
    let mut exp = exponent - frac_part.len() as i64;
    let digits = all.trim_start_matches('0');
    let trimmed = digits.trim_end_matches('0');
    exp += (digits.len() - trimmed.len()) as i64;
    let digits = if trimmed.is_empty() { "0" } else { trimmed };
    if trimmed.is_empty() {
        exp = 0;
    }
    let (total, places) = if exp >= 0 {
        (digits.len() as i64 + exp, 0)
    } else {
        ((digits.len() as i64).max(-exp), -exp)
    };
    let (p, s) = (i64::from(precision), i64::from(scale));
    if total > p {
        return Err(Refusal::Digits(precision.into()));
    }
    if places > s {
        return Err(Refusal::Places(scale.max(0) as u32));
    }
    if total - places > p - s {
        return Err(Refusal::Whole((p - s).max(0) as u32));
    }
    let mut value: i128 = digits.parse().map_err(|_| Refusal::Parsing)?;
    for _ in 0..(exp + s) {
        value = value
            .checked_mul(10)
            .ok_or(Refusal::Digits(precision.into()))?;
    }
    Ok(if negative { -value } else { value })
}

/// A text column as `Decimal128(precision, scale)`; failed values become null with pydantic's
/// message.
pub(crate) fn text_to_decimal(input: &StringArray, precision: u8, scale: i8) -> Coerced {
    let mut builder = Decimal128Builder::with_capacity(input.len());
    let mut failures = Vec::new();
    for (row, value) in input.iter().enumerate() {
        match value.map(|v| parse(v, precision, scale)) {
            None => builder.append_null(),
            Some(Ok(v)) => builder.append_value(v),
            Some(Err(refusal)) => {
                builder.append_null();
                failures.push((row, refusal.message()));
            }
        }
    }
    let array = builder
        .finish()
        .with_precision_and_scale(precision, scale)
        .map(|a| Arc::new(a) as ArrayRef);
    match array {
        Ok(array) => Coerced { array, failures },
        // Precision/scale come from a compiled schema and are valid; never reached.
        Err(_) => Coerced {
            array: arrow::array::new_null_array(
                &arrow::datatypes::DataType::Decimal128(precision, scale),
                input.len(),
            ),
            failures: (0..input.len()).map(|r| (r, DECIMAL_PARSING)).collect(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<i128, String> {
        parse(text, 10, 2).map_err(|r| r.message().to_string())
    }

    #[test]
    fn values_fit_exactly_or_are_refused_as_pydantic_refuses_them() {
        assert_eq!(check("19.99"), Ok(1999));
        assert_eq!(check("-0.5"), Ok(-50));
        assert_eq!(check("1.50"), Ok(150)); // trailing zeros do not count
        assert_eq!(check("12345678"), Ok(1_234_567_800));
        assert_eq!(check("1e3"), Ok(100_000));
        assert_eq!(check(" 7 "), Ok(700));
        assert_eq!(check("0.000"), Ok(0));
        // Underscores dropped wherever they are, as pydantic drops them.
        assert_eq!(check("1_000.5"), Ok(100_050));
        assert_eq!(check("_1__0"), Ok(1000));
        assert_eq!(
            check("1.234").unwrap_err(),
            "Decimal input should have no more than 2 decimal places"
        );
        assert_eq!(
            check("123456789").unwrap_err(),
            "Decimal input should have no more than 8 digits before the decimal point"
        );
        assert_eq!(
            check("123456789.12").unwrap_err(),
            "Decimal input should have no more than 10 digits in total"
        );
        assert_eq!(check("abc").unwrap_err(), DECIMAL_PARSING);
        assert_eq!(check("1.2.3").unwrap_err(), DECIMAL_PARSING);
        assert_eq!(check("NaN").unwrap_err(), FINITE_NUMBER);
    }
}
