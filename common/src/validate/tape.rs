//! JSON text parsed into one flat tape of small tokens that point into the text, for walking
//! container fields (`nested`): no map per object, no hashing, no allocation per value (only
//! strings with escapes own their text). A tape reads many cells of one buffer (a string
//! column's values). What it accepts, and the text of each number, are what `serde_json`
//! accepts and prints, so results equal those of a parsed `Value`.

/// Nesting at which parsing fails (serde_json's recursion limit: 127 levels parse, 128 do not).
const MAX_DEPTH: usize = 128;

/// A text: `len` bytes of the source at `start`, or (`len == OWNED`) owned text `start`.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Text {
    start: u32,
    len: u32,
}

const OWNED: u32 = u32::MAX;

/// One token: 12 bytes, so a batch's tape stays small.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Token {
    Null,
    Bool(bool),
    /// A number as `serde_json` prints it once parsed (integers as written).
    Number(Text),
    String(Text),
    /// `len` elements follow; the token after the array is at `end`.
    Array {
        len: u32,
        end: u32,
    },
    /// `len` (key, value) pairs follow, each key a `String` token; the token after it is at
    /// `end`.
    Object {
        len: u32,
        end: u32,
    },
}

/// What a value is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Kind<'t> {
    Null,
    Bool(bool),
    Number(&'t str),
    String(&'t str),
    Array,
    Object,
}

/// The values of many cells of one text buffer (a string column's values), one after another.
pub(super) struct Tape<'a> {
    source: &'a str,
    tokens: Vec<Token>,
    /// Strings with escapes, decoded, and numbers printed otherwise than written.
    owned: Vec<String>,
}

/// One value on a tape.
#[derive(Clone, Copy)]
pub(super) struct Json<'t, 'a> {
    tape: &'t Tape<'a>,
    at: usize,
}

impl<'a> Tape<'a> {
    /// A tape over `source`; `tokens`: about how many tokens it will hold.
    pub fn new(source: &'a str, tokens: usize) -> Self {
        Self {
            source,
            tokens: Vec::with_capacity(tokens),
            owned: Vec::new(),
        }
    }

    /// Parse `source[range]` as one JSON value onto the tape and return where it starts; a
    /// text that is not JSON is kept as one string (it then fails as the wrong type, as with
    /// `Value`).
    pub fn push(&mut self, range: std::ops::Range<usize>) -> usize {
        let start = self.tokens.len();
        let owned = self.owned.len();
        let mut parser = Parser {
            text: &self.source.as_bytes()[..range.end],
            pos: range.start,
            tokens: &mut self.tokens,
            owned: &mut self.owned,
            source: self.source,
        };
        let parsed = parser.value(0).is_some() && {
            parser.skip_ws();
            parser.pos == range.end
        };
        if !parsed {
            self.tokens.truncate(start);
            self.owned.truncate(owned);
            self.tokens.push(Token::String(Text {
                start: range.start as u32,
                len: (range.end - range.start) as u32,
            }));
        }
        start
    }

    pub fn get(&self, at: usize) -> Json<'_, 'a> {
        Json { tape: self, at }
    }

    fn text(&self, text: Text) -> &str {
        if text.len == OWNED {
            &self.owned[text.start as usize]
        } else {
            let start = text.start as usize;
            &self.source[start..start + text.len as usize]
        }
    }
}

impl<'t, 'a> Json<'t, 'a> {
    /// Its position on the tape (the same value is found there again).
    pub fn index(&self) -> usize {
        self.at
    }

    fn token(&self) -> Token {
        self.tape.tokens[self.at]
    }

