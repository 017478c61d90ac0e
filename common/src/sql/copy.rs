//! One slice of a table or query read with `COPY (SELECT …) TO STDOUT (FORMAT binary)`, inside
//! a transaction on the job's snapshot, decoded into Arrow batches as it streams: memory holds
//! one batch and a few blocks of COPY data, whatever the table's size.

use super::connect::Database;
use super::decode::Decoder;
use super::types::{ColumnType, SqlColumn};
use super::{SqlSlice, quote_literal};
use crate::format::{BatchSource, Positions, Reject, SourceBatch};
use crate::storage::ReadCounter;
use crate::validate::{ErrorKind, FieldError};
use crate::{Error, Result};
use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";
/// COPY data is handed from the network task to the decoder in blocks of about this size.
const BLOCK: usize = 256 * 1024;
/// Values a batch holds at most, in COPY bytes.
const BATCH_BYTES: usize = 256 * 1024 * 1024;

pub struct CopyRows {
    source: Arc<str>,
    blocks: mpsc::Receiver<Result<Bytes>>,
    columns: Vec<SqlColumn>,
    decoders: Vec<Decoder>,
    schema: SchemaRef,
    batch_size: usize,
    /// Undecoded bytes: the tail of a row cut by a block boundary, then the next block.
    buffer: Vec<u8>,
    at: usize,
    header_seen: bool,
    ended: bool,
    /// Index (in the slice, from 0) of the next row, and of the first row in the builders.
    next_row: u64,
    batch_first: u64,
    rows_in_batch: usize,
    batch_bytes: usize,
    /// Rows that could not be decoded, waiting for the next batch to carry them.
    rejects: Vec<Reject>,
    spans: Vec<Option<(usize, usize)>>,
}

impl CopyRows {
    /// Connect, enter the snapshot, and start streaming the slice.
    pub fn open(
        runtime: &Handle,
        database: Database,
        slice: &SqlSlice,
        source: Arc<str>,
        batch_size: usize,
        counter: ReadCounter,
    ) -> Result<Self> {
        let (columns_tx, columns_rx) = oneshot::channel();
        let (blocks_tx, blocks) = mpsc::channel(4);
        let slice = slice.clone();
        runtime.spawn(stream(database, slice, columns_tx, blocks_tx, counter));
        let columns = columns_rx.blocking_recv().map_err(|_| Error::Transient {
            url: source.to_string(),
            message: "the database reader stopped before describing its columns".into(),
        })??;
        let decoders = columns.iter().map(|c| Decoder::new(&c.kind)).collect();
        let schema = Arc::new(Schema::new(
            columns
                .iter()
                .map(|c| Field::new(&c.name, c.kind.arrow(), true))
                .collect::<Vec<_>>(),
        ));
        Ok(Self {
            source,
            blocks,
            spans: Vec::with_capacity(columns.len()),
            columns,
            decoders,
            schema,
            batch_size: batch_size.max(1),
            buffer: Vec::new(),
            at: 0,
            header_seen: false,
            ended: false,
            next_row: 0,
            batch_first: 0,
            rows_in_batch: 0,
            batch_bytes: 0,
            rejects: Vec::new(),
        })
    }

    fn corrupt(&self, what: &str) -> Error {
        Error::corrupt(self.source.to_string(), format!("binary COPY data: {what}"))
    }

