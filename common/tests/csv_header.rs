//! Property: `read_header` (the record scanner) reads the same header names and data offset as
//! the `csv` crate does, for any bytes, dialect and end-of-input flag.

use proptest::prelude::*;
use zoopipe_common::format::CsvOptions;
use zoopipe_common::format::csv::read_header;

/// The names and offset as the `csv` crate gave them before the scanner read headers.
fn by_csv_crate(head: &[u8], at_eof: bool, opts: &CsvOptions) -> Option<(Vec<String>, u64)> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(opts.delimiter)
        .quote(opts.quote)
        .double_quote(opts.escape.is_none())
        .escape(opts.escape)
        .from_reader(head);
    let mut record = csv::ByteRecord::new();
    match reader.read_byte_record(&mut record) {
        Ok(true) => {
            let end = reader.position().byte();
            let complete = at_eof || (end as usize) < head.len() || head.ends_with(b"\n");
            if !complete {
                return None;
            }
            // The fields as read; naming them (trimming, numbering, dedup) is the same code.
            let fields = record
                .iter()
                .map(|f| String::from_utf8_lossy(f).to_string())
                .collect();
            Some((fields, end))
        }
        _ => at_eof.then(|| (Vec::new(), 0)),
    }
}

fn dialect() -> impl Strategy<Value = CsvOptions> {
    (prop::bool::ANY, prop::bool::ANY, prop::bool::ANY).prop_map(
        |(semicolon, apostrophe, escape)| CsvOptions {
            delimiter: if semicolon { b';' } else { b',' },
            quote: if apostrophe { b'\'' } else { b'"' },
            escape: escape.then_some(b'\\'),
            ..CsvOptions::default()
        },
    )
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop::sample::select(vec![
            b'a', b'b', b' ', b',', b';', b'"', b'\'', b'\\', b'\n', b'\r',
        ]),
        0..40,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn header_is_read_as_the_csv_crate_reads_it(head in bytes(), at_eof in prop::bool::ANY, opts in dialect()) {
        // A first record whose quote never closes is refused (the csv crate makes the whole
        // input one header); only at the end of the input can that be known.
        let Ok(ours) = read_header(&head, at_eof, &opts) else {
            prop_assert!(at_eof);
            return Ok(());
        };
        let theirs = by_csv_crate(&head, at_eof, &opts);
        match (&ours, &theirs) {
            (Some((names, end)), Some((fields, their_end))) => {
                prop_assert_eq!(end, their_end);
                prop_assert_eq!(names.len(), fields.len());
            }
            // A quoted field open to the end of what is read so far: more bytes may close it
            // (the csv crate takes the record as it stands).
            (None, Some((_, their_end))) if !at_eof && *their_end as usize == head.len() => {}
            _ => prop_assert_eq!(ours.is_some(), theirs.is_some()),
        }
    }
}