    pub fn kind(&self) -> Kind<'t> {
        match self.token() {
            Token::Null => Kind::Null,
            Token::Bool(b) => Kind::Bool(b),
            Token::Number(t) => Kind::Number(self.tape.text(t)),
            Token::String(t) => Kind::String(self.tape.text(t)),
            Token::Array { .. } => Kind::Array,
            Token::Object { .. } => Kind::Object,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.token(), Token::Null)
    }

    /// The token after this value (and everything inside it).
    fn next(&self) -> usize {
        match self.token() {
            Token::Array { end, .. } | Token::Object { end, .. } => end as usize,
            _ => self.at + 1,
        }
    }

    fn at(&self, at: usize) -> Self {
        Json {
            tape: self.tape,
            at,
        }
    }

    /// An array's elements (nothing for anything else).
    pub fn items(self) -> impl Iterator<Item = Json<'t, 'a>> {
        let len = match self.token() {
            Token::Array { len, .. } => len as usize,
            _ => 0,
        };
        let mut at = self.at + 1;
        (0..len).map(move |_| {
            let item = self.at(at);
            at = item.next();
            item
        })
    }

    /// An object's members in order, as written (a repeated key appears twice).
    fn raw_members(self) -> impl Iterator<Item = (&'t str, Json<'t, 'a>)> {
        let len = match self.token() {
            Token::Object { len, .. } => len as usize,
            _ => 0,
        };
        let tape = self.tape;
        let mut at = self.at + 1;
        (0..len).map(move |_| {
            let key = match tape.tokens[at] {
                Token::String(k) => tape.text(k),
                _ => "",
            };
            let value = self.at(at + 1);
            at = value.next();
            (key, value)
        })
    }

    /// An object's members as a parsed map holds them: a repeated key keeps its first place
    /// and its last value.
    pub fn members(self) -> Vec<(&'t str, Json<'t, 'a>)> {
        let mut out: Vec<(&'t str, Json<'t, 'a>)> = self.raw_members().collect();
        // Small objects: compare keys pairwise; large ones (a dict of thousands of keys) by a
        // hash set first, so that a cell stays linear in its size.
        let repeated = if out.len() <= 16 {
            out.iter()
                .enumerate()
                .any(|(i, (k, _))| out[..i].iter().any(|(j, _)| j == k))
        } else {
            let mut seen = std::collections::HashSet::with_capacity(out.len());
            !out.iter().all(|(k, _)| seen.insert(*k))
        };
        if repeated {
            let mut first: std::collections::HashMap<&str, usize> = Default::default();
            let mut merged: Vec<(&'t str, Json<'t, 'a>)> = Vec::with_capacity(out.len());
            for (key, value) in out.drain(..) {
                match first.get(key) {
                    Some(&i) => merged[i].1 = value,
                    None => {
                        first.insert(key, merged.len());
                        merged.push((key, value));
                    }
                }
            }
            out = merged;
        }
        out
    }

    /// The value of member `key` (the last one, if repeated).
    pub fn get(self, key: &str) -> Option<Json<'t, 'a>> {
        self.raw_members()
            .filter(|(k, _)| *k == key)
            .last()
            .map(|(_, v)| v)
    }

    pub fn is_object(&self) -> bool {
        matches!(self.token(), Token::Object { .. })
    }

    pub fn is_array(&self) -> bool {
        matches!(self.token(), Token::Array { .. })
    }

    /// The value as compact JSON text, as `serde_json` writes a parsed `Value`.
    #[cfg(test)]
    pub fn write(self, out: &mut Vec<u8>) {
        match self.kind() {
            Kind::Null => out.extend_from_slice(b"null"),
            Kind::Bool(b) => out.extend_from_slice(if b { b"true" } else { b"false" }),
            Kind::Number(n) => out.extend_from_slice(n.as_bytes()),
            Kind::String(s) => {
                let _ = serde_json::to_writer(&mut *out, s);
            }
            Kind::Array => {
                out.push(b'[');
                for (i, item) in self.items().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    item.write(out);
                }
                out.push(b']');
            }
            Kind::Object => {
                out.push(b'{');
                for (i, (key, value)) in self.members().into_iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    let _ = serde_json::to_writer(&mut *out, key);
                    out.push(b':');
                    value.write(out);
                }
                out.push(b'}');
            }
        }
    }
}

struct Parser<'p, 'a> {
    /// The source up to the end of the value being parsed.
    text: &'a [u8],
    source: &'a str,
    pos: usize,
    tokens: &'p mut Vec<Token>,
    owned: &'p mut Vec<String>,
}

