//! String `format` validators (email, uuid, uri, ip). Each takes one value and must not allocate,
//! except URL parsing, which the `url` crate cannot do without building its serialization.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::LazyLock;

use regex::Regex;

/// A sane, not RFC-complete, address shape: local@domain.tld, no whitespace, no empty labels,
/// alphabetic (or punycode) TLD. Unicode letters are allowed as email-validator (pydantic) does.
static EMAIL: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r#"^[^\s@"(),:;<>\[\]\\.]+(?:\.[^\s@"(),:;<>\[\]\\.]+)*@(?:[\p{L}\p{N}](?:[\p{L}\p{N}-]*[\p{L}\p{N}])?\.)+(?:\p{L}{2,}|xn--[a-zA-Z0-9-]+)$"#,
    )
    .ok()
});

pub(crate) fn is_email(value: &str) -> bool {
    // The pattern is a constant; `None` could only come from a regex-crate regression.
    EMAIL.as_ref().is_some_and(|re| re.is_match(value))
}

/// Which bytes are hex digits.
static HEX: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        table[byte] = (byte as u8).is_ascii_hexdigit();
        byte += 1;
    }
    table
};

/// UUID in hyphenated (8-4-4-4-12), braced or plain 32-hex form, optionally of one version.
pub(crate) fn is_uuid(value: &str, version: Option<u8>) -> bool {
    let v = value.trim();
    let v = v
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .unwrap_or(v);
    let b = v.as_bytes();
    // A table lookup per byte, without a branch: this runs on every value of a UUID column,
    // and `is_ascii_hexdigit`'s range tests with an early exit cost 7 % of a CSV run.
    let hex = |part: &[u8]| part.iter().fold(true, |ok, c| ok & HEX[usize::from(*c)]);
    // The version is the 13th hex digit.
    let version_digit = match b.len() {
        36 if [8, 13, 18, 23].iter().all(|&i| b[i] == b'-')
            && hex(&b[..8])
            && hex(&b[9..13])
            && hex(&b[14..18])
            && hex(&b[19..23])
            && hex(&b[24..]) =>
        {
            b[14]
        }
        32 if hex(b) => b[12],
        _ => return false,
    };
    version.is_none_or(|want| (version_digit as char).to_digit(16) == Some(u32::from(want)))
}

/// Absolute URL: `Url::parse` refuses relative references, which is what JSON Schema `uri` means.
pub(crate) fn is_url(value: &str) -> bool {
    url::Url::parse(value.trim()).is_ok()
}

// Addresses are not trimmed: pydantic refuses " 1.2.3.4" too.
pub(crate) fn is_ipv4(value: &str) -> bool {
    value.parse::<Ipv4Addr>().is_ok()
}

pub(crate) fn is_ipv6(value: &str) -> bool {
    value.parse::<Ipv6Addr>().is_ok()
}

pub(crate) fn is_ip(value: &str) -> bool {
    value.parse::<IpAddr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        for ok in [
            "a@b.co",
            "first.last+tag@mail.example.org",
            "jörg@exämple.de",
        ] {
            assert!(is_email(ok), "{ok}");
        }
        for bad in [
            "",
            "a@b",
            "a b@c.de",
            "@c.de",
            "a@@c.de",
            "a@.de",
            "a..b@c.de",
            "a@c.d",
        ] {
            assert!(!is_email(bad), "{bad}");
        }
    }

    #[test]
    fn uuids_urls_ips() {
        assert!(is_uuid("123e4567-e89b-42d3-a456-426614174000", None));
        assert!(is_uuid("123e4567e89b42d3a456426614174000", Some(4)));
        assert!(!is_uuid("123e4567-e89b-12d3-a456-426614174000", Some(4)));
        assert!(!is_uuid("123e4567-e89b-12d3-a456-42661417400g", None));
        assert!(is_uuid(" {123E4567-E89B-42D3-A456-426614174000} ", Some(4)));
        assert!(is_uuid("123e4567e89bf2d3a456426614174000", Some(15)));
        assert!(!is_uuid("123e4567-e89b-42d3-a456-4266141740000", None));
        assert!(!is_uuid("123e4567-e89b-42d3-a456+426614174000", None));
        assert!(!is_uuid("123e4567-e89b-42d3-a4564-26614174000", None));
        assert!(!is_uuid("123e4567e89b42d3a45642661417400", None));
        assert!(!is_uuid("123e4567-e89b-42d3-a456-4266141740é", None));
        assert!(is_url("https://example.com/x?y=1"));
        assert!(!is_url("/relative/path"));
        assert!(!is_url("not a url"));
        assert!(is_ipv4("10.0.0.1") && !is_ipv4("256.0.0.1") && !is_ipv4("::1"));
        assert!(is_ipv6("::1") && !is_ipv6("10.0.0.1"));
        assert!(is_ip("::1") && is_ip("10.0.0.1") && !is_ip("x"));
    }
}
