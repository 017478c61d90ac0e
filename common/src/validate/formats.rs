//! String `format` validators (email, uuid, uri, ip). Each takes one value and must not allocate,
//! except URL parsing, which the `url` crate cannot do without building its serialization.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::LazyLock;

use regex::Regex;

/// A sane, not RFC-complete, address shape: local@domain.tld, no whitespace, no empty labels,
/// the TLD a label like the others (`deliverable` refuses a numeric one). Unicode letters are
/// allowed as email-validator (pydantic) does.
static EMAIL: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r#"^[^\s@"(),:;<>\[\]\\.]+(?:\.[^\s@"(),:;<>\[\]\\.]+)*@(?:[\p{L}\p{N}](?:[\p{L}\p{N}-]*[\p{L}\p{N}])?\.)+[\p{L}\p{N}](?:[\p{L}\p{N}-]*[\p{L}\p{N}])?$"#,
    )
    .ok()
});

pub(crate) fn is_email(value: &str) -> bool {
    ascii_email(value.as_bytes()).unwrap_or_else(|| regex_email(value))
}

/// The address grammar by the regex (any text), with what email-validator also refuses.
fn regex_email(value: &str) -> bool {
    // The pattern is a constant; `None` could only come from a regex-crate regression.
    EMAIL.as_ref().is_some_and(|re| re.is_match(value))
        && value.rsplit_once('@').is_some_and(|(_, domain)| {
            let tld = domain.rsplit('.').next().unwrap_or(domain);
            domain.split('.').all(|label| label.len() <= 63) && deliverable_tld(tld.as_bytes())
        })
}

/// What email-validator (pydantic's `EmailStr`) also refuses in a TLD: a numeric one (an IP
/// address's last part, not a domain) and the special-use domains no mail is delivered to
/// (checked against pydantic 2.12). Labels over 63 bytes are refused by `is_label`.
fn deliverable_tld(tld: &[u8]) -> bool {
    const SPECIAL_USE: [&[u8]; 6] = [
        b"arpa",
        b"invalid",
        b"local",
        b"localhost",
        b"onion",
        b"test",
    ];
    // Cheap tests first: this runs on every address of a column.
    let numeric = tld.iter().all(u8::is_ascii_digit);
    let special_use =
        (4..=9).contains(&tld.len()) && SPECIAL_USE.iter().any(|s| s.eq_ignore_ascii_case(tld));
    !numeric && !special_use
}

/// Byte classes of the address grammar (bit flags).
const LOCAL: u8 = 1; // may appear in a local-part atom
const ALNUM: u8 = 2;
static EMAIL_CLASS: [u8; 128] = {
    let mut table = [0u8; 128];
    let mut c = 0;
    while c < 128 {
        let b = c as u8;
        let excluded = matches!(
            b,
            b'\t'
                ..=b'\r'
                    | b' '
                    | b'@'
                    | b'"'
                    | b'('
                    | b')'
                    | b','
                    | b':'
                    | b';'
                    | b'<'
                    | b'>'
                    | b'['
                    | b']'
                    | b'\\'
                    | b'.'
        );
        table[c] =
            if excluded { 0 } else { LOCAL } | if b.is_ascii_alphanumeric() { ALNUM } else { 0 };
        c += 1;
    }
    table
};

/// `EMAIL` on ASCII text in one pass (the regex engine cost 6 % of a run over a column of
/// addresses); `None` for non-ASCII text, which the regex judges. Same grammar: dot-separated
/// non-empty local atoms without whitespace or `@"(),:;<>[]\`, one `@`, one or more labels
/// (alphanumeric at both ends, hyphens inside) each followed by a dot, then the TLD, a label
/// too.
fn ascii_email(value: &[u8]) -> Option<bool> {
    let mut i = 0;
    // The local part.
    let mut atom = 0;
    loop {
        // No `@` (or nothing after the local part's last atom): not an address.
        let Some(&c) = value.get(i) else {
            return Some(false);
        };
        i += 1;
        match c {
            b'@' if atom > 0 => break,
            b'.' if atom > 0 => atom = 0,
            _ if c >= 0x80 => return None,
            _ if EMAIL_CLASS[usize::from(c)] & LOCAL != 0 => atom += 1,
            _ => return Some(false),
        }
    }
    // The domain: segments split by dots; every one but the last a label, the last the TLD.
    let domain = &value[i..];
    if !domain.is_ascii() {
        return None;
    }
    let Some(dot) = domain.iter().rposition(|&c| c == b'.') else {
        return Some(false);
    };
    let (labels, tld) = (&domain[..dot], &domain[dot + 1..]);
    let ok = labels.split(|&c| c == b'.').all(is_label);
    Some(ok && is_label(tld) && deliverable_tld(tld))
}

