//! Arrow Flight over a committed job's error rows, so `zoopipectl errors JOB` shows invalid rows
//! without downloading files. Every coordinator replica serves it on the gRPC port: the job is
//! read from etcd (not from the leader's in-memory table), so followers answer without
//! forwarding. The rows come from the error parts the final report lists (task order), read with
//! the project's readers on a blocking thread and handed to the encoder a few batches at a time:
//! memory stays bounded whatever the job's error count.
//!
//! Ticket (and `get_flight_info` command): the JSON `{"job_id": "...", "limit": N}`, where a
//! missing or zero `limit` means every row.

use crate::state::{EtcdState, StoredJob};
use crate::status::IntoStatus;
use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightEndpoint, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaAsIpc, SchemaResult, Ticket,
};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use std::io::{BufRead, BufReader};
use std::sync::Arc;
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use zoopipe_common::errors_out::{ErrorRow, error_schema, to_batch};
use zoopipe_common::format::Format;
use zoopipe_common::format::ipc::{IpcRows, read_footer};
use zoopipe_common::format::parquet::{ObjectFile, ParquetRows, row_groups};
use zoopipe_common::report::JobState;
use zoopipe_common::spec::{JobConfig, JobSpec};
use zoopipe_common::storage::{ObjectReader, ObjectUrl, ReadCounter, Storage};
use zoopipe_common::{Error, Result};
use zoopipe_proto::flight::ErrorsTicket;

/// Rows per batch read from text parts (JSONL, CSV) and Parquet.
const BATCH_ROWS: usize = 1024;
/// Batches read ahead of the client: the bound on what one stream holds in memory.
const READ_AHEAD: usize = 2;

/// The schema rows are sent in: the error outputs' columns, all nullable, so parts written in
/// any format share it (a CSV part reads an empty text cell back as null).
pub fn flight_schema() -> SchemaRef {
    let fields: Vec<_> = error_schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    Arc::new(Schema::new(fields))
}

/// A committed job's error parts and how to read them.
struct Committed {
    parts: Vec<String>,
    format: Format,
    csv_header: bool,
    rows: u64,
}

pub struct ErrorsFlight {
    state: EtcdState,
    storage: Storage,
}

impl ErrorsFlight {
    pub fn new(state: EtcdState) -> Self {
        Self {
            state,
            storage: Storage::new(),
        }
    }

    /// The job's committed error parts, or why there are none to read.
    async fn committed(&self, job_id: &str) -> Result<Committed, Status> {
        let job = self
            .state
            .load_job(job_id)
            .await
            .map_err(IntoStatus::into_status)?
            .ok_or_else(|| Status::not_found(format!("no job {job_id}")))?;
        let StoredJob {
            spec,
            state,
            report,
            ..
        } = job;
        let name = |s: JobState| format!("{s:?}").to_lowercase();
        // Before the commit, error parts are unfinished uploads (invisible, some still numbered
        // relative to their range): there is nothing consistent to stream yet.
        let report = match report {
            Some(r) if r.state == JobState::Succeeded => r,
            Some(r) => {
                return Err(Status::failed_precondition(format!(
                    "job {job_id} {} and has no committed error rows to read{}",
                    name(r.state),
                    r.message.map(|m| format!(" ({m})")).unwrap_or_default()
                )));
            }
            None => {
                return Err(Status::failed_precondition(format!(
                    "job {job_id} is {} and has not committed yet: its error rows can be read once it has succeeded",
                    name(state)
                )));
            }
        };
        let spec: JobSpec = serde_json::from_value(spec)
            .map_err(|e| Status::internal(format!("job {job_id}: unreadable spec: {e}")))?;
        let config = JobConfig::new(job_id.to_string(), spec)
            .map_err(|e| Status::internal(format!("job {job_id}: {e}")))?;
        Ok(Committed {
            parts: report.error_outputs,
            format: config.errors.format,
            csv_header: config.spec.write.csv_header,
            rows: report.total_errors,
        })
    }
}

/// A storage or decoding failure, as the client should see it.
fn status(e: Error) -> Status {
    e.into_status()
}

/// Where read batches go: cut at the limit, stopped when the client has gone.
struct Sink {
    tx: mpsc::Sender<Result<RecordBatch, FlightError>>,
    schema: SchemaRef,
    /// Rows still wanted; None: all.
    left: Option<u64>,
}

