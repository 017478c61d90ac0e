//! A JSON Schema `pattern`, matched as pydantic-core matches it: with the Rust regex engine.
//!
//! The commonest patterns in models are one anchored run of ASCII characters, like
//! `^[a-z0-9]+$` or `^[A-Z]{2}$`. Those are checked with a byte table instead, which gives the
//! regex's answer at a fraction of its cost per value (the regex stays for everything else).

use regex::Regex;
use regex_syntax::hir::{Class, Hir, HirKind, Look};

#[derive(Debug, Clone)]
pub(crate) struct Pattern {
    regex: Regex,
    /// Boxed: the table is 256 bytes, and rules sit in enums beside small ones.
    run: Option<Box<AsciiRun>>,
}

/// `^[class]{min,max}$` over ASCII characters: every byte in the class, and a length in range.
#[derive(Debug, Clone)]
struct AsciiRun {
    allowed: [bool; 256],
    min: usize,
    max: Option<usize>,
}

impl Pattern {
    pub(crate) fn new(regex: Regex) -> Self {
        let run = regex_syntax::Parser::new()
            .parse(regex.as_str())
            .ok()
            .and_then(|hir| AsciiRun::of(&hir))
            .map(Box::new);
        Self { regex, run }
    }

    pub(crate) fn as_str(&self) -> &str {
        self.regex.as_str()
    }

    pub(crate) fn is_match(&self, text: &str) -> bool {
        match &self.run {
            // All allowed bytes are ASCII, so bytes are characters here.
            Some(run) => {
                text.len() >= run.min
                    && run.max.is_none_or(|max| text.len() <= max)
                    && text.bytes().all(|b| run.allowed[usize::from(b)])
            }
            None => self.regex.is_match(text),
        }
    }
}

impl AsciiRun {
    fn of(hir: &Hir) -> Option<Self> {
        let HirKind::Concat(parts) = hir.kind() else {
            return None;
        };
        let [start, body, end] = parts.as_slice() else {
            return None;
        };
        if !matches!(start.kind(), HirKind::Look(Look::Start))
            || !matches!(end.kind(), HirKind::Look(Look::End))
        {
            return None;
        }
        let (class, min, max) = match body.kind() {
            HirKind::Repetition(rep) => (&*rep.sub, rep.min, rep.max),
            HirKind::Class(_) => (body, 1, Some(1)),
            _ => return None,
        };
        let mut allowed = [false; 256];
        match class.kind() {
            HirKind::Class(Class::Unicode(set)) => {
                for range in set.ranges() {
                    let (lo, hi) = (u32::from(range.start()), u32::from(range.end()));
                    if hi > 0x7F {
                        return None;
                    }
                    (lo..=hi).for_each(|b| allowed[b as usize] = true);
                }
            }
            HirKind::Class(Class::Bytes(set)) => {
                for range in set.ranges() {
                    if range.end() > 0x7F {
                        return None;
                    }
                    (range.start()..=range.end()).for_each(|b| allowed[usize::from(b)] = true);
                }
            }
            _ => return None,
        }
        Some(Self {
            allowed,
            min: usize::try_from(min).ok()?,
            max: max.map(usize::try_from).transpose().ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(text: &str) -> Pattern {
        Pattern::new(Regex::new(text).expect("compiles"))
    }

    #[test]
    fn anchored_ascii_runs_take_the_table_and_the_rest_the_regex() {
        for text in [
            "^[a-z0-9]+$",
            "^[A-Z]{2}$",
            "^[a-z_]{3,8}$",
            "^[0-9]*$",
            "^[abc]$",
        ] {
            assert!(pattern(text).run.is_some(), "{text}");
        }
        // Not anchored at both ends, non-ASCII classes (\d and \w are Unicode), alternations.
        for text in [
            "[a-z]+",
            "^[a-z]+",
            "^\\d{5}$",
            "^\\w+$",
            "^(ab|cd)$",
            "^[a-zé]+$",
        ] {
            assert!(pattern(text).run.is_none(), "{text}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(20_000))]
        #[test]
        fn the_table_answers_as_the_regex_does(
            text in "[a-zA-Z0-9_ é\\-]{0,12}",
            which in 0usize..6,
        ) {
            let source = ["^[a-z0-9]+$", "^[A-Z]{2}$", "^[a-z_]{3,8}$", "^[0-9]*$", "^[-a-c]$",
                "^[^a-z]{1,4}$"][which];
            let regex = Regex::new(source).expect("compiles");
            let fast = Pattern::new(regex.clone());
            proptest::prop_assert_eq!(fast.is_match(&text), regex.is_match(&text), "{} on {:?}", source, text);
        }
    }
}
