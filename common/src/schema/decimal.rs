//! pydantic's `Decimal` in JSON Schema, and its Arrow type.
//!
//! pydantic writes a Decimal field as `anyOf [{type: number, …bounds}, {type: string}]`; when the
//! model's JSON Schema generator reflects `max_digits` / `decimal_places`
//! (`GenerateJsonSchema.build_decimal_pattern`, pydantic ≥ 2.12), the string branch carries a
//! `pattern` built from them. We read them back by regenerating that pattern, and map the field
//! to `Decimal128(max_digits, decimal_places)`. Without them (pydantic's default output), a
//! Decimal is `Decimal128(38, 18)` (as Spark maps an unconstrained decimal): values with more
//! places or more whole digits than that fit are invalid rows saying so, never rounded.

use serde_json::Value;

/// Precision and scale of an unconstrained Decimal.
pub const UNCONSTRAINED: (u8, i8) = (38, 18);

/// `max_digits` / `decimal_places` as pydantic states them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecimalSpec {
    pub max_digits: Option<u8>,
    pub decimal_places: Option<u8>,
}

impl DecimalSpec {
    /// The Arrow `Decimal128(precision, scale)` holding every value the spec accepts.
    pub fn arrow(&self) -> (u8, i8) {
        match (self.max_digits, self.decimal_places) {
            (Some(md), Some(dp)) => (md.clamp(1, 38), dp.min(md) as i8),
            (Some(md), None) => ((2 * md).clamp(1, 38), md.min(38) as i8),
            (None, Some(dp)) => (38, dp.min(38) as i8),
            (None, None) => UNCONSTRAINED,
        }
    }

    /// The spec an Arrow decimal type stands for (what `to_json_schema` writes).
    pub fn of_arrow(precision: u8, scale: i8) -> Self {
        Self {
            max_digits: Some(precision),
            decimal_places: Some(scale.max(0) as u8),
        }
    }
}

/// pydantic's `_repeat`: `atom` between `min` and `max` times, with the shortest quantifier.
fn repeat(atom: &str, min: u32, max: u32) -> String {
    if min > max || max == 0 {
        return String::new();
    }
    if min == max {
        return if min == 1 {
            atom.to_string()
        } else {
            format!("{atom}{{{min}}}")
        };
    }
    if (min, max) == (0, 1) {
        return format!("{atom}?");
    }
    format!("{atom}{{{min},{max}}}")
}

/// pydantic's validation-mode decimal pattern (`_decimal_validation_pattern`, no inf/nan).
pub fn pattern(spec: DecimalSpec) -> String {
    let number = r"(?:[0-9]+\.?[0-9]*|\.[0-9]+)";
    let exponent = r"[eE][+-]?[0-9]+";
    let (md, dp) = (
        spec.max_digits.map(u32::from),
        spec.decimal_places.map(u32::from),
    );
    let mut alts: Vec<String> = Vec::new();
    match (md, dp) {
        (None, None) => return format!(r"^[+-]?(?:{number}(?:{exponent})?)$"),
        (Some(md), Some(dp)) => {
            let whole = md.saturating_sub(dp);
            let places = md.min(dp);
            let int_part = if whole > 0 {
                format!("0*{}", repeat("[0-9]", 1, whole))
            } else {
                "0+".to_string()
            };
            let opt_int_part = format!("0*{}", repeat("[0-9]", 0, whole));
            let opt_frac_part = format!(r"\.{}0*", repeat("[0-9]", 0, places));
            let frac_part = if places > 0 {
                format!(r"\.{}0*", repeat("[0-9]", 1, places))
            } else {
                r"\.0+".to_string()
            };
            alts.push(format!("{int_part}(?:{opt_frac_part})?"));
            alts.push(format!("{opt_int_part}{frac_part}"));
        }
        (Some(md), None) => {
            let int_part = if md > 0 {
                format!("0*{}", repeat("[0-9]", 1, md))
            } else {
                "0+".to_string()
            };
            alts.push(format!(r"{int_part}(?:\.0*)?"));
            if md == 0 {
                alts.push(r"0*\.0+".to_string());
            }
            for whole in 0..md {
                alts.push(format!(
                    r"0*{}\.{}0*",
                    repeat("[0-9]", whole, whole),
                    repeat("[0-9]", 1, md - whole)
                ));
            }
        }
        (None, Some(dp)) => {
            let opt_frac_part = format!(r"\.{}0*", repeat("[0-9]", 0, dp));
            let frac_part = if dp > 0 {
                format!(r"\.{}0*", repeat("[0-9]", 1, dp))
            } else {
                r"\.0+".to_string()
            };
            alts.push(format!("[0-9]+(?:{opt_frac_part})?"));
            alts.push(format!("[0-9]*{frac_part}"));
        }
    }
    alts.push(format!("{number}{exponent}"));
    format!(r"^[+-]?(?:{})$", alts.join("|"))
}

