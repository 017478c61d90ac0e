//! Lax parsers for single text values, shared by coercion and type inference.
//!
//! They mirror pydantic v2's lax string coercions (dates and date-times with speedate, the
//! parser pydantic-core uses); they allocate only to drop the underscores of `1_000`.

use speedate::{
    Date, DateTime, DateTimeConfig, MicrosecondsPrecisionOverflowBehavior, TimeConfig,
    TimestampUnit,
};

/// Integer text: optional sign, surrounding whitespace, underscores between digits (`1_000`)
/// and a zero fraction ("42.0"), like pydantic.
pub(crate) fn parse_int(text: &str) -> Option<i64> {
    let t = text.trim();
    if let Ok(v) = t.parse::<i64>() {
        return Some(v);
    }
    if t.contains('_') {
        // Between the digits of the whole part only: pydantic refuses `1.0_0`.
        return match t.split_once('.') {
            Some((_, fraction)) if fraction.contains('_') => None,
            Some((whole, fraction)) => {
                parse_int(&format!("{}.{fraction}", without_underscores(whole)?))
            }
            None => parse_int(&without_underscores(t)?),
        };
    }
    let (whole, fraction) = t.split_once('.')?;
    let has_digits = whole
        .trim_start_matches(['+', '-'])
        .bytes()
        .any(|b| b.is_ascii_digit());
    // "1." is refused, as pydantic refuses it; "1.0" and "1.00" are 1.
    if has_digits && !fraction.is_empty() && fraction.bytes().all(|b| b == b'0') {
        whole.parse::<i64>().ok()
    } else {
        None
    }
}

/// Float text; Rust's parser already accepts exponents and inf/infinity/nan in any case, as
/// Python does. Underscores as pydantic takes them (the text untrimmed then, as pydantic).
pub(crate) fn parse_float(text: &str) -> Option<f64> {
    match text.trim().parse::<f64>() {
        Ok(v) => Some(v),
        Err(_) if text.contains('_') => without_underscores(text)?.parse::<f64>().ok(),
        Err(_) => None,
    }
}

/// pydantic-core's reading of `_` in numbers: none first or last, never two in a row, and
/// otherwise simply dropped (`1_000` → `1000`, `1_.5` → `1.5`).
fn without_underscores(text: &str) -> Option<String> {
    let refused = text.starts_with('_') || text.ends_with('_') || text.contains("__");
    (!refused).then(|| text.replace('_', ""))
}

/// pydantic's accepted boolean spellings, compared case-insensitively (not trimmed: pydantic
/// refuses " true").
pub(crate) fn parse_bool(text: &str) -> Option<bool> {
    const TRUE: [&str; 6] = ["1", "on", "t", "true", "y", "yes"];
    const FALSE: [&str; 6] = ["0", "off", "f", "false", "n", "no"];
    let t = text;
    if TRUE.iter().any(|w| w.eq_ignore_ascii_case(t)) {
        Some(true)
    } else if FALSE.iter().any(|w| w.eq_ignore_ascii_case(t)) {
        Some(false)
    } else {
        None
    }
}

/// Strict `YYYY-MM-DD` to days since the Unix epoch (Date32); nothing around it, as pydantic.
/// What inference and enum values take as a date.
pub(crate) fn parse_date_days(text: &str) -> Option<i32> {
    let b = text.as_bytes();
    if b.len() != 10 {
        return None;
    }
    Date::parse_bytes_rfc3339(b).ok().and_then(epoch_days)
}

/// A date as pydantic takes text for one (speedate, pydantic-core's parser): `YYYY-MM-DD`, a
/// Unix time (seconds, milliseconds above 2e10) at a day's start, or a date-time exactly at
/// midnight (its own zone's).
pub(crate) fn parse_date_lax(text: &str) -> Option<i32> {
    let bytes = text.as_bytes();
    let date = match Date::parse_bytes(bytes) {
        Ok(date) => date,
        Err(_) => {
            let datetime = DateTime::parse_bytes_with_config(bytes, &DATETIME).ok()?;
            let t = &datetime.time;
            (t.hour == 0 && t.minute == 0 && t.second == 0 && t.microsecond == 0)
                .then_some(datetime.date)?
        }
    };
    epoch_days(date)
}

/// Days since 1970-01-01; `None` for year 0, which speedate parses and Python's `date` has not.
fn epoch_days(date: Date) -> Option<i32> {
    const SECONDS_PER_DAY: i64 = 86_400;
    if date.year == 0 {
        return None;
    }
    i32::try_from(date.timestamp().div_euclid(SECONDS_PER_DAY)).ok()
}