impl Sink {
    /// Send one batch; `Ok(false)` means stop reading (limit reached or client gone).
    fn send(&mut self, url: &str, batch: RecordBatch) -> Result<bool> {
        let mut batch = RecordBatch::try_new(self.schema.clone(), batch.columns().to_vec())
            .map_err(|e| Error::corrupt(url, format!("not an error part: {e}")))?;
        if let Some(left) = &mut self.left {
            let take = batch
                .num_rows()
                .min(usize::try_from(*left).unwrap_or(usize::MAX));
            batch = batch.slice(0, take);
            *left -= take as u64;
        }
        if batch.num_rows() > 0 && self.tx.blocking_send(Ok(batch)).is_err() {
            return Ok(false);
        }
        Ok(self.left != Some(0))
    }
}

/// Read every part in order into the sink (on a blocking thread: the readers block).
fn read_parts(storage: &Storage, runtime: &Handle, job: &Committed, sink: &mut Sink) -> Result<()> {
    for url in &job.parts {
        if !read_part(storage, runtime, job, url, sink)? {
            break;
        }
    }
    Ok(())
}

/// One part; `Ok(false)` when the sink wants no more.
fn read_part(
    storage: &Storage,
    runtime: &Handle,
    job: &Committed,
    url: &str,
    sink: &mut Sink,
) -> Result<bool> {
    let parsed = ObjectUrl::parse(url)?;
    let store = storage.store(&parsed)?;
    let meta = runtime
        .block_on(object_store::ObjectStoreExt::head(
            store.as_ref(),
            &parsed.path(),
        ))
        .map_err(|e| Error::from_store(url, e))?;
    // Served as it was when the stream began: a part replaced meanwhile fails the stream.
    let (size, pin) = (meta.size, zoopipe_common::storage::Pin::of(&meta));
    let counter = ReadCounter::default();
    let bytes = || {
        let reader = ObjectReader::spawn(
            runtime,
            store.clone(),
            parsed.path(),
            url.to_string(),
            0,
            size,
            size,
            counter.clone(),
            pin.clone(),
        );
        BufReader::new(reader)
    };
    match job.format {
        Format::Jsonl => {
            let mut chunk = Vec::with_capacity(BATCH_ROWS);
            for line in bytes().lines() {
                let line = line.map_err(|e| Error::io(format!("reading {url}"), e))?;
                if line.trim().is_empty() {
                    continue;
                }
                chunk.push(
                    serde_json::from_str::<ErrorRow>(&line).map_err(|e| Error::corrupt(url, e))?,
                );
                if chunk.len() == BATCH_ROWS {
                    if !sink.send(url, to_batch(&chunk)?)? {
                        return Ok(false);
                    }
                    chunk.clear();
                }
            }
            if chunk.is_empty() {
                return Ok(true);
            }
            sink.send(url, to_batch(&chunk)?)
        }
        Format::Csv => {
            let reader = arrow::csv::ReaderBuilder::new(sink.schema.clone())
                .with_header(job.csv_header)
                .with_batch_size(BATCH_ROWS)
                .build_buffered(bytes())
                .map_err(|e| Error::corrupt(url, e))?;
            for batch in reader {
                if !sink.send(url, batch.map_err(|e| Error::corrupt(url, e))?)? {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        Format::Parquet => {
            let mut file = ObjectFile::new(store.clone(), &parsed, size, counter.clone());
            let groups = runtime.block_on(row_groups(&mut file))?.len();
            let file = ObjectFile::new(store, &parsed, size, counter).pinned(pin);
            let mut rows = ParquetRows::open(runtime, file, 0..groups, BATCH_ROWS)?;
            while let Some(batch) = rows.next_batch()? {
                if !sink.send(url, batch.batch)? {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        Format::Arrow => {
            let footer =
                runtime.block_on(read_footer(store.as_ref(), &parsed, size, &counter, &pin))?;
            let batches = 0..footer.batches.len();
            let mut rows = IpcRows::open(runtime, store, &parsed, size, batches, 0, counter, &pin)?;
            while let Some(batch) = rows.next_batch()? {
                if !sink.send(url, batch.batch)? {
                    return Ok(false);
                }
            }
            Ok(true)
        }
    }
}

fn unimplemented<T>(what: &str) -> Result<T, Status> {
    Err(Status::unimplemented(format!(
        "{what}: this Flight service only serves a job's error rows (DoGet)"
    )))
}

#[tonic::async_trait]
impl FlightService for ErrorsFlight {
    type HandshakeStream = BoxStream<'static, Result<HandshakeResponse, Status>>;
    type ListFlightsStream = BoxStream<'static, Result<FlightInfo, Status>>;
    type DoGetStream = BoxStream<'static, Result<FlightData, Status>>;
    type DoPutStream = BoxStream<'static, Result<PutResult, Status>>;
    type DoExchangeStream = BoxStream<'static, Result<FlightData, Status>>;
    type DoActionStream = BoxStream<'static, Result<arrow_flight::Result, Status>>;
    type ListActionsStream = BoxStream<'static, Result<ActionType, Status>>;

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        let ticket = ErrorsTicket::parse(&request.into_inner().ticket)?;
        let job = self.committed(&ticket.job_id).await?;
        let (tx, rx) = mpsc::channel(READ_AHEAD);
        let schema = flight_schema();
        let mut sink = Sink {
            tx,
            schema: schema.clone(),
            left: (ticket.limit > 0).then_some(ticket.limit),
        };
        let (storage, runtime) = (self.storage.clone(), Handle::current());
        tokio::task::spawn_blocking(move || {
            if let Err(e) = read_parts(&storage, &runtime, &job, &mut sink) {
                tracing::warn!(job = ticket.job_id, error = %e, "reading error rows failed");
                let _ = sink
                    .tx
                    .blocking_send(Err(FlightError::Tonic(Box::new(status(e)))));
            }
        });
        let stream = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(ReceiverStream::new(rx))
            .map_err(Status::from);
        Ok(Response::new(stream.boxed()))
    }

    async fn get_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let descriptor = request.into_inner();
        let ticket = ErrorsTicket::parse(&descriptor.cmd)?;
        let job = self.committed(&ticket.job_id).await?;
        let rows = match ticket.limit {
            0 => job.rows,
            limit => job.rows.min(limit),
        };
        let info = FlightInfo::new()
            .try_with_schema(&flight_schema())
            .map_err(|e| Status::internal(e.to_string()))?
            .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(ticket.to_bytes())))
            .with_descriptor(descriptor)
            .with_total_records(i64::try_from(rows).unwrap_or(i64::MAX))
            .with_ordered(true);
        Ok(Response::new(info))
    }

    async fn get_schema(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        let schema = flight_schema();
        let result = SchemaAsIpc::new(&schema, &IpcWriteOptions::default())
            .try_into()
            .map_err(|e: arrow::error::ArrowError| Status::internal(e.to_string()))?;
        Ok(Response::new(result))
    }

    async fn handshake(
        &self,
        _request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        unimplemented("Handshake")
    }

    async fn list_flights(
        &self,
        _request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        unimplemented("ListFlights")
    }

    async fn poll_flight_info(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        unimplemented("PollFlightInfo")
    }

    async fn do_put(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        unimplemented("DoPut")
    }

    async fn do_exchange(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        unimplemented("DoExchange")
    }

    async fn do_action(
        &self,
        _request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        unimplemented("DoAction")
    }

    async fn list_actions(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        unimplemented("ListActions")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_are_json_with_an_optional_limit_and_a_plain_job_id() {
        let t = ErrorsTicket::parse(br#"{"job_id": "20260101-000000-abcdef12"}"#).unwrap();
        assert_eq!(t.limit, 0);
        let back = ErrorsTicket::parse(&t.to_bytes()).unwrap();
        assert_eq!(back, t);
        for bad in [
            &br#"{"job_id": "a/../b"}"#[..],
            br#"{"job_id": ""}"#,
            b"20260101-000000-abcdef12",
        ] {
            let e = ErrorsTicket::parse(bad).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
        }
    }

    #[test]
    fn the_limit_cuts_the_last_batch_and_stops_reading() {
        let (tx, mut rx) = mpsc::channel(8);
        let mut sink = Sink {
            tx,
            schema: flight_schema(),
            left: Some(3),
        };
        let rows: Vec<ErrorRow> = (0..2)
            .map(|i| ErrorRow::new("file:///x.csv", Some(i + 2), None, Vec::new()))
            .collect();
        assert!(sink.send("x", to_batch(&rows).unwrap()).unwrap());
        assert!(!sink.send("x", to_batch(&rows).unwrap()).unwrap());
        drop(sink);
        let mut total = 0;
        while let Some(Ok(batch)) = rx.blocking_recv() {
            total += batch.num_rows();
        }
        assert_eq!(total, 3);
    }
}