/// The spec a pattern was built from, if it is one of pydantic's decimal patterns.
fn spec_of_pattern(text: &str) -> Option<DecimalSpec> {
    let mut candidates = vec![DecimalSpec {
        max_digits: None,
        decimal_places: None,
    }];
    for n in 0..=38u8 {
        candidates.push(DecimalSpec {
            max_digits: Some(n),
            decimal_places: None,
        });
        candidates.push(DecimalSpec {
            max_digits: None,
            decimal_places: Some(n),
        });
        for dp in 0..=n {
            candidates.push(DecimalSpec {
                max_digits: Some(n),
                decimal_places: Some(dp),
            });
        }
    }
    candidates.into_iter().find(|spec| pattern(*spec) == text)
}

/// Whether `branches` (the non-null alternatives of an `anyOf`) are pydantic's Decimal: a
/// `number` (with numeric bounds only) and a `string` (with a pattern at most). Returns the
/// spec and the index of the `number` branch, whose bounds become the field's checks.
pub fn recognise(branches: &[&Value]) -> Option<(DecimalSpec, usize)> {
    let [a, b] = branches else {
        return None;
    };
    let kind = |v: &Value| v.get("type").and_then(Value::as_str).map(str::to_string);
    let (number, string, number_at) = match (kind(a)?.as_str(), kind(b)?.as_str()) {
        ("number", "string") => (*a, *b, 0),
        ("string", "number") => (*b, *a, 1),
        _ => return None,
    };
    const NUMBER_KEYS: [&str; 8] = [
        "type",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "title",
        "description",
    ];
    let number_ok = number
        .as_object()?
        .keys()
        .all(|k| NUMBER_KEYS.contains(&k.as_str()));
    let string = string.as_object()?;
    if !string
        .keys()
        .all(|k| matches!(k.as_str(), "type" | "pattern" | "title" | "description"))
        || !number_ok
    {
        return None;
    }
    let spec = match string.get("pattern") {
        None => DecimalSpec {
            max_digits: None,
            decimal_places: None,
        },
        Some(p) => spec_of_pattern(p.as_str()?)?,
    };
    Some((spec, number_at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_equal_pydantics_and_read_back() {
        // pydantic 2.14 `build_decimal_pattern` for max_digits=10, decimal_places=2.
        let p = pattern(DecimalSpec {
            max_digits: Some(10),
            decimal_places: Some(2),
        });
        assert_eq!(
            p,
            r"^[+-]?(?:0*[0-9]{1,8}(?:\.[0-9]{0,2}0*)?|0*[0-9]{0,8}\.[0-9]{1,2}0*|(?:[0-9]+\.?[0-9]*|\.[0-9]+)[eE][+-]?[0-9]+)$"
        );
        for spec in [
            DecimalSpec::of_arrow(10, 2),
            DecimalSpec::of_arrow(38, 0),
            DecimalSpec {
                max_digits: Some(5),
                decimal_places: None,
            },
            DecimalSpec {
                max_digits: None,
                decimal_places: Some(3),
            },
        ] {
            assert_eq!(spec_of_pattern(&pattern(spec)), Some(spec));
        }
    }
}
