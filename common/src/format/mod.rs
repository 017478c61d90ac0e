//! Formats, input and output. Readers yield [`SourceBatch`]es (raw columns plus where each row
//! came from, plus records that could not be parsed); writers take Arrow batches and stream them
//! into a [`crate::storage::StagedWriter`].

pub mod compression;
pub mod csv;
mod csv_scan;
pub mod ipc;
pub mod ipc_tail;
pub mod json;
mod json_row;
pub mod json_text;
pub mod parquet;
mod parquet_compat;
mod parquet_part;
pub mod parquet_tail;
mod text;
mod type_rewrite;
pub mod write;

pub use compression::open_decoder;

use crate::validate::FieldError;
use crate::{Error, Result};
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A data format, for input or output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Csv,
    /// Newline-delimited JSON; as input also a JSON array of objects.
    Jsonl,
    Parquet,
    /// Arrow IPC file format.
    Arrow,
}

impl Format {
    pub fn parse(text: &str) -> Result<Self> {
        match text.to_ascii_lowercase().as_str() {
            "csv" | "tsv" => Ok(Format::Csv),
            "jsonl" | "ndjson" | "json" => Ok(Format::Jsonl),
            "parquet" | "pq" => Ok(Format::Parquet),
            "arrow" | "ipc" | "feather" => Ok(Format::Arrow),
            other => Err(Error::config(format!(
                "unknown format '{other}' (csv, jsonl, parquet, arrow)"
            ))),
        }
    }

    /// The extension of part files in this format.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Jsonl => "jsonl",
            Format::Parquet => "parquet",
            Format::Arrow => "arrow",
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.extension())
    }
}

/// Whole-stream compression of a text input (Parquet/Arrow compress internally).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Zstd,
}

/// What a file name says about its content: format (if known) and stream compression.
pub fn detect(name: &str) -> (Option<Format>, Compression) {
    let lower = name.to_ascii_lowercase();
    let (stem, compression) = if let Some(s) = lower.strip_suffix(".gz") {
        (s, Compression::Gzip)
    } else if let Some(s) = lower
        .strip_suffix(".zst")
        .or_else(|| lower.strip_suffix(".zstd"))
    {
        (s, Compression::Zstd)
    } else {
        (lower.as_str(), Compression::None)
    };
    let format = stem
        .rsplit_once('.')
        .and_then(|(_, ext)| Format::parse(ext).ok());
    (format, compression)
}

/// CSV dialect. Defaults: header, comma, double quote, quotes escaped by doubling, no
/// quoted newlines promised (`multiline: false` still handles them, at the cost of a re-read).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CsvOptions {
    pub header: bool,
    #[serde(with = "byte_char")]
    pub delimiter: u8,
    #[serde(with = "byte_char")]
    pub quote: u8,
    #[serde(with = "opt_byte_char")]
    pub escape: Option<u8>,
    pub multiline: bool,
}