    /// Decode whole rows from the buffer; `Ok(true)` when the batch is full (or must be cut
    /// before a rejected row), `Ok(false)` when more bytes are needed.
    fn decode_rows(&mut self) -> Result<bool> {
        if !self.header_seen {
            let rest = &self.buffer[self.at..];
            if rest.len() < SIGNATURE.len() + 8 {
                return Ok(false);
            }
            if !rest.starts_with(SIGNATURE) {
                return Err(self.corrupt("no PGCOPY signature"));
            }
            let extension = u32::from_be_bytes(fixed4(&rest[15..19])) as usize;
            if rest.len() < 19 + extension {
                return Ok(false);
            }
            self.at += 19 + extension;
            self.header_seen = true;
        }
        // A batch ends at `batch_size` rows, at `BATCH_BYTES` of values (Utf8 offsets are
        // 32-bit: 64k rows of 40 KiB documents would overflow them), or at `batch_size`
        // rejected rows (a slice where every row fails must not pile up in memory).
        while self.rows_in_batch < self.batch_size
            && self.batch_bytes < BATCH_BYTES
            && self.rejects.len() < self.batch_size
            && !self.ended
        {
            let row_start = self.at;
            let data = &self.buffer[row_start..];
            let Some(count) = data.get(..2).map(|b| i16::from_be_bytes([b[0], b[1]])) else {
                return Ok(false);
            };
            if count == -1 {
                self.ended = true;
                self.at += 2;
                break;
            }
            if count as usize != self.columns.len() {
                return Err(self.corrupt(&format!(
                    "a row of {count} fields where {} columns were described",
                    self.columns.len()
                )));
            }
            self.spans.clear();
            let mut pos = 2;
            let mut complete = true;
            for _ in 0..count {
                let Some(len) = data
                    .get(pos..pos + 4)
                    .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                else {
                    complete = false;
                    break;
                };
                pos += 4;
                if len < 0 {
                    self.spans.push(None);
                    continue;
                }
                let end = pos + len as usize;
                if end > data.len() {
                    complete = false;
                    break;
                }
                self.spans.push(Some((row_start + pos, row_start + end)));
                pos = end;
            }
            if !complete {
                return Ok(false);
            }
            self.at = row_start + pos;
            let failed = self
                .columns
                .iter()
                .zip(&self.decoders)
                .zip(&self.spans)
                .find_map(|((column, decoder), span)| {
                    let (start, end) = (*span)?;
                    decoder
                        .check(&self.buffer[start..end])
                        .err()
                        .map(|why| (column.name.clone(), why))
                });
            let row = self.next_row;
            self.next_row += 1;
            if let Some((field, message)) = failed {
                let values = self.row_values();
                self.rejects.push(Reject {
                    position: row,
                    values,
                    raw: String::new(),
                    error: FieldError {
                        field: Some(field),
                        kind: ErrorKind::Coercion,
                        message,
                    },
                });
                // Rows of one batch are numbered consecutively: the batch ends before this row.
                if self.rows_in_batch > 0 {
                    return Ok(true);
                }
                self.batch_first = self.next_row;
                continue;
            }
            for (decoder, span) in self.decoders.iter_mut().zip(&self.spans) {
                decoder.append(span.map(|(s, e)| &self.buffer[s..e]));
            }
            self.rows_in_batch += 1;
            self.batch_bytes += pos;
        }
        Ok(true)
    }

    /// The current row's values as text, for its error row (the failing value shown raw).
    fn row_values(&self) -> Vec<(String, String)> {
        self.columns
            .iter()
            .zip(&self.spans)
            .filter_map(|(column, span)| {
                let (start, end) = (*span)?;
                let bytes = &self.buffer[start..end];
                let mut one = Decoder::new(&column.kind);
                let text = if one.check(bytes).is_ok() {
                    one.append(Some(bytes));
                    let array = one.finish();
                    arrow::util::display::array_value_to_string(&array, 0).ok()?
                } else if let ColumnType::Numeric { .. } = column.kind {
                    numeric_text(bytes)
                } else {
                    format!(
                        "0x{}",
                        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
                    )
                };
                Some((column.name.clone(), text))
            })
            .collect()
    }

    fn take_batch(&mut self) -> Result<Option<SourceBatch>> {
        if self.rows_in_batch == 0 && self.rejects.is_empty() {
            return Ok(None);
        }
        let arrays = self.decoders.iter_mut().map(Decoder::finish).collect();
        let batch = RecordBatch::try_new(self.schema.clone(), arrays)
            .map_err(|e| self.corrupt(&e.to_string()))?;
        let first = self.batch_first;
        // The next batch starts after every row decoded so far, rejected ones included.
        self.batch_first = self.next_row;
        self.rows_in_batch = 0;
        self.batch_bytes = 0;
        let rejected: Vec<Reject> = self
            .rejects
            .drain(..)
            .filter(|r| r.position < self.batch_first)
            .collect();
        Ok(Some(SourceBatch {
            source: self.source.clone(),
            batch,
            positions: Positions::Rows { first },
            rejects: rejected,
            extra_keys: Vec::new(),
            non_strings: Vec::new(),
        }))
    }
}

impl BatchSource for CopyRows {
    fn next_batch(&mut self) -> Result<Option<SourceBatch>> {
        loop {
            if self.ended {
                return self.take_batch();
            }
            if self.decode_rows()? {
                if self.ended {
                    continue;
                }
                return self.take_batch();
            }
            // Keep the unread tail, then wait for the next block.
            self.buffer.drain(..self.at);
            self.at = 0;
            match self.blocks.blocking_recv() {
                Some(Ok(block)) => self.buffer.extend_from_slice(&block),
                Some(Err(e)) => return Err(e),
                None if self.buffer.is_empty() && !self.header_seen => {
                    return Err(self.corrupt("the stream ended before its header"));
                }
                None => return Err(self.corrupt("the stream ended inside a row")),
            }
        }
    }
}