fn is_label_byte(c: u8) -> bool {
    c == b'-'
        || EMAIL_CLASS
            .get(usize::from(c))
            .is_some_and(|k| k & ALNUM != 0)
}

/// A domain label: alphanumeric at both ends, hyphens inside, at most 63 bytes.
fn is_label(label: &[u8]) -> bool {
    let alnum = |c: &u8| {
        EMAIL_CLASS
            .get(usize::from(*c))
            .is_some_and(|k| k & ALNUM != 0)
    };
    label.len() <= 63
        && label.first().is_some_and(alnum)
        && label.last().is_some_and(alnum)
        && label.iter().all(|&c| is_label_byte(c))
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

/// UUID in hyphenated (8-4-4-4-12, also braced or as a `urn:uuid:`) or plain 32-hex form,
/// optionally of one version; not trimmed, as pydantic does not trim it.
pub(crate) fn is_uuid(value: &str, version: Option<u8>) -> bool {
    let v = value.strip_prefix("urn:uuid:").unwrap_or(value);
    let v = match v.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
        Some(inner) if inner.len() == 36 => inner,
        Some(_) => return false,
        None => v,
    };
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
            "bob@x.example",
            "bob@x.c",
            "bob@x.c0m",
            "bob@x.co-m",
            &format!("bob@{}.com", "a".repeat(63)),
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
            "bob@x.123",
            "bob@x.-com",
            // email-validator's special-use domains, and a label over 63 bytes.
            "bob@x.test",
            "bob@mail.INVALID",
            "bob@printer.local",
            &format!("bob@{}.com", "a".repeat(64)),
        ] {
            assert!(!is_email(bad), "{bad}");
        }
    }

    proptest::proptest! {
        /// The hand-written ASCII matcher agrees with the regex on text made of the bytes
        /// the grammar cares about.
        #[test]
        fn the_ascii_email_matcher_is_the_regex(
            text in proptest::string::string_regex(
                r#"[aZ09xn.@ \t\x01"_+()<>,:;\[\]\\-]{0,24}"#
            ).unwrap(),
            shaped in proptest::string::string_regex(
                r"[a.+_-]{1,6}@([a-zA-Z0-9-]{1,4}\.){1,3}(xn--[a-z0-9-]{0,3}|[a-zA-Z0-9]{0,3})"
            ).unwrap(),
        ) {
            for t in [&text, &shaped] {
                proptest::prop_assert_eq!(ascii_email(t.as_bytes()), Some(regex_email(t)), "{:?}", t);
            }
        }
    }

    #[test]
    fn uuids_urls_ips() {
        assert!(is_uuid("123e4567-e89b-42d3-a456-426614174000", None));
        assert!(is_uuid("123e4567e89b42d3a456426614174000", Some(4)));
        assert!(!is_uuid("123e4567-e89b-12d3-a456-426614174000", Some(4)));
        assert!(!is_uuid("123e4567-e89b-12d3-a456-42661417400g", None));
        assert!(is_uuid("{123E4567-E89B-42D3-A456-426614174000}", Some(4)));
        assert!(is_uuid(
            "urn:uuid:123e4567-e89b-42d3-a456-426614174000",
            Some(4)
        ));
        // As pydantic: no surrounding spaces, no braces around the 32-hex form.
        assert!(!is_uuid(" 123e4567-e89b-42d3-a456-426614174000", None));
        assert!(!is_uuid("123e4567-e89b-42d3-a456-426614174000 ", None));
        assert!(!is_uuid("{123e4567e89b42d3a456426614174000}", None));
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
