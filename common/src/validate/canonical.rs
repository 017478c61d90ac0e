//! pydantic's typed strings written as pydantic writes them: a UUID lowercase and hyphenated, an
//! email address without a display name or surrounding spaces and with its domain lowercased,
//! a URL as the `url` crate serializes it (pydantic-core parses URLs with the same crate), an
//! IPv6 address compressed. A value that is not one stays as it is, for its check to refuse.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, StringBuilder};

use super::formats;
use crate::schema::{FieldSpec, Format, Rule};

/// `array` (the field's coerced column) with its values in canonical form; unchanged (no copy)
/// when all already are, as in most columns.
pub(crate) fn canonical(spec: &FieldSpec, array: ArrayRef) -> ArrayRef {
    let Some(format) = spec.checks.iter().find_map(|c| match &c.rule {
        Rule::Format(f) => Some(*f),
        _ => None,
    }) else {
        return array;
    };
    let form: fn(&str) -> Option<String> = match format {
        Format::Uuid(_) => uuid,
        Format::Email => email,
        Format::Uri => url,
        Format::Ipv6 | Format::IpAny => ipv6,
        Format::Ipv4 => return array,
    };
    let Some(strings) = array.as_string_opt::<i32>() else {
        return array;
    };
    if !(0..strings.len()).any(|i| strings.is_valid(i) && form(strings.value(i)).is_some()) {
        return array;
    }
    let mut out = StringBuilder::with_capacity(strings.len(), strings.values().len());
    for value in strings.iter() {
        match value {
            Some(v) => match form(v) {
                Some(c) => out.append_value(c),
                None => out.append_value(v),
            },
            None => out.append_null(),
        }
    }
    Arc::new(out.finish())
}

/// The lowercase hyphenated form of a UUID written otherwise.
fn uuid(value: &str) -> Option<String> {
    // Cheap first (this runs per value): hyphens in place and no capital; a malformed value
    // is the check's to refuse.
    let b = value.as_bytes();
    let canonical = b.len() == 36
        && [8, 13, 18, 23].iter().all(|&i| b[i] == b'-')
        && !b.iter().any(u8::is_ascii_uppercase);
    if canonical || !formats::is_uuid(value, None) {
        return None;
    }
    let hex: Vec<u8> = value
        .strip_prefix("urn:uuid:")
        .unwrap_or(value)
        .bytes()
        .filter(u8::is_ascii_hexdigit)
        .map(|b| b.to_ascii_lowercase())
        .collect();
    let hex = std::str::from_utf8(&hex).ok()?;
    Some(format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    ))
}

/// An address as email-validator normalizes it: a display name (`Bob <bob@x.com>`) and
/// surrounding spaces dropped, the domain's ASCII letters lowercased.
fn email(value: &str) -> Option<String> {
    // Most addresses are written canonically: tell without allocating (this runs per value).
    let trimmed = value.trim();
    let bytes = value.as_bytes();
    // A short reverse scan: `rsplit_once` costs more than the whole check on short addresses.
    let uppercase_domain = bytes
        .iter()
        .rposition(|&b| b == b'@')
        .is_some_and(|at| bytes[at..].iter().any(u8::is_ascii_uppercase));
    if trimmed.len() == value.len() && !trimmed.ends_with('>') && !uppercase_domain {
        return None;
    }
    let mut address = trimmed;
    if let Some(inner) = address.strip_suffix('>')
        && let Some(start) = inner.rfind('<')
    {
        address = inner[start + 1..].trim();
    }
    let (local, domain) = address.rsplit_once('@')?;
    let normalized = format!("{local}@{}", domain.to_ascii_lowercase());
    (normalized != value && formats::is_email(&normalized)).then_some(normalized)
}

/// A URL as the `url` crate serializes it (`HTTP://X.COM` is `http://x.com/`).
fn url(value: &str) -> Option<String> {
    let parsed = url::Url::parse(value).ok()?;
    (parsed.as_str() != value).then(|| parsed.to_string())
}

/// An IPv6 address compressed and lowercase (RFC 5952); IPv4-mapped forms are left as written
/// (Python prints them in hex, Rust dotted).
fn ipv6(value: &str) -> Option<String> {
    let address: std::net::Ipv6Addr = value.parse().ok()?;
    let written = address.to_string();
    (written != value && !value.contains('.')).then_some(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_strings_take_pydantics_form() {
        let u = "123e4567-e89b-42d3-a456-426614174000";
        assert_eq!(uuid(u), None);
        assert_eq!(uuid(&u.to_uppercase()).as_deref(), Some(u));
        assert_eq!(uuid(&u.replace('-', "")).as_deref(), Some(u));
        assert_eq!(uuid(&format!("{{{u}}}")).as_deref(), Some(u));
        assert_eq!(uuid(&format!("urn:uuid:{u}")).as_deref(), Some(u));
        assert_eq!(uuid("not a uuid"), None);
        assert_eq!(email("bob@x.com"), None);
        assert_eq!(email("BOB@X.COM").as_deref(), Some("BOB@x.com"));
        assert_eq!(email(" bob@x.com ").as_deref(), Some("bob@x.com"));
        assert_eq!(email("Bob Smith <bob@x.com>").as_deref(), Some("bob@x.com"));
        assert_eq!(email("nobody"), None);
        assert_eq!(url("http://x.com/"), None);
        assert_eq!(url("HTTP://X.COM").as_deref(), Some("http://x.com/"));
        assert_eq!(
            url("https://x.com:443/a").as_deref(),
            Some("https://x.com/a")
        );
        assert_eq!(ipv6("2001:DB8:0:0:0:0:0:1").as_deref(), Some("2001:db8::1"));
        assert_eq!(ipv6("::1"), None);
        assert_eq!(ipv6("::ffff:1.2.3.4"), None);
    }
}