/// A numeric value's decimal text (for error rows: the value that did not fit, exactly).
fn numeric_text(v: &[u8]) -> String {
    let word = |i: usize| {
        v.get(i * 2..i * 2 + 2)
            .map_or(0, |b| i16::from_be_bytes([b[0], b[1]]))
    };
    let (ndigits, weight, sign, dscale) = (word(0).max(0), word(1), word(2) as u16, word(3));
    match sign {
        0xC000 => return "NaN".into(),
        0xD000 => return "Infinity".into(),
        0xF000 => return "-Infinity".into(),
        _ => {}
    }
    let digits: String = (0..ndigits)
        .map(|i| format!("{:04}", word(4 + i as usize)))
        .collect();
    // The first group's place is `weight` groups of four digits left of the point.
    let point = 4 * (i32::from(weight) + 1);
    let (int_part, frac_part) = if point <= 0 {
        (
            String::from("0"),
            format!("{}{digits}", "0".repeat((-point) as usize)),
        )
    } else if point as usize >= digits.len() {
        (
            format!("{digits}{}", "0".repeat(point as usize - digits.len())),
            String::new(),
        )
    } else {
        (
            digits[..point as usize].to_string(),
            digits[point as usize..].to_string(),
        )
    };
    let int_part = int_part.trim_start_matches('0');
    let mut frac = frac_part;
    frac.truncate(dscale.max(0) as usize);
    while frac.len() < dscale.max(0) as usize {
        frac.push('0');
    }
    let sign = if sign == 0x4000 { "-" } else { "" };
    let int_part = if int_part.is_empty() { "0" } else { int_part };
    if frac.is_empty() {
        format!("{sign}{int_part}")
    } else {
        format!("{sign}{int_part}.{frac}")
    }
}

fn fixed4(b: &[u8]) -> [u8; 4] {
    [b[0], b[1], b[2], b[3]]
}

/// The network side: transaction, snapshot, column description, then COPY blocks.
async fn stream(
    database: Database,
    slice: SqlSlice,
    columns_tx: oneshot::Sender<Result<Vec<SqlColumn>>>,
    blocks: mpsc::Sender<Result<Bytes>>,
    counter: ReadCounter,
) {
    let client = match begin(&database, &slice).await {
        Ok(client) => client,
        Err(e) => {
            let _ = columns_tx.send(Err(e));
            return;
        }
    };
    let described = describe(&database, &client, &slice).await;
    let failed = described.is_err();
    if columns_tx.send(described).is_err() || failed {
        return;
    }
    let failure =
        |e: tokio_postgres::Error| Err(database.error(&format!("reading {}", slice.relation), &e));
    let copy = format!("COPY ({}) TO STDOUT (FORMAT binary)", slice.select);
    let mut rows = match client.copy_out(copy.as_str()).await {
        Ok(rows) => Box::pin(rows),
        Err(e) => {
            let _ = blocks.send(failure(e)).await;
            return;
        }
    };
    let mut block = BytesMut::with_capacity(BLOCK);
    while let Some(chunk) = rows.next().await {
        match chunk {
            Ok(chunk) => {
                counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                block.extend_from_slice(&chunk);
                if block.len() >= BLOCK && blocks.send(Ok(block.split().freeze())).await.is_err() {
                    return; // the reader is gone (task cancelled or failed)
                }
            }
            Err(e) => {
                let _ = blocks.send(failure(e)).await;
                return;
            }
        }
    }
    if !block.is_empty() {
        let _ = blocks.send(Ok(block.freeze())).await;
    }
    let _ = client.batch_execute("COMMIT").await;
}

async fn begin(database: &Database, slice: &SqlSlice) -> Result<tokio_postgres::Client> {
    let client = database.connect().await?;
    let mut setup = String::from("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;");
    if let Some(id) = &slice.snapshot {
        setup.push_str(&format!("SET TRANSACTION SNAPSHOT {};", quote_literal(id)));
    }
    client.batch_execute(&setup).await.map_err(|e| {
        // SET TRANSACTION SNAPSHOT refuses an id whose exporting transaction ended with
        // invalid_parameter_value ("invalid snapshot identifier"), whatever the language.
        let gone = slice.snapshot.is_some()
            && e.as_db_error().is_some_and(|db| {
                *db.code() == tokio_postgres::error::SqlState::INVALID_PARAMETER_VALUE
                    || *db.code()
                        == tokio_postgres::error::SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE
            });
        if gone {
            // The planner's transaction ended (failover, database restart): the job takes a
            // new snapshot and runs its SQL tasks again; this attempt is not to blame.
            Error::Transient {
                url: database.shown().to_string(),
                message: "the job's snapshot is no longer available; the job takes a new one"
                    .into(),
            }
        } else {
            database.error("starting the snapshot's transaction", &e)
        }
    })?;
    Ok(client)
}

async fn describe(
    database: &Database,
    client: &tokio_postgres::Client,
    slice: &SqlSlice,
) -> Result<Vec<SqlColumn>> {
    let statement = client
        .prepare(&slice.select)
        .await
        .map_err(|e| database.error(&format!("reading {}", slice.relation), &e))?;
    super::types::describe(
        &statement,
        &format!("{} {}", database.shown(), slice.relation),
    )
}