impl Parser<'_, '_> {
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.text.get(self.pos) {
            self.pos += 1;
        }
    }

    fn literal(&mut self, word: &[u8], token: Token) -> Option<()> {
        if self.text[self.pos..].starts_with(word) {
            self.pos += word.len();
            self.tokens.push(token);
            Some(())
        } else {
            None
        }
    }

    fn own(&mut self, text: String) -> Text {
        self.owned.push(text);
        Text {
            start: (self.owned.len() - 1) as u32,
            len: OWNED,
        }
    }

    fn value(&mut self, depth: usize) -> Option<()> {
        self.skip_ws();
        match *self.text.get(self.pos)? {
            b'n' => self.literal(b"null", Token::Null),
            b't' => self.literal(b"true", Token::Bool(true)),
            b'f' => self.literal(b"false", Token::Bool(false)),
            b'"' => {
                let s = self.string()?;
                self.tokens.push(Token::String(s));
                Some(())
            }
            b'[' => self.array(depth + 1),
            b'{' => self.object(depth + 1),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn array(&mut self, depth: usize) -> Option<()> {
        if depth >= MAX_DEPTH {
            return None;
        }
        self.pos += 1;
        let at = self.tokens.len();
        self.tokens.push(Token::Array { len: 0, end: 0 });
        let mut len = 0u32;
        self.skip_ws();
        if self.text.get(self.pos) == Some(&b']') {
            self.pos += 1;
        } else {
            loop {
                self.value(depth)?;
                len += 1;
                self.skip_ws();
                match self.text.get(self.pos)? {
                    b',' => self.pos += 1,
                    b']' => {
                        self.pos += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        let end = u32::try_from(self.tokens.len()).ok()?;
        self.tokens[at] = Token::Array { len, end };
        Some(())
    }

    fn object(&mut self, depth: usize) -> Option<()> {
        if depth >= MAX_DEPTH {
            return None;
        }
        self.pos += 1;
        let at = self.tokens.len();
        self.tokens.push(Token::Object { len: 0, end: 0 });
        let mut len = 0u32;
        self.skip_ws();
        if self.text.get(self.pos) == Some(&b'}') {
            self.pos += 1;
        } else {
            loop {
                self.skip_ws();
                if self.text.get(self.pos) != Some(&b'"') {
                    return None;
                }
                let key = self.string()?;
                self.tokens.push(Token::String(key));
                self.skip_ws();
                if self.text.get(self.pos) != Some(&b':') {
                    return None;
                }
                self.pos += 1;
                self.value(depth)?;
                len += 1;
                self.skip_ws();
                match self.text.get(self.pos)? {
                    b',' => self.pos += 1,
                    b'}' => {
                        self.pos += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        let end = u32::try_from(self.tokens.len()).ok()?;
        self.tokens[at] = Token::Object { len, end };
        Some(())
    }

    /// A string (the opening quote at `pos`): in place when it has no escapes.
    fn string(&mut self) -> Option<Text> {
        let start = self.pos + 1;
        let mut i = start;
        loop {
            match *self.text.get(i)? {
                b'"' => {
                    self.pos = i + 1;
                    return Some(Text {
                        start: start as u32,
                        len: (i - start) as u32,
                    });
                }
                b'\\' => break,
                0..=0x1f => return None,
                _ => i += 1,
            }
        }
        // Escapes: let serde_json decode them (rare in data, and exactly its rules).
        let mut end = i;
        loop {
            match *self.text.get(end)? {
                b'"' => break,
                b'\\' => end += 2,
                0..=0x1f => return None,
                _ => end += 1,
            }
        }
        let decoded: String = serde_json::from_str(self.source.get(start - 1..=end)?).ok()?;
        self.pos = end + 1;
        Some(self.own(decoded))
    }

    fn number(&mut self) -> Option<()> {
        let start = self.pos;
        let t = self.text;
        let mut i = start;
        if t[i] == b'-' {
            i += 1;
        }
        match t.get(i)? {
            b'0' => i += 1,
            b'1'..=b'9' => {
                while t.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
            }
            _ => return None,
        }
        let mut integer = true;
        if t.get(i) == Some(&b'.') {
            integer = false;
            i += 1;
            if !t.get(i).is_some_and(u8::is_ascii_digit) {
                return None;
            }
            while t.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
        }
        if matches!(t.get(i), Some(b'e' | b'E')) {
            integer = false;
            i += 1;
            if matches!(t.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            if !t.get(i).is_some_and(u8::is_ascii_digit) {
                return None;
            }
            while t.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
        }
        self.pos = i;
        let text = &self.source[start..i];
        // An integer that fits prints as written ("-0" excepted); anything else as serde_json
        // prints the number it parses.
        let as_written =
            integer && text != "-0" && (text.parse::<u64>().is_ok() || text.parse::<i64>().is_ok());
        let number = if as_written {
            Text {
                start: start as u32,
                len: (i - start) as u32,
            }
        } else {
            let printed = text.parse::<serde_json::Number>().ok()?.to_string();
            self.own(printed)
        };
        self.tokens.push(Token::Number(number));
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// Text that parses writes back exactly as serde_json writes its `Value`; text that does
    /// not is one string.
    #[test]
    fn the_tape_reads_and_writes_json_as_serde_json_does() {
        let cases = [
            r#"{"a":[1,2.50,-0,1e2,18446744073709551616,-9223372036854775808],"b":{"c":null,"d":true}}"#,
            r#" [ {"k" : "v\"\u00e9\ud83d\ude00" } , [] , {} ] "#,
            r#"{"x":1,"y":2,"x":3}"#,
            r#""just a string""#,
            "12.300",
            "-1.5E-3",
            "[1,]",
            "{\"a\":1",
            "01",
            "nul",
            "[1] 2",
            "\"tab\tinside\"",
            "not json",
            "",
        ];
        for text in cases {
            let mut tape = Tape::new(text, 0);
            let at = tape.push(0..text.len());
            let mut ours = Vec::new();
            tape.get(at).write(&mut ours);
            let expected = match serde_json::from_str::<Value>(text) {
                Ok(v) => serde_json::to_string(&v).unwrap(),
                Err(_) => serde_json::to_string(text).unwrap(),
            };
            assert_eq!(String::from_utf8(ours).unwrap(), expected, "{text}");
        }
        // Cells side by side in one buffer, as a string column holds them.
        let buffer = r#"[0]{"x":1,"y":[1,[2,3],4],"x":3}"#;
        let mut tape = Tape::new(buffer, 0);
        tape.push(0..3);
        let at = tape.push(3..buffer.len());
        let root = tape.get(at);
        assert_eq!(root.get("x").map(|v| v.kind()), Some(Kind::Number("3")));
        let keys: Vec<&str> = root.members().iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, ["x", "y"]);
        let y = root.get("y").unwrap();
        assert_eq!(y.items().count(), 3);
        assert!(y.items().nth(1).unwrap().is_array());
        // A cell ends where its range ends, whatever follows it in the buffer.
        let buffer = "[1,2][3]";
        let mut tape = Tape::new(buffer, 0);
        let whole = tape.push(0..5);
        assert_eq!(tape.get(whole).items().count(), 2);
        let cut = tape.push(5..7);
        assert_eq!(tape.get(cut).kind(), Kind::String("[3"));
        // As deep as serde_json goes, and no deeper.
        for (depth, parses) in [(127, true), (128, false), (200, false)] {
            let deep = "[".repeat(depth) + &"]".repeat(depth);
            let mut tape = Tape::new(&deep, 0);
            let at = tape.push(0..deep.len());
            assert_eq!(tape.get(at).is_array(), parses, "{depth}");
            assert_eq!(
                serde_json::from_str::<Value>(&deep).is_ok(),
                parses,
                "{depth}"
            );
        }
        // Thousands of keys, one repeated: its first place, its last value.
        let mut big = String::from("{");
        for i in 0..5000 {
            big.push_str(&format!("\"k{i}\":{i},"));
        }
        big.push_str("\"k7\":-1}");
        let mut tape = Tape::new(&big, 0);
        let at = tape.push(0..big.len());
        let members = tape.get(at).members();
        assert_eq!(members.len(), 5000);
        assert_eq!(members[7].0, "k7");
        assert_eq!(members[7].1.kind(), Kind::Number("-1"));
    }
}
