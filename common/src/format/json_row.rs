//! One JSON object read straight into a row of text fields, without building a
//! `serde_json::Value` (a map of owned keys and values per line): keys are looked up as
//! borrowed text, values are written into one reused byte buffer, and only a fully parsed
//! object is handed over. The text of each value is what `Value` would give: strings as they
//! are, numbers and booleans as `serde_json` prints them, nested values as compact JSON.
//!
//! Any failure (not an object, bad JSON, trailing bytes) returns `None` without touching the
//! caller's columns, so the caller can take the slow path and its exact error messages.

use super::json::Target;
use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::ops::Range;

/// What one column received from the current object.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Slot {
    Absent,
    Null,
    Empty,
    Text(Range<usize>),
    /// A number, boolean, list or object in a string column: its text is kept for the error
    /// row, and the row fails as pydantic fails it ("Input should be a valid string").
    NotText(Range<usize>),
}

/// Reused across rows: the parsed fields of one object.
pub(crate) struct RowScratch {
    pub slots: Vec<Slot>,
    pub bytes: Vec<u8>,
    pub extras: Vec<String>,
    /// What each column holds (see [`Target`]); empty: nothing known.
    pub targets: Vec<Target>,
}

impl RowScratch {
    pub fn new(width: usize) -> Self {
        Self {
            slots: vec![Slot::Absent; width],
            bytes: Vec::new(),
            extras: Vec::new(),
            targets: Vec::new(),
        }
    }

    /// Parse `text` as one JSON object into the slots; `false` if it is anything else.
    pub fn parse(&mut self, text: &[u8], index: &mut KeyIndex) -> bool {
        self.slots.iter_mut().for_each(|s| *s = Slot::Absent);
        self.bytes.clear();
        self.extras.clear();
        let mut de = serde_json::Deserializer::from_slice(text);
        let seed = ObjectSeed {
            index,
            scratch: self,
        };
        seed.deserialize(&mut de).is_ok() && de.end().is_ok()
    }
}

/// Columns by key. The objects of a file nearly always list their keys in one order, so the
/// column the previous object had at a key's position is tried first (one comparison), and
/// the key is hashed only when that misses.
pub(crate) struct KeyIndex {
    names: Vec<String>,
    by_name: HashMap<String, usize>,
    /// By key position: the column the last object had there (`usize::MAX`: none).
    order: Vec<usize>,
}

impl KeyIndex {
    pub fn new(columns: &[String]) -> Self {
        Self {
            names: columns.to_vec(),
            by_name: columns
                .iter()
                .enumerate()
                .map(|(i, c)| (c.clone(), i))
                .collect(),
            order: Vec::new(),
        }
    }

    pub fn get(&self, key: &str) -> Option<usize> {
        self.by_name.get(key).copied()
    }

    /// The column of the key at `position` in the object being read.
    fn find(&mut self, position: usize, key: &str) -> Option<usize> {
        if let Some(&col) = self.order.get(position)
            && col != usize::MAX
            && self.names[col] == key
        {
            return Some(col);
        }
        let col = self.get(key);
        if self.order.len() <= position {
            self.order.resize(position + 1, usize::MAX);
        }
        self.order[position] = col.unwrap_or(usize::MAX);
        col
    }
}

struct ObjectSeed<'a> {
    index: &'a mut KeyIndex,
    scratch: &'a mut RowScratch,
}