/// An ISO 8601 / RFC 3339 date-time (or a bare date, midnight) to microseconds since the Unix
/// epoch in UTC, naive read as UTC; no Unix times. What inference and enum values take.
pub(crate) fn parse_iso_datetime_micros(text: &str) -> Option<i64> {
    match DateTime::parse_bytes_rfc3339_with_config(text.as_bytes(), &DATETIME.time_config) {
        Ok(datetime) => utc_micros(datetime),
        Err(_) => parse_date_days(text).map(midnight_micros),
    }
}

/// A date-time as pydantic takes text for one (speedate, pydantic-core's parser): ISO 8601 with
/// `T`, `t`, space or `_` between date and time, seconds optional, fractions past microseconds
/// truncated, `Z` or a `±hh:mm` / `±hhmm` offset, nothing around it; a Unix time, seconds (or
/// milliseconds above 2e10) with an optional fraction; or a date (its midnight). To
/// microseconds since the Unix epoch in UTC; naive date-times are read as UTC.
pub(crate) fn parse_datetime_micros(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    match DateTime::parse_bytes_with_config(bytes, &DATETIME) {
        Ok(datetime) => utc_micros(datetime),
        Err(_) => epoch_days(Date::parse_bytes(bytes).ok()?).map(midnight_micros),
    }
}

/// pydantic-core's settings: digits past the microsecond are dropped, not refused.
const DATETIME: DateTimeConfig = DateTimeConfig {
    timestamp_unit: TimestampUnit::Infer,
    time_config: TimeConfig {
        microseconds_precision_overflow_behavior: MicrosecondsPrecisionOverflowBehavior::Truncate,
        unix_timestamp_offset: None,
    },
};

fn midnight_micros(days: i32) -> i64 {
    i64::from(days) * 86_400_000_000
}

/// Unix time as a number, as pydantic takes one: seconds, or milliseconds when |value| > 2e10,
/// rounded to the microsecond; within years 1-9999.
pub(crate) fn unix_number_to_micros(value: f64) -> Option<i64> {
    if !value.is_finite() {
        return None;
    }
    DateTime::from_float_with_config(value, &DATETIME)
        .ok()
        .and_then(utc_micros)
}

