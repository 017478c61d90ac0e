//! Property: for random CSV files and random split sizes, the records read by the byte ranges
//! together are exactly the file's records, in order, none twice, with the same line numbers —
//! or, when a quoted newline crossed a boundary, the boundary check says so (and only then).

use arrow::array::{Array, AsArray};
use proptest::prelude::*;
use std::io::BufReader;
use std::sync::Arc;
use zoopipe_common::format::csv::{CsvRecords, RangeOutcome, read_header, skip_to_line_start};
use zoopipe_common::format::{CsvOptions, Positions};
use zoopipe_common::plan::{line_bases, misaligned_files};
use zoopipe_common::report::RangeReport;

/// A record as (line, fields) — rejects as (line, [raw]).
type Rec = (u64, Vec<String>);

fn read_range(
    file: &[u8],
    start: u64,
    end: u64,
    opts: &CsvOptions,
    columns: &Arc<[String]>,
) -> (Vec<Rec>, RangeOutcome) {
    let begin = start.saturating_sub(1) as usize;
    let mut reader = BufReader::with_capacity(16, &file[begin..]);
    let base = if start == 0 {
        0
    } else {
        match skip_to_line_start(&mut reader, start, true).unwrap() {
            Some(base) => base,
            None => {
                let n = file.len() as u64;
                return (
                    Vec::new(),
                    RangeOutcome {
                        first_record: n,
                        end: n,
                        lines: 0,
                    },
                );
            }
        }
    };
    let mut records = CsvRecords::new(
        reader,
        opts,
        columns.clone(),
        "t".into(),
        base,
        1,
        Some(end),
        start == 0 && opts.header,
        3,
    );
    let mut out = Vec::new();
    while let Some(batch) = records.next_batch().unwrap() {
        let Positions::Lines(lines) = &batch.positions else {
            panic!("csv has lines")
        };
        let mut rows: Vec<Rec> = (0..batch.batch.num_rows())
            .map(|r| {
                let fields = batch
                    .batch
                    .columns()
                    .iter()
                    .map(|c| {
                        let s = c.as_string::<i32>();
                        if s.is_null(r) {
                            String::new()
                        } else {
                            s.value(r).to_string()
                        }
                    })
                    .collect();
                (lines[r], fields)
            })
            .collect();
        rows.extend(
            batch
                .rejects
                .iter()
                .map(|j| (j.position, vec![j.raw.clone()])),
        );
        rows.sort_by_key(|r| r.0);
        out.extend(rows);
    }
    (out, records.outcome())
}

/// Line ends: `\n`, `\r\n`, or a bare `\r` (classic Mac, some spreadsheet exports).
fn csv_bytes(records: &[Vec<String>], ending: u8) -> Vec<u8> {
    let mut w = csv::WriterBuilder::new()
        .flexible(true)
        .terminator(match ending {
            0 => csv::Terminator::Any(b'\n'),
            1 => csv::Terminator::CRLF,
            _ => csv::Terminator::Any(b'\r'),
        })
        .from_writer(Vec::new());
    for r in records {
        w.write_record(r).unwrap();
    }
    w.into_inner().unwrap()
}

fn field(multiline: bool) -> impl Strategy<Value = String> {
    let chars = if multiline { "ab ,\"\né" } else { "ab ,\"é" };
    let alphabet: Vec<char> = chars.chars().collect();
    prop::collection::vec(prop::sample::select(alphabet), 0..6)
        .prop_map(|v| v.into_iter().collect())
}

fn file(multiline: bool) -> impl Strategy<Value = (Vec<Vec<String>>, u8)> {
    let record = prop::collection::vec(field(multiline), 3..=3);
    let odd = prop::collection::vec(field(false), 1..5);
    let rec = prop_oneof![9 => record, 1 => odd];
    (prop::collection::vec(rec, 1..40), 0u8..3)
}

fn check(
    records: Vec<Vec<String>>,
    ending: u8,
    cuts: Vec<u64>,
    may_misalign: bool,
) -> Result<(), TestCaseError> {
    let mut all = vec![vec!["x".to_string(), "y".to_string(), "z".to_string()]];
    all.extend(records);
    let bytes = csv_bytes(&all, ending);
    let opts = CsvOptions::default();
    let (names, _) = read_header(&bytes, true, &opts).unwrap().unwrap();
    let columns: Arc<[String]> = names.into();
    let size = bytes.len() as u64;
    let (whole, _) = read_range(&bytes, 0, size, &opts, &columns);

    let mut bounds: Vec<u64> = cuts
        .into_iter()
        .map(|c| c % size)
        .filter(|c| *c > 0)
        .collect();
    bounds.push(0);
    bounds.push(size);
    bounds.sort();
    bounds.dedup();
    let mut reports = Vec::new();
    let mut pieces = Vec::new();
    for w in bounds.windows(2) {
        let (rows, outcome) = read_range(&bytes, w[0], w[1], &opts, &columns);
        reports.push(RangeReport {
            url: "t".into(),
            start: w[0],
            end: w[1],
            outcome,
        });
        pieces.push((w[0], rows));
    }
    if !misaligned_files(&reports).is_empty() {
        prop_assert!(
            may_misalign,
            "boundary check fired on a file without quoted newlines"
        );
        return Ok(());
    }
    let bases = line_bases(&reports);
    let mut joined = Vec::new();
    for (start, rows) in pieces {
        let base = bases[&("t".to_string(), start)];
        joined.extend(rows.into_iter().map(|(line, f)| (line + base - 1, f)));
    }
    prop_assert_eq!(joined, whole);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn ranges_partition_records_exactly((records, ending) in file(false), cuts in prop::collection::vec(any::<u64>(), 0..8)) {
        check(records, ending, cuts, false)?;
    }

    #[test]
    fn quoted_newlines_are_read_right_or_detected((records, ending) in file(true), cuts in prop::collection::vec(any::<u64>(), 0..8)) {
        check(records, ending, cuts, true)?;
    }
}