impl<'de> DeserializeSeed<'de> for ObjectSeed<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ObjectSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut position = 0;
        while let Some(key) = map.next_key_seed(KeySeed(self.index, position))? {
            position += 1;
            match key {
                // A repeated key: the last value counts, as in a parsed `Value` map.
                Key::Column(col) => {
                    let target = self.scratch.targets.get(col).copied().unwrap_or_default();
                    let slot = map.next_value_seed(ValueSeed(&mut self.scratch.bytes, target))?;
                    self.scratch.slots[col] = slot;
                }
                Key::Extra(name) => {
                    if !self.scratch.extras.contains(&name) {
                        self.scratch.extras.push(name);
                    }
                    map.next_value::<CheckedAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// A value the row does not keep, still read in full: text that is not JSON (invalid UTF-8, a
/// lone surrogate, nesting past the parser's depth) makes the record malformed wherever it sits,
/// as pydantic's JSON parsing refuses the whole line. serde's `IgnoredAny` skips unchecked.
struct CheckedAny;

impl<'de> serde::Deserialize<'de> for CheckedAny {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(CheckedAny)
    }
}

impl<'de> Visitor<'de> for CheckedAny {
    type Value = CheckedAny;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_unit<E>(self) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<CheckedAny>()?.is_some() {}
        Ok(self)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self, A::Error> {
        while map.next_entry::<CheckedAny, CheckedAny>()?.is_some() {}
        Ok(self)
    }
}

enum Key {
    Column(usize),
    Extra(String),
}

struct KeySeed<'a>(&'a mut KeyIndex, usize);

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Key;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Key, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E>(self, key: &str) -> Result<Key, E> {
        Ok(match self.0.find(self.1, key) {
            Some(col) => Key::Column(col),
            None => Key::Extra(key.to_string()),
        })
    }
}

/// A value's text, appended to the row's buffer, as its column's type takes it.
struct ValueSeed<'a>(&'a mut Vec<u8>, Target);

impl ValueSeed<'_> {
    fn text(self, write: impl FnOnce(&mut Vec<u8>)) -> Slot {
        let start = self.0.len();
        write(self.0);
        Slot::Text(start..self.0.len())
    }
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Slot;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Slot, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Slot;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_str<E>(self, v: &str) -> Result<Slot, E> {
        let target = self.1;
        if v.is_empty() && target != Target::Nested {
            return Ok(Slot::Empty);
        }
        Ok(self.text(|b| target.string_text(v, b)))
    }

    fn visit_bool<E>(self, v: bool) -> Result<Slot, E> {
        let target = self.1;
        let text = target.bool_text(v);
        Ok(non_string(
            target,
            self.text(|b| b.extend_from_slice(text.as_bytes())),
        ))
    }

    // Numbers print exactly as `serde_json::Number` prints them (the slow path's text), in one
    // place: `CompactSeed`.
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Slot, E> {
        let start = self.0.len();
        CompactSeed(self.0).visit_i64::<E>(v)?;
        Ok(non_string(self.1, Slot::Text(start..self.0.len())))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Slot, E> {
        let start = self.0.len();
        CompactSeed(self.0).visit_u64::<E>(v)?;
        Ok(non_string(self.1, Slot::Text(start..self.0.len())))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Slot, E> {
        let target = self.1;
        if let Some(text) = target.float_text(v) {
            return Ok(self.text(|b| b.extend_from_slice(text.as_bytes())));
        }
        let start = self.0.len();
        CompactSeed(self.0).visit_f64::<E>(v)?;
        Ok(non_string(target, Slot::Text(start..self.0.len())))
    }

    fn visit_unit<E>(self) -> Result<Slot, E> {
        Ok(Slot::Null)
    }

    fn visit_none<E>(self) -> Result<Slot, E> {
        Ok(Slot::Null)
    }

    // Nested values: their compact JSON text, written as they are read.
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Slot, A::Error> {
        let start = self.0.len();
        CompactSeed(self.0).visit_seq(seq)?;
        Ok(non_string(self.1, Slot::Text(start..self.0.len())))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Slot, A::Error> {
        let start = self.0.len();
        CompactSeed(self.0).visit_map(map)?;
        Ok(non_string(self.1, Slot::Text(start..self.0.len())))
    }
}

/// A value that is not a JSON string, in a string column, is flagged (see [`Slot::NotText`]).
fn non_string(target: Target, slot: Slot) -> Slot {
    match slot {
        Slot::Text(range) if target == Target::Text => Slot::NotText(range),
        slot => slot,
    }
}

/// An object key written as JSON text (no `String` per key).
struct KeyText<'a>(&'a mut Vec<u8>);

impl<'de> DeserializeSeed<'de> for KeyText<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyText<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E>(self, key: &str) -> Result<(), E> {
        let _ = serde_json::to_writer(&mut *self.0, key);
        Ok(())
    }
}

/// Any JSON value written back as compact JSON text while it is read (no `Value` built):
/// what `serde_json` prints for the parsed value, except that a key repeated inside a nested
/// object stays repeated (its readers keep the last value, as a parsed map does).
struct CompactSeed<'a>(&'a mut Vec<u8>);