impl CsvOptions {
    /// A dialect that can be read: the delimiter differs from the quote and the escape, and
    /// none of them is a line end (a newline delimiter would make the whole file one header).
    pub fn check(&self) -> crate::Result<()> {
        let named = [
            ("delimiter", Some(self.delimiter)),
            ("quote", Some(self.quote)),
            ("escape", self.escape),
        ];
        for (what, byte) in named {
            if let Some(b @ (b'\n' | b'\r')) = byte {
                return Err(crate::Error::config(format!(
                    "the CSV {what} cannot be a line end ({:?})",
                    b as char
                )));
            }
        }
        // (An escape equal to the quote is read as doubled quotes: `JobConfig::new`.)
        for (what, other) in [("quote", Some(self.quote)), ("escape", self.escape)] {
            if other == Some(self.delimiter) {
                return Err(crate::Error::config(format!(
                    "the CSV delimiter and {what} are the same character ({})",
                    show_byte(self.delimiter)
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[test]
fn a_dialect_that_cannot_be_read_is_refused() {
    let with = |delimiter, quote, escape| CsvOptions {
        delimiter,
        quote,
        escape,
        ..CsvOptions::default()
    };
    assert!(CsvOptions::default().check().is_ok());
    assert!(with(b';', b'\'', Some(b'\\')).check().is_ok());
    for bad in [
        with(b'\n', b'"', None),
        with(b',', b'\r', None),
        with(b'"', b'"', None),
        with(b',', b',', None),
        with(b',', b'"', Some(b',')),
    ] {
        assert!(bad.check().is_err(), "{bad:?}");
    }
}

impl Default for CsvOptions {
    fn default() -> Self {
        Self {
            header: true,
            delimiter: b',',
            quote: b'"',
            escape: None,
            multiline: false,
        }
    }
}

/// Where a row came from, for error records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Positions {
    /// CSV/JSONL: the physical line on which each row starts (1-based; see `lines_absolute`).
    Lines(Vec<u64>),
    /// Parquet/Arrow/JSON array: rows are consecutive from this 0-based index in the file.
    Rows { first: u64 },
}

/// A record that could not be turned into a row at all (bad quoting, wrong column count,
/// invalid UTF-8, a JSON line that does not parse). It still becomes an error row.
#[derive(Clone, Debug)]
pub struct Reject {
    /// Line (CSV/JSONL) or row index (JSON array), same numbering as [`Positions`].
    pub position: u64,
    /// The fields we could recover, by column name.
    pub values: Vec<(String, String)>,
    /// The raw text (lossy UTF-8, capped).
    pub raw: String,
    pub error: FieldError,
}

/// One input split read as a stream of batches, in file order. Each format implements it in
/// its own module (`csv::CsvRecords`, `json::JsonLines`, `parquet::ParquetRows`,
/// `ipc::IpcRows`); a task reads every split through it. (A JSON array document is the one
/// push-style reader, `json::read_array`: serde drives it.)
pub trait BatchSource {
    /// The next batch, or `None` at the end.
    fn next_batch(&mut self) -> Result<Option<SourceBatch>>;
    /// For a byte range: where its records began and ended (complete once exhausted).
    fn outcome(&self) -> Option<csv::RangeOutcome> {
        None
    }
}

/// One batch of input rows from one object.
pub struct SourceBatch {
    pub source: Arc<str>,
    pub batch: RecordBatch,
    pub positions: Positions,
    /// Rejected records among (before/after) these rows, in file order.
    pub rejects: Vec<Reject>,
    /// JSONL keys that are not columns, per row index in `batch`.
    pub extra_keys: Vec<(usize, Vec<String>)>,
    /// JSON values that are not strings in string columns: (row index in `batch`, column
    /// index). Their text is in the batch; the rows fail as pydantic's JSON mode fails them.
    pub non_strings: Vec<(usize, usize)>,
}

impl SourceBatch {
    /// Typed rows (Parquet/Arrow) numbered from `next_row`, which advances past them.
    pub fn numbered(source: &Arc<str>, batch: RecordBatch, next_row: &mut u64) -> Self {
        let first = *next_row;
        *next_row += batch.num_rows() as u64;
        Self {
            source: source.clone(),
            batch,
            positions: Positions::Rows { first },
            rejects: Vec::new(),
            extra_keys: Vec::new(),
            non_strings: Vec::new(),
        }
    }
}

/// Cap on raw text kept for one rejected record.
pub const RAW_TEXT_CAP: usize = 4096;

pub(crate) fn lossy_capped(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(RAW_TEXT_CAP)];
    String::from_utf8_lossy(cut).into_owned()
}

mod byte_char {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &u8, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::show_byte(*b))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_byte(&text).map_err(serde::de::Error::custom)
    }
}

mod opt_byte_char {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &Option<u8>, s: S) -> Result<S::Ok, S::Error> {
        match b {
            Some(b) => s.serialize_some(&super::show_byte(*b)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u8>, D::Error> {
        let text = Option::<String>::deserialize(d)?;
        text.map(|t| super::parse_byte(&t))
            .transpose()
            .map_err(serde::de::Error::custom)
    }
}

fn show_byte(b: u8) -> String {
    match b {
        b'\t' => "\\t".to_string(),
        other => (other as char).to_string(),
    }
}

/// A one-character CSV setting: `,` `;` `|` `\t` (or the word `tab`).
pub fn parse_byte(text: &str) -> std::result::Result<u8, String> {
    match text {
        "\\t" | "tab" | "\t" => Ok(b'\t'),
        t if t.len() == 1 && t.is_ascii() => Ok(t.as_bytes()[0]),
        other => Err(format!(
            "'{other}' must be a single ASCII character (or \\t)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_and_compression_come_from_the_name() {
        assert_eq!(
            detect("a/users.csv"),
            (Some(Format::Csv), Compression::None)
        );
        assert_eq!(detect("u.CSV.GZ"), (Some(Format::Csv), Compression::Gzip));
        assert_eq!(
            detect("e.jsonl.zst"),
            (Some(Format::Jsonl), Compression::Zstd)
        );
        assert_eq!(
            detect("x.parquet"),
            (Some(Format::Parquet), Compression::None)
        );
        assert_eq!(detect("x.arrow"), (Some(Format::Arrow), Compression::None));
        assert_eq!(detect("README"), (None, Compression::None));
    }
}
