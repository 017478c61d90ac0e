//! Lax parsers for single text values, shared by coercion (slow path only) and type inference.
//!
//! They mirror pydantic v2's lax string coercions closely enough for CSV/JSONL input and never allocate.

use chrono::{DateTime, NaiveDate, NaiveDateTime};

/// Days from 0001-01-01 (chrono's CE day 1) to 1970-01-01, the Date32 epoch.
const UNIX_EPOCH_DAYS_FROM_CE: i32 = 719_163;
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Integer text: optional sign, surrounding whitespace, and a zero fraction ("42.0") like pydantic.
pub(crate) fn parse_int(text: &str) -> Option<i64> {
    let t = text.trim();
    if let Ok(v) = t.parse::<i64>() {
        return Some(v);
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

/// Float text; Rust's parser already accepts exponents and inf/infinity/nan in any case, as Python does.
pub(crate) fn parse_float(text: &str) -> Option<f64> {
    text.trim().parse::<f64>().ok()
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
pub(crate) fn parse_date_days(text: &str) -> Option<i32> {
    let b = text.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |s: &[u8]| -> Option<u32> {
        s.iter().try_fold(0u32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    let year = i32::try_from(num(&b[0..4])?).ok()?;
    let date = NaiveDate::from_ymd_opt(year, num(&b[5..7])?, num(&b[8..10])?)?;
    Some(date.num_days_from_ce() - UNIX_EPOCH_DAYS_FROM_CE)
}

use chrono::Datelike;

/// A date as pydantic takes text for one: `YYYY-MM-DD`, or a date-time exactly at midnight
/// (its own zone's), or a Unix time (seconds, milliseconds above 2e10) at a day's start.
pub(crate) fn parse_date_lax(text: &str) -> Option<i32> {
    if let Some(days) = parse_date_days(text) {
        return Some(days);
    }
    if let (Some(day), Some(rest)) = (text.get(..10), text.get(10..))
        && let Some(days) = parse_date_days(day)
    {
        return is_midnight(rest).then_some(days);
    }
    let seconds: f64 = text.parse().ok()?;
    if !seconds.is_finite() || seconds.fract() != 0.0 || seconds.abs() > 9e15 {
        return None;
    }
    // Integral and bounded: exact as an i64.
    let ms = if seconds.abs() > 2e10 {
        seconds as i64
    } else {
        seconds as i64 * 1000
    };
    const DAY_MS: i64 = 86_400_000;
    if ms % DAY_MS != 0 {
        return None;
    }
    i32::try_from(ms / DAY_MS).ok()
}

/// `T00:00[:00[.000…]]` and an optional zone (`Z`, `±hh:mm`): the time part of a date-time that
/// names a whole day.
fn is_midnight(rest: &str) -> bool {
    let Some(rest) = rest.strip_prefix(['T', 't', ' ']) else {
        return false;
    };
    let split = rest
        .char_indices()
        .find(|&(_, c)| matches!(c, 'Z' | 'z' | '+' | '-'))
        .map_or(rest.len(), |(i, _)| i);
    let (time, zone) = rest.split_at(split);
    let time_ok = match time.strip_prefix("00:00") {
        Some("") => true,
        Some(seconds) => seconds.strip_prefix(":00").is_some_and(|fraction| {
            fraction.is_empty()
                || fraction
                    .strip_prefix('.')
                    .is_some_and(|zeros| !zeros.is_empty() && zeros.bytes().all(|b| b == b'0'))
        }),
        None => false,
    };
    let zone_ok = match zone.as_bytes() {
        [] | [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => [h1, h2, m1, m2].iter().all(|b| b.is_ascii_digit()),
        _ => false,
    };
    time_ok && zone_ok
}

/// ISO 8601 / RFC 3339 date-time (`T` or space, optional fraction, `Z` or offset; naive = UTC;
/// a bare date = midnight) to microseconds since the Unix epoch in UTC.
pub(crate) fn parse_iso_datetime_micros(text: &str) -> Option<i64> {
    const WITH_OFFSET: [&str; 6] = [
        "%Y-%m-%dT%H:%M:%S%.f%:z",
        "%Y-%m-%d %H:%M:%S%.f%:z",
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%d %H:%M:%S%.f%z",
        "%Y-%m-%dT%H:%M%:z",
        "%Y-%m-%d %H:%M%:z",
    ];
    const NAIVE: [&str; 4] = [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ];
    let t = text.trim();
    if t.len() == 10 {
        return parse_date_days(t).map(|d| i64::from(d) * MICROS_PER_DAY);
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Some(dt.timestamp_micros());
    }
    for fmt in WITH_OFFSET {
        if let Ok(dt) = DateTime::parse_from_str(t, fmt) {
            return Some(dt.timestamp_micros());
        }
    }
    let naive = t.strip_suffix(['Z', 'z']).unwrap_or(t);
    NAIVE
        .iter()
        .find_map(|fmt| NaiveDateTime::parse_from_str(naive, fmt).ok())
        .map(|dt| dt.and_utc().timestamp_micros())
}

/// Unix time as a number, pydantic style: seconds, or milliseconds when |value| > 2e10.
pub(crate) fn unix_number_to_micros(value: f64) -> Option<i64> {
    if !value.is_finite() {
        return None;
    }
    let micros = if value.abs() > 2e10 {
        value * 1e3
    } else {
        value * 1e6
    };
    // The range check keeps the float-to-int conversion exact-or-refused instead of saturating.
    (micros.abs() < 9.2e18).then(|| micros.round() as i64)
}

/// Date-time text as coercion accepts it: ISO forms, or a Unix timestamp number like pydantic.
pub(crate) fn parse_datetime_micros(text: &str) -> Option<i64> {
    parse_iso_datetime_micros(text).or_else(|| parse_float(text).and_then(unix_number_to_micros))
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
        assert_eq!(parse_iso_datetime_micros("1704196800"), None);
        assert_eq!(parse_datetime_micros("yesterday"), None);
    }
}