impl<'de> DeserializeSeed<'de> for CompactSeed<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for CompactSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        let _ = serde_json::to_writer(&mut *self.0, v);
        Ok(())
    }

    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.0.extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }

    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        self.0
            .extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
        Ok(())
    }

    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        self.0
            .extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
        Ok(())
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<(), E> {
        let number =
            serde_json::Number::from_f64(v).ok_or_else(|| E::custom("not a finite number"))?;
        let _ = write!(self.0, "{number}");
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        self.0.extend_from_slice(b"null");
        Ok(())
    }

    fn visit_none<E>(self) -> Result<(), E> {
        self.0.extend_from_slice(b"null");
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.0.push(b'[');
        let mut first = true;
        loop {
            let comma = self.0.len();
            if !first {
                self.0.push(b',');
            }
            if seq.next_element_seed(CompactSeed(self.0))?.is_none() {
                self.0.truncate(comma);
                break;
            }
            first = false;
        }
        self.0.push(b']');
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.0.push(b'{');
        let mut first = true;
        loop {
            let comma = self.0.len();
            if !first {
                self.0.push(b',');
            }
            if map.next_key_seed(KeyText(self.0))?.is_none() {
                self.0.truncate(comma);
                break;
            }
            first = false;
            self.0.push(b':');
            map.next_value_seed(CompactSeed(self.0))?;
        }
        self.0.push(b'}');
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// The slow path's text of one field, from a parsed `Value`.
    fn slow(value: &Value) -> Slot {
        match value {
            Value::Null => Slot::Null,
            Value::String(s) if s.is_empty() => Slot::Empty,
            _ => Slot::Text(0..0),
        }
    }

    fn slow_text(value: &Value) -> String {
        match value {
            Value::String(s) => s.clone(),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => n.to_string(),
            nested => nested.to_string(),
        }
    }

    #[test]
    fn fields_read_as_the_value_path_reads_them() {
        let columns = ["a", "b", "c", "d", "e", "f", "g"];
        let names: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
        let mut index = KeyIndex::new(&names);
        let mut scratch = RowScratch::new(columns.len());
        let lines = [
            r#"{"a": "x\"y\u00e9", "b": 12, "c": -3.50, "d": true, "e": null, "f": ""}"#,
            r#"{"a": 1e3, "b": 18446744073709551615, "c": -9223372036854775808, "g": [1, {"k": "v"}]}"#,
            r#"{"b": 0.1, "a": {"z": 1, "y": [true, null]}, "zz": 5, "a": "the last a counts"}"#,
            r#"{"a": 12345678901234567890123, "c": 1.5e-7, "d": false}"#,
        ];
        for line in lines {
            assert!(scratch.parse(line.as_bytes(), &mut index), "{line}");
            let Value::Object(object) = serde_json::from_str::<Value>(line).unwrap() else {
                unreachable!()
            };
            for (col, name) in columns.iter().enumerate() {
                let got = &scratch.slots[col];
                match object.get(*name) {
                    None => assert_eq!(got, &Slot::Absent, "{line} {name}"),
                    Some(value) => match (slow(value), got) {
                        (Slot::Text(_), Slot::Text(r)) => assert_eq!(
                            std::str::from_utf8(&scratch.bytes[r.clone()]).unwrap(),
                            slow_text(value),
                            "{line} {name}"
                        ),
                        (want, got) => assert_eq!(&want, got, "{line} {name}"),
                    },
                }
            }
        }
        assert!(scratch.parse(br#"{"a": 1, "zz": 2, "zz": 3}"#, &mut index));
        assert_eq!(scratch.extras, vec!["zz".to_string()]);
    }

    #[test]
    fn anything_but_one_object_is_left_to_the_slow_path() {
        let mut index = KeyIndex::new(&["a".to_string()]);
        let mut scratch = RowScratch::new(1);
        for bad in [
            &b"[1, 2]"[..],
            b"\"text\"",
            b"{\"a\": 1",
            b"{\"a\": 1} trailing",
            b"{\"a\": \"\xff\"}",
            b"{\"a\": 01}",
        ] {
            assert!(
                !scratch.parse(bad, &mut index),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
