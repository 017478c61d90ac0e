//! Builds all-Utf8 record batches straight from parsed bytes (no per-field String allocation):
//! the CSV and JSON readers push field bytes here and the validator coerces whole columns later.

use arrow::array::NullBufferBuilder;
use arrow::array::{ArrayRef, StringArray};
use arrow::buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use std::sync::Arc;

/// Text above this many bytes in one batch is flushed early (keeps i32 offsets safe and memory bounded).
pub(crate) const MAX_BATCH_TEXT: usize = 256 * 1024 * 1024;

/// Rows the columns have room for at first: they grow as rows come. Sized for a whole batch
/// up front, each small object of a task cost megabytes of fresh (zeroed) pages.
pub(crate) const FIRST_ROWS: usize = 1024;

pub(crate) struct TextColumns {
    schema: SchemaRef,
    columns: Vec<TextColumn>,
    rows: usize,
    text_bytes: usize,
}

struct TextColumn {
    values: Vec<u8>,
    offsets: Vec<i32>,
    validity: NullBufferBuilder,
}

impl TextColumns {
    pub fn new(names: &[String], batch_size: usize) -> Self {
        let capacity = batch_size.min(FIRST_ROWS);
        let fields: Vec<Field> = names
            .iter()
            .map(|n| Field::new(n, DataType::Utf8, true))
            .collect();
        let schema = Arc::new(Schema::new(fields));
        let columns = names.iter().map(|_| TextColumn::new(capacity)).collect();
        Self {
            schema,
            columns,
            rows: 0,
            text_bytes: 0,
        }
    }

    pub fn width(&self) -> usize {
        self.columns.len()
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn is_full(&self, batch_size: usize) -> bool {
        self.rows >= batch_size || self.text_bytes >= MAX_BATCH_TEXT
    }

    /// Append one field; `value` must be valid UTF-8. Empty text is null (CSV semantics).
    pub fn push(&mut self, column: usize, value: &[u8]) {
        let col = &mut self.columns[column];
        if value.is_empty() {
            col.validity.append_null();
        } else {
            col.values.extend_from_slice(value);
            col.validity.append_non_null();
            self.text_bytes += value.len();
        }
        col.offsets.push(col.values.len() as i32);
    }

    /// Append a present-but-empty string (JSON `""`), which is not null.
    pub fn push_empty(&mut self, column: usize) {
        let col = &mut self.columns[column];
        col.validity.append_non_null();
        col.offsets.push(col.values.len() as i32);
    }

    pub fn push_null(&mut self, column: usize) {
        let col = &mut self.columns[column];
        col.validity.append_null();
        col.offsets.push(col.values.len() as i32);
    }

    pub fn end_row(&mut self) {
        self.rows += 1;
    }

    /// Take the rows so far as a batch and start over.
    pub fn finish(&mut self) -> RecordBatch {
        let arrays: Vec<ArrayRef> = self
            .columns
            .iter_mut()
            .map(|c| Arc::new(c.finish()) as ArrayRef)
            .collect();
        let options = RecordBatchOptions::new().with_row_count(Some(self.rows));
        self.rows = 0;
        self.text_bytes = 0;
        RecordBatch::try_new_with_options(self.schema.clone(), arrays, &options)
            .expect("columns are built to the schema with equal lengths")
    }
}

impl TextColumn {
    fn new(capacity: usize) -> Self {
        let mut offsets = Vec::with_capacity(capacity + 1);
        offsets.push(0);
        Self {
            values: Vec::with_capacity(capacity * 8),
            offsets,
            validity: NullBufferBuilder::new(capacity),
        }
    }

    fn finish(&mut self) -> StringArray {
        let values = Buffer::from_vec(std::mem::take(&mut self.values));
        let offsets = std::mem::replace(&mut self.offsets, vec![0]);
        let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets));
        let nulls = self.validity.finish();
        // SAFETY: every pushed value was checked to be UTF-8 by the reader, and offsets are
        // monotonically increasing by construction.
        unsafe { StringArray::new_unchecked(offsets, values, nulls) }
    }
}