/// Microseconds since the Unix epoch (UTC) of a parsed date-time; `None` for year 0, which
/// speedate parses and Python's `datetime` has not.
fn utc_micros(datetime: DateTime) -> Option<i64> {
    if datetime.date.year == 0 {
        return None;
    }
    Some(datetime.timestamp_tz() * 1_000_000 + i64::from(datetime.time.microsecond))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ints() {
        assert_eq!(parse_int(" 42 "), Some(42));
        assert_eq!(parse_int("+7"), Some(7));
        assert_eq!(parse_int("-3"), Some(-3));
        assert_eq!(parse_int("42.0"), Some(42));
        assert_eq!(parse_int("-42.00"), Some(-42));
        assert_eq!(parse_int("4.5"), None);
        assert_eq!(parse_int("1."), None);
        assert_eq!(parse_int("."), None);
        assert_eq!(parse_int("abc"), None);
        // Underscores as pydantic takes them.
        assert_eq!(parse_int("1_000"), Some(1000));
        assert_eq!(parse_int(" -1_0_0.0 "), Some(-100));
        assert_eq!(parse_int("1__000"), None);
        assert_eq!(parse_int("_1000"), None);
        assert_eq!(parse_int("1000_"), None);
        assert_eq!(parse_int("1_000.5"), None);
        for refused in ["1.0_0", "1_.0", "1._0", "1_000.0_0"] {
            assert_eq!(parse_int(refused), None, "{refused}");
        }
        // A date field takes a midnight date-time however many zero digits its fraction has.
        assert_eq!(
            parse_date_lax("2024-01-02T00:00:00.0000000"),
            parse_date_days("2024-01-02")
        );
    }

    #[test]
    fn bools_and_floats() {
        assert_eq!(parse_bool("YES"), Some(true));
        assert_eq!(parse_bool("Off"), Some(false));
        assert_eq!(parse_bool("maybe"), None);
        assert_eq!(parse_bool(" true "), None);
        assert_eq!(parse_float("inf"), Some(f64::INFINITY));
        assert!(parse_float("NaN").is_some_and(f64::is_nan));
        assert_eq!(parse_float("1e3"), Some(1000.0));
        assert_eq!(parse_float("1_000.000_1"), Some(1000.0001));
        assert_eq!(parse_float("1e1_0"), Some(1e10));
        assert_eq!(parse_float("+i_nf"), Some(f64::INFINITY));
        assert_eq!(parse_float(" 1_000 "), None);
        assert_eq!(parse_float("1__0"), None);
    }

    #[test]
    fn dates_and_datetimes() {
        assert_eq!(parse_date_days("1970-01-02"), Some(1));
        assert_eq!(parse_date_days("2024-02-30"), None);
        assert_eq!(parse_date_days("2024-1-01"), None);
        assert_eq!(parse_date_days(" 2024-01-02"), None);
        // As pydantic takes a date: a midnight date-time, or a Unix time at a day's start.
        assert_eq!(parse_date_lax("1970-01-02T00:00:00"), Some(1));
        assert_eq!(parse_date_lax("1970-01-02T00:00:00.000+01:00"), Some(1));
        assert_eq!(parse_date_lax("1970-01-02 00:00Z"), Some(1));
        assert_eq!(parse_date_lax("1970-01-02T00:00:01"), None);
        assert_eq!(parse_date_lax("1970-01-02T00:00:00 "), None);
        assert_eq!(parse_date_lax("86400"), Some(1));
        assert_eq!(parse_date_lax("86400.0"), Some(1));
        assert_eq!(parse_date_lax("-86400"), Some(-1));
        assert_eq!(parse_date_lax("86401"), None);
        assert_eq!(parse_date_lax("nan"), None);
        assert_eq!(parse_date_lax("1970-01-02_00:00"), Some(1));
        assert_eq!(parse_date_lax("0000-01-01"), None);
        // A whole day in milliseconds, but past year 9999.
        assert_eq!(parse_date_lax("17041968000000000"), None);
        let noon = 1_704_196_800_000_000; // 2024-01-02T12:00:00Z
        assert_eq!(parse_datetime_micros("2024-01-02T12:00:00Z"), Some(noon));
        assert_eq!(parse_datetime_micros("2024-01-02 12:00:00"), Some(noon));
        assert_eq!(
            parse_datetime_micros("2024-01-02T14:00:00+02:00"),
            Some(noon)
        );
        assert_eq!(
            parse_datetime_micros("2024-01-02 14:00:00.000+02:00"),
            Some(noon)
        );
        assert_eq!(parse_datetime_micros("2024-01-02T12:00"), Some(noon));
        assert_eq!(
            parse_datetime_micros("2024-01-02"),
            Some(noon - 12 * 3_600_000_000)
        );
        assert_eq!(parse_datetime_micros("1704196800"), Some(noon));
        assert_eq!(parse_datetime_micros("1704196800000"), Some(noon));
        assert_eq!(parse_datetime_micros("1704196800.5"), Some(noon + 500_000));
        // pydantic's parser: `_` and `t` separate, `,` starts the fraction, digits past the
        // microsecond are dropped, `±hhmm` is an offset.
        assert_eq!(parse_datetime_micros("2024-01-02_12:00:00"), Some(noon));
        assert_eq!(parse_datetime_micros("2024-01-02t12:00:00z"), Some(noon));
        assert_eq!(
            parse_datetime_micros("2024-01-02T12:00:00,1234567Z"),
            Some(noon + 123_456)
        );
        assert_eq!(
            parse_datetime_micros("2024-01-02T14:00:00+0200"),
            Some(noon)
        );
        // ... and what it refuses, which arrow's cast kernel takes.
        for refused in [
            "2024-01-02T12:00:00+02",
            "2024-01-02T12:00:60Z",
            "2024-01-02T1:00:00",
            " 2024-01-02T12:00:00",
            "2024-01-02T12:00:00Z ",
            "2024-01-02T12:00:00 UTC",
            "2024-1-2T12:00:00",
            "1e9",
            "0000-01-01T00:00:00",
        ] {
            assert_eq!(parse_datetime_micros(refused), None, "{refused}");
        }
        // Python's datetime spans years 1-9999: a Unix time in microseconds is not one.
        assert_eq!(parse_datetime_micros("1700000000000000"), None);
        assert_eq!(unix_number_to_micros(f64::NAN), None);
        assert_eq!(unix_number_to_micros(1e20), None);
        assert_eq!(
            unix_number_to_micros(1_704_196_800.25),
            Some(noon + 250_000)
        );
        assert_eq!(parse_iso_datetime_micros("1704196800"), None);
        assert_eq!(parse_datetime_micros("yesterday"), None);
    }
}
