//! The fleet's state in etcd. The coordinator is the only client; workers never touch etcd.
//!
//! ```text
//! <prefix>/leader                     the elected coordinator, under its lease; the key's
//!                                      create_revision is the leader's epoch
//! <prefix>/workers/<worker>            under the worker's lease (kept alive by its heartbeats)
//! <prefix>/jobs/<job>/spec             the job spec (JSON, schema inline)
//! <prefix>/jobs/<job>/state            JobState
//! <prefix>/jobs/<job>/tasks/<t>        the planned task (JSON)
//! <prefix>/jobs/<job>/planned          {next_task, open}: a job planned while it runs has
//!                                      every task below next_task (later ones are ignored)
//! <prefix>/jobs/<job>/owners/<t>       {worker, attempt} under the owner's lease; its
//!                                      mod_revision is the attempt's fencing token
//! <prefix>/jobs/<job>/results/<t>      the committed TaskResult (JSON)
//! <prefix>/jobs/<job>/report           the final JobReport, once the job ended
//! <prefix>/names/<name>/<k=v&..>       the job id of a named job's latest run for those vars
//! ```
//! Writes per task are bounded: one claim, one result (plus a release on failure). A claim only
//! succeeds on a task that has neither an owner nor a result; a result is only accepted through
//! a transaction that finds the owner key at the attempt's fencing token, so an attempt whose
//! lease expired (dead, frozen or cut-off worker) can never commit over its retry.
//! Every write also compares the leader key's create_revision with this coordinator's epoch,
//! so a deposed leader (frozen, partitioned, replaced) cannot write anything.

use etcd_client::{
    Client, Compare, CompareOp, EventType, GetOptions, PutOptions, Txn, TxnOp, WatchOptions,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, mpsc};
use zoopipe_common::plan::Task;
use zoopipe_common::report::{JobReport, JobState, TaskResult};
use zoopipe_engine::lifecycle::{JobStore, NameClaim, Planned, StoreError, StoreResult};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("etcd at {endpoints} is unreachable: {message}")]
    Unreachable { endpoints: String, message: String },
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error("corrupt state at {key}: {message}")]
    Corrupt { key: String, message: String },
    #[error("job {0} already exists")]
    JobExists(String),
    #[error("this coordinator is not the leader")]
    NotLeader,
}

pub type Result<T> = std::result::Result<T, StateError>;

/// A write that etcd did not take, once, at the named point (`ZOOPIPE_FAULT_FAIL_ONCE_AT`):
/// an etcd blip, for tests of the callers' retries.
fn blip(point: &str) -> Result<()> {
    if zoopipe_common::fault::fail_once(point) {
        return Err(StateError::Unreachable {
            endpoints: "etcd".into(),
            message: format!("fault injected at {point}"),
        });
    }
    Ok(())
}

/// Who runs an attempt of a task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub worker: String,
    pub attempt: u32,
    /// The owner key's mod_revision: the attempt's fencing token.
    #[serde(skip)]
    pub token: u64,
}

/// One job as stored.
#[derive(Clone, Debug)]
pub struct StoredJob {
    pub job_id: String,
    pub spec: serde_json::Value,
    pub state: JobState,
    pub tasks: BTreeMap<u32, Task>,
    pub owners: BTreeMap<u32, Owner>,
    pub results: BTreeMap<u32, TaskResult>,
    /// How many attempts each task has had, as of its latest claim.
    pub attempts: BTreeMap<u32, Attempts>,
    /// The final report, once the job ended.
    pub report: Option<JobReport>,
    /// How far planning stored its tasks (jobs planned while they ran); `tasks` holds only
    /// those below it.
    pub planned: Option<Planned>,
}

/// A task's attempt count, kept apart from its owner key (which goes with the owner's lease) so
/// a new leader goes on counting: numbers are never reused and the retry budget does not reset
/// on failover. `handed_back`: attempts a draining worker gave back, which use no budget (a
/// hand-back since the latest claim is recorded by the next one).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempts {
    pub attempt: u32,
    pub handed_back: u32,
}

#[derive(Clone)]
pub struct EtcdState {
    client: Client,
    prefix: String,
    /// The create_revision of the leader key while this coordinator leads; 0 otherwise.
    epoch: Arc<AtomicI64>,
    /// Woken when a write finds that another coordinator leads now.
    deposed: Arc<Notify>,
    /// Claims and completions from concurrent calls, committed together (see `Batch`).
    batch: mpsc::Sender<Batched>,
}

/// One claim or completion waiting to be committed with others: its comparisons and writes,
/// and where to send (whether its comparisons held, the transaction's revision).
struct Batched {
    compares: Vec<Compare>,
    ops: Vec<TxnOp>,
    reply: tokio::sync::oneshot::Sender<Result<(bool, i64)>>,
}

/// Claims or completions committed in one transaction (each adds up to 2 comparisons and
/// 2 operations; etcd's default limit is 128 of each).
const BATCH_MAX: usize = 50;
/// Batches in flight at once.
const BATCHES_IN_FLIGHT: usize = 8;
/// Task keys written per transaction (etcd's default limit is 128 operations).
const TASKS_PER_TXN: usize = 100;
/// Keys read per page when scanning.
const SCAN_PAGE: i64 = 2000;

/// The first key after every key that starts with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

fn parse<T: for<'de> Deserialize<'de>>(key: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| StateError::Corrupt {
        key: key.to_string(),
        message: e.to_string(),
    })
}

impl EtcdState {
    /// Connect and prove etcd answers (etcd-client's connect alone succeeds on a dead port).
    pub async fn connect(endpoints: &[String], prefix: &str) -> Result<Self> {
        Self::connect_with_tls(endpoints, prefix, None).await
    }

    /// As `connect`, over TLS when `tls` is given (https:// endpoints).
    pub async fn connect_with_tls(
        endpoints: &[String],
        prefix: &str,
        tls: Option<etcd_client::TlsOptions>,
    ) -> Result<Self> {
        let unreachable = |message: String| StateError::Unreachable {
            endpoints: endpoints.join(","),
            message,
        };
        let mut options = etcd_client::ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(3))
            .with_timeout(Duration::from_secs(5));
        if let Some(tls) = tls {
            options = options.with_tls(tls);
        }
        let mut client = Client::connect(endpoints, Some(options))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        tokio::time::timeout(Duration::from_secs(5), client.get("health-probe", None))
            .await
            .map_err(|_| unreachable("no answer within 5 s".into()))?
            .map_err(|e| unreachable(e.to_string()))?;
        let (batch, queue) = mpsc::channel(4096);
        let state = Self {
            client,
            prefix: prefix.trim_end_matches('/').to_string(),
            epoch: Arc::default(),
            deposed: Arc::default(),
            batch,
        };
        let queue = Arc::new(tokio::sync::Mutex::new(queue));
        for _ in 0..BATCHES_IN_FLIGHT {
            tokio::spawn(state.clone().commit_batches(queue.clone()));
        }
        Ok(state)
    }

    /// Group commit: every claim and completion waiting when a transaction is sent goes into
    /// it (up to `BATCH_MAX`), so etcd sees one transaction (one fsync) per batch instead of
    /// one per task. If any comparison fails, the batch is retried item by item, so each still
    /// gets its own answer.
    async fn commit_batches(self, queue: Arc<tokio::sync::Mutex<mpsc::Receiver<Batched>>>) {
        loop {
            let mut items = Vec::new();
            {
                let mut queue = queue.lock().await;
                match queue.recv().await {
                    Some(first) => items.push(first),
                    None => return,
                }
                while items.len() < BATCH_MAX {
                    match queue.try_recv() {
                        Ok(item) => items.push(item),
                        Err(_) => break,
                    }
                }
            }
            if items.len() > 1 {
                let compares = items.iter().flat_map(|i| i.compares.clone()).collect();
                let ops = items.iter().flat_map(|i| i.ops.clone()).collect();
                match self.fenced(compares, ops).await {
                    Ok(response) if response.succeeded() => {
                        let revision = response.header().map(|h| h.revision()).unwrap_or(0);
                        for item in items {
                            let _ = item.reply.send(Ok((true, revision)));
                        }
                        continue;
                    }
                    Ok(_) => {} // some comparison failed: one by one below
                    Err(StateError::NotLeader) => {
                        for item in items {
                            let _ = item.reply.send(Err(StateError::NotLeader));
                        }
                        continue;
                    }
                    Err(_) => {} // etcd trouble: each item gets its own error below
                }
            }
            for item in items {
                let outcome = self.fenced(item.compares, item.ops).await.map(|r| {
                    let revision = r.header().map(|h| h.revision()).unwrap_or(0);
                    (r.succeeded(), revision)
                });
                let _ = item.reply.send(outcome);
            }
        }
    }

    /// A fenced transaction committed together with concurrent ones.
    async fn batched(&self, compares: Vec<Compare>, ops: Vec<TxnOp>) -> Result<(bool, i64)> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let item = Batched {
            compares,
            ops,
            reply,
        };
        if self.batch.send(item).await.is_err() {
            return Err(StateError::NotLeader);
        }
        answer.await.unwrap_or(Err(StateError::NotLeader))
    }

    pub(crate) fn client(&self) -> Client {
        self.client.clone()
    }

    pub fn leader_key(&self) -> String {
        format!("{}/leader", self.prefix)
    }

    /// Lead from now on with this epoch (0: stop leading).
    pub fn set_epoch(&self, epoch: i64) {
        self.epoch.store(epoch, Ordering::SeqCst);
    }

    pub fn epoch(&self) -> i64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Resolves when a write found another leader in place.
    pub(crate) async fn deposed(&self) {
        self.deposed.notified().await
    }

    /// A transaction that also requires this coordinator to still be the leader. `Ok` carries
    /// whether the caller's own comparisons held; a lost leadership is `Err(NotLeader)`.
    async fn fenced(
        &self,
        compares: Vec<Compare>,
        ops: Vec<TxnOp>,
    ) -> Result<etcd_client::TxnResponse> {
        let epoch = self.epoch();
        if epoch <= 0 {
            return Err(StateError::NotLeader);
        }
        let leader_key = self.leader_key();
        let mut all = vec![Compare::create_revision(
            leader_key.clone(),
            CompareOp::Equal,
            epoch,
        )];
        all.extend(compares);
        let txn = Txn::new()
            .when(all)
            .and_then(ops)
            .or_else([TxnOp::get(leader_key, None)]);
        let response = self.client.clone().txn(txn).await?;
        if !response.succeeded() {
            let still_leading = response.op_responses().iter().any(|r| match r {
                etcd_client::TxnOpResponse::Get(get) => get
                    .kvs()
                    .first()
                    .is_some_and(|kv| kv.create_revision() == epoch),
                _ => false,
            });
            if !still_leading {
                tracing::warn!(epoch, "another coordinator leads now: stepping down");
                self.set_epoch(0);
                self.deposed.notify_waiters();
                return Err(StateError::NotLeader);
            }
        }
        Ok(response)
    }

    fn job_key(&self, job: &str, rest: &str) -> String {
        format!("{}/jobs/{job}/{rest}", self.prefix)
    }

    /// The key a named job's runs are found under: its name and variables.
    pub fn name_key(&self, name: &str, vars: &BTreeMap<String, String>) -> String {
        let enc = |s: &str| {
            percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
        };
        let vars: Vec<String> = vars
            .iter()
            .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
            .collect();
        format!("{}/names/{}/{}", self.prefix, enc(name), vars.join("&"))
    }

    /// The job id a name key points at.
    pub async fn job_for_name(&self, name_key: &str) -> Result<Option<String>> {
        let response = self.client.clone().get(name_key, None).await?;
        Ok(response
            .kvs()
            .first()
            .map(|kv| String::from_utf8_lossy(kv.value()).into_owned()))
    }

    /// Store a new job: its spec, state and every task, in one transaction. A named job also
    /// points its name key at it, if the key still points where the caller saw it (`None`:
    /// nowhere), so two submissions of one daily job cannot both start.
    pub async fn create_job(
        &self,
        job_id: &str,
        spec: &serde_json::Value,
        tasks: &[Task],
        name: Option<(&str, Option<&str>)>,
        planned: Option<Planned>,
    ) -> Result<()> {
        let spec_key = self.job_key(job_id, "spec");
        let mut compares = vec![Compare::version(spec_key.clone(), CompareOp::Equal, 0)];
        let mut ops = vec![];
        if let Some((key, seen)) = name {
            compares.push(match seen {
                None => Compare::version(key, CompareOp::Equal, 0),
                Some(previous) => Compare::value(key, CompareOp::Equal, previous),
            });
            ops.push(TxnOp::put(key, job_id, None));
        }
        ops.extend([
            TxnOp::put(spec_key.clone(), json(spec), None),
            TxnOp::put(
                self.job_key(job_id, "state"),
                json(&JobState::Running),
                None,
            ),
        ]);
        if let Some(planned) = planned {
            ops.push(TxnOp::put(
                self.job_key(job_id, "planned"),
                json(&planned),
                None,
            ));
        }
        // etcd caps a transaction at 128 operations (--max-txn-ops): tasks go first, in
        // chunks, and the spec last — a job exists (and is loaded) only once its spec does.
        for chunk in tasks.chunks(TASKS_PER_TXN) {
            let puts = self.task_puts(job_id, chunk);
            let absent = vec![Compare::version(spec_key.clone(), CompareOp::Equal, 0)];
            // Plain puts of a job nobody sees yet: repeatable when an answer is lost.
            let mut tries = 0;
            let written = loop {
                match self.fenced(absent.clone(), puts.clone()).await {
                    Err(StateError::Unreachable { .. } | StateError::Etcd(_)) if tries < 3 => {
                        tries += 1
                    }
                    other => break other?,
                }
            };
            if !written.succeeded() {
                return Err(StateError::JobExists(job_id.to_string()));
            }
        }
        let mut tries = 0;
        let response = loop {
            let mut outcome = self.fenced(compares.clone(), ops.clone()).await;
            if outcome.as_ref().is_ok_and(|r| r.succeeded())
                && zoopipe_common::fault::fail_once("create-answer")
            {
                // The job was stored; its answer is lost (a timeout after etcd committed).
                outcome = Err(StateError::Unreachable {
                    endpoints: "etcd".into(),
                    message: "fault injected: the job's creation answer is lost".into(),
                });
            }
            match outcome {
                Err(e @ (StateError::Unreachable { .. } | StateError::Etcd(_))) => {
                    // No answer does not mean not stored: the spec exists only if this very
                    // transaction applied (the job id is fresh, the name key went with it).
                    // Failing here would leave a job that a later leader runs unasked, and a
                    // retry would start a second one for the same output.
                    match self.client.clone().get(spec_key.clone(), None).await {
                        Ok(found) if !found.kvs().is_empty() => return Ok(()),
                        Ok(_) if tries < 3 => tries += 1, // not applied: the same txn again
                        _ => return Err(e),
                    }
                }
                other => break other?,
            }
        };
        if !response.succeeded() {
            // Lost a race on the name key: the task keys written above go again.
            let tasks_prefix = self.job_key(job_id, "tasks/");
            let _ = self
                .client
                .clone()
                .delete(
                    tasks_prefix,
                    Some(etcd_client::DeleteOptions::new().with_prefix()),
                )
                .await;
            return Err(StateError::JobExists(job_id.to_string()));
        }
        Ok(())
    }

    /// The writes storing `tasks` under their keys.
    fn task_puts(&self, job_id: &str, tasks: &[Task]) -> Vec<TxnOp> {
        tasks
            .iter()
            .map(|task| {
                let key = self.job_key(job_id, &format!("tasks/{}", task.index));
                TxnOp::put(key, json(task), None)
            })
            .collect()
    }

    /// More tasks of a job still being planned: the tasks in fenced chunks, then the mark of
    /// how far planning got (a reload ignores tasks at or past it). Repeatable.
    pub async fn add_tasks(&self, job_id: &str, tasks: &[Task], planned: Planned) -> Result<()> {
        for chunk in tasks.chunks(TASKS_PER_TXN) {
            self.fenced(vec![], self.task_puts(job_id, chunk)).await?;
        }
        let mark = TxnOp::put(self.job_key(job_id, "planned"), json(&planned), None);
        self.fenced(vec![], vec![mark]).await?;
        Ok(())
    }

    /// Run an ended job again (a failed or cancelled named job resubmitted): its committed
    /// task results stay, its final report goes.
    pub async fn resume_job(&self, job_id: &str) -> Result<()> {
        let ops = vec![
            TxnOp::put(
                self.job_key(job_id, "state"),
                json(&JobState::Running),
                None,
            ),
            TxnOp::delete(self.job_key(job_id, "report"), None),
            // Every attempt of the ended run is void (a late result is refused by its token),
            // but an owner key left under a live worker's lease (a task that finished as the
            // job ended) would keep its task from ever being claimed again.
            TxnOp::delete(
                self.job_key(job_id, "owners/"),
                Some(etcd_client::DeleteOptions::new().with_prefix()),
            ),
        ];
        self.fenced(vec![], ops).await?;
        Ok(())
    }

    pub async fn set_job_state(&self, job_id: &str, state: JobState) -> Result<()> {
        blip("job-state")?;
        let ops = vec![TxnOp::put(
            self.job_key(job_id, "state"),
            json(&state),
            None,
        )];
        self.fenced(vec![], ops).await?;
        Ok(())
    }

    /// `Ok` if this coordinator still leads (an empty fenced transaction), `Err(NotLeader)` if
    /// another one was elected meanwhile.
    pub async fn confirm_leading(&self) -> Result<()> {
        self.fenced(vec![], vec![]).await?;
        Ok(())
    }

    /// Store an ended job's report (and its final state) together.
    pub async fn finish_job(&self, report: &JobReport) -> Result<()> {
        blip("job-end")?;
        let ops = vec![
            TxnOp::put(self.job_key(&report.job_id, "report"), json(report), None),
            TxnOp::put(
                self.job_key(&report.job_id, "state"),
                json(&report.state),
                None,
            ),
        ];
        self.fenced(vec![], ops).await?;
        Ok(())
    }

    /// Grant a worker its lease and record it under that lease.
    pub async fn register_worker(&self, worker: &str, ttl_s: i64) -> Result<i64> {
        let lease = self.client.clone().lease_grant(ttl_s, None).await?.id();
        let ops = vec![TxnOp::put(
            format!("{}/workers/{worker}", self.prefix),
            worker.as_bytes().to_vec(),
            Some(PutOptions::new().with_lease(lease)),
        )];
        if let Err(e) = self.fenced(vec![], ops).await {
            let _ = self.client.clone().lease_revoke(lease).await;
            return Err(e);
        }
        Ok(lease)
    }

    /// The lease of a worker registered with an earlier leader (a new leader adopts it, so
    /// the worker's running tasks keep their owners across a failover).
    pub async fn worker_lease(&self, worker: &str) -> Result<Option<i64>> {
        let key = format!("{}/workers/{worker}", self.prefix);
        let response = self.client.clone().get(key, None).await?;
        Ok(response
            .kvs()
            .first()
            .map(|kv| kv.lease())
            .filter(|l| *l != 0))
    }

    /// One keep-alive round trip; `false` when the lease has already expired.
    pub async fn keep_alive(&self, lease: i64) -> Result<bool> {
        let attempt = async {
            let (mut keeper, mut stream) = self.client.clone().lease_keep_alive(lease).await?;
            keeper.keep_alive().await?;
            stream.message().await
        };
        match attempt.await {
            Ok(Some(response)) => Ok(response.ttl() > 0),
            Ok(None) => Ok(false),
            Err(etcd_client::Error::LeaseKeepAliveError(message))
                if message.contains("not found") =>
            {
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Claim a task for `worker` under its lease. Returns the fencing token, or `None` when the
    /// task already has an owner or a result.
    pub async fn claim(
        &self,
        job: &str,
        index: u32,
        worker: &str,
        attempt: u32,
        handed_back: u32,
        lease: i64,
    ) -> Result<Option<u64>> {
        let owner_key = self.job_key(job, &format!("owners/{index}"));
        let result_key = self.job_key(job, &format!("results/{index}"));
        let owner = Owner {
            worker: worker.to_string(),
            attempt,
            token: 0,
        };
        let compares = vec![
            Compare::version(owner_key.clone(), CompareOp::Equal, 0),
            Compare::version(result_key, CompareOp::Equal, 0),
        ];
        let ops = vec![
            TxnOp::put(
                owner_key.clone(),
                json(&owner),
                Some(PutOptions::new().with_lease(lease)),
            ),
            TxnOp::put(
                self.job_key(job, &format!("attempts/{index}")),
                json(&Attempts {
                    attempt,
                    handed_back,
                }),
                None,
            ),
        ];
        // The transaction's revision is the owner key's mod_revision: the fencing token.
        let mut outcome = self.batched(compares, ops).await;
        if matches!(outcome, Ok((true, _))) && zoopipe_common::fault::fail_once("claim-answer") {
            // The claim applied, its answer is lost (a timeout after etcd committed).
            outcome = Err(StateError::Unreachable {
                endpoints: "etcd".into(),
                message: "fault injected: the claim's answer is lost".into(),
            });
        }
        match outcome {
            Ok((claimed, revision)) => Ok(claimed.then_some(revision.max(0) as u64)),
            Err(StateError::NotLeader) => Err(StateError::NotLeader),
            // No answer does not mean no claim: read the owner key back. If it is this
            // attempt's, the claim stands (its revision is the token); otherwise it did not
            // apply and the task is free for a later claim. Without this, a claim that applied
            // would leave the task pending while its owner key lived on, unclaimable until
            // that worker died.
            Err(e) => {
                let Ok(found) = self.client.clone().get(owner_key.clone(), None).await else {
                    return Err(e);
                };
                let ours = found.kvs().first().and_then(|kv| {
                    let owner: Owner = serde_json::from_slice(kv.value()).ok()?;
                    (owner.worker == worker && owner.attempt == attempt && kv.lease() == lease)
                        .then(|| kv.mod_revision().max(0) as u64)
                });
                match ours {
                    Some(token) => {
                        tracing::warn!(job, task = index, error = %e, "claim answer lost; read back: it applied");
                        Ok(Some(token))
                    }
                    None => Err(e),
                }
            }
        }
    }

    /// Record an attempt's result if, and only if, it still owns the task. A result that is
    /// already recorded, the same attempt with the same parts, is accepted again: the worker
    /// re-sends it when the answer to its first send was lost (a coordinator killed between
    /// its etcd write and its reply), and refusing would discard committed parts.
    pub async fn complete(
        &self,
        job: &str,
        index: u32,
        token: u64,
        result: &TaskResult,
    ) -> Result<bool> {
        let owner_key = self.job_key(job, &format!("owners/{index}"));
        let result_key = self.job_key(job, &format!("results/{index}"));
        let compares = vec![Compare::mod_revision(
            owner_key.clone(),
            CompareOp::Equal,
            token as i64,
        )];
        let ops = vec![
            TxnOp::put(result_key.clone(), json(result), None),
            TxnOp::delete(owner_key, None),
        ];
        if self.batched(compares, ops).await?.0 {
            return Ok(true);
        }
        let stored = self.client.clone().get(result_key, None).await?;
        let recorded = stored
            .kvs()
            .first()
            .and_then(|kv| serde_json::from_slice::<TaskResult>(kv.value()).ok());
        Ok(recorded.is_some_and(|recorded| {
            recorded.attempt == result.attempt && recorded.staged().eq(result.staged())
        }))
    }

    /// Give a task back (failed or handed-back attempt) if the attempt still owns it.
    pub async fn release(&self, job: &str, index: u32, token: u64) -> Result<bool> {
        let owner_key = self.job_key(job, &format!("owners/{index}"));
        let compares = vec![Compare::mod_revision(
            owner_key.clone(),
            CompareOp::Equal,
            token as i64,
        )];
        let ops = vec![TxnOp::delete(owner_key, None)];
        Ok(self.fenced(compares, ops).await?.succeeded())
    }

    /// A file re-read whole: its ranges' tasks, owners and results go, and `task` (under the
    /// first range's index) is stored anew, in one fenced transaction.
    pub async fn replace_tasks(&self, job: &str, removed: &[u32], task: &Task) -> Result<()> {
        let mut ops = Vec::new();
        for index in removed {
            for kind in ["tasks", "owners", "results", "attempts"] {
                ops.push(TxnOp::delete(
                    self.job_key(job, &format!("{kind}/{index}")),
                    None,
                ));
            }
        }
        ops.push(TxnOp::put(
            self.job_key(job, &format!("tasks/{}", task.index)),
            json(task),
            None,
        ));
        // etcd caps a transaction at 128 operations: a long file's ranges go in chunks, the
        // new task last (a coordinator that dies in between re-reads the file again).
        let last = ops.split_off(ops.len() - 1);
        for chunk in ops.chunks(TASKS_PER_TXN) {
            self.fenced(vec![], chunk.to_vec()).await?;
        }
        self.fenced(vec![], last).await?;
        Ok(())
    }

    /// Tasks read under a lost database snapshot: their owner keys and results go, in fenced
    /// transactions (the tasks and attempt records stay).
    pub async fn reset_tasks(&self, job: &str, indexes: &[u32]) -> Result<()> {
        let ops: Vec<TxnOp> = indexes
            .iter()
            .flat_map(|index| {
                ["owners", "results"]
                    .map(|kind| TxnOp::delete(self.job_key(job, &format!("{kind}/{index}")), None))
            })
            .collect();
        for chunk in ops.chunks(TASKS_PER_TXN) {
            self.fenced(vec![], chunk.to_vec()).await?;
        }
        Ok(())
    }

    /// An incremental named job's mark (`<prefix>/marks/<name>`).
    pub async fn mark(&self, name: &str) -> Result<Option<String>> {
        let response = self.client.clone().get(self.mark_key(name), None).await?;
        Ok(response
            .kvs()
            .first()
            .map(|kv| String::from_utf8_lossy(kv.value()).into_owned()))
    }

    pub async fn set_mark(&self, name: &str, value: &str) -> Result<()> {
        let ops = vec![TxnOp::put(self.mark_key(name), value, None)];
        self.fenced(vec![], ops).await?;
        Ok(())
    }

    fn mark_key(&self, name: &str) -> String {
        let name = percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC);
        format!("{}/marks/{name}", self.prefix)
    }

    /// Remove an ended job: every key under it, and the name keys that point at it.
    pub async fn delete_job(&self, job_id: &str) -> Result<()> {
        let names = format!("{}/names/", self.prefix);
        let mut ops: Vec<TxnOp> = self
            .scan(&names)
            .await?
            .iter()
            .filter(|kv| kv.value() == job_id.as_bytes())
            .map(|kv| TxnOp::delete(kv.key().to_vec(), None))
            .collect();
        ops.push(TxnOp::delete(
            self.job_key(job_id, ""),
            Some(etcd_client::DeleteOptions::new().with_prefix()),
        ));
        for chunk in ops.chunks(TASKS_PER_TXN) {
            self.fenced(vec![], chunk.to_vec()).await?;
        }
        Ok(())
    }

    /// Whether a task's result is stored.
    pub async fn has_result(&self, job: &str, index: u32) -> Result<bool> {
        let key = self.job_key(job, &format!("results/{index}"));
        let response = self
            .client
            .clone()
            .get(key, Some(GetOptions::new().with_count_only()))
            .await?;
        Ok(response.count() > 0)
    }

    /// Every key under `prefix`, a page at a time (one response stays far below gRPC's
    /// message limit however many tasks there are).
    async fn scan(&self, prefix: &str) -> Result<Vec<etcd_client::KeyValue>> {
        self.scan_with(prefix, false).await
    }

    async fn scan_with(&self, prefix: &str, keys_only: bool) -> Result<Vec<etcd_client::KeyValue>> {
        let end = prefix_end(prefix.as_bytes());
        let mut start = prefix.as_bytes().to_vec();
        let mut all = Vec::new();
        loop {
            let mut options = GetOptions::new()
                .with_range(end.clone())
                .with_limit(SCAN_PAGE);
            if keys_only {
                options = options.with_keys_only();
            }
            let response = self
                .client
                .clone()
                .get(start.clone(), Some(options))
                .await?;
            let kvs = response.kvs();
            all.extend_from_slice(kvs);
            match kvs.last() {
                Some(last) if response.more() => {
                    start = last.key().to_vec();
                    start.push(0);
                }
                _ => return Ok(all),
            }
        }
    }

    /// Everything stored about every job (a coordinator that starts reloads from here).
    pub async fn load_jobs(&self) -> Result<Vec<StoredJob>> {
        let base = format!("{}/jobs/", self.prefix);
        let kvs = self.scan(&base).await?;
        let mut jobs: BTreeMap<String, StoredJob> = BTreeMap::new();
        for kv in &kvs {
            let key = kv.key_str().unwrap_or_default().to_string();
            let Some(rest) = key.strip_prefix(&base) else {
                continue;
            };
            let mut parts = rest.splitn(3, '/');
            let (Some(job_id), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            let job = jobs.entry(job_id.to_string()).or_insert_with(|| StoredJob {
                job_id: job_id.to_string(),
                spec: serde_json::Value::Null,
                state: JobState::Pending,
                tasks: BTreeMap::new(),
                owners: BTreeMap::new(),
                results: BTreeMap::new(),
                attempts: BTreeMap::new(),
                report: None,
                planned: None,
            });
            let index = parts.next().and_then(|i| i.parse::<u32>().ok());
            match (kind, index) {
                ("spec", None) => job.spec = parse(&key, kv.value())?,
                ("state", None) => job.state = parse(&key, kv.value())?,
                ("report", None) => job.report = Some(parse(&key, kv.value())?),
                ("planned", None) => job.planned = Some(parse(&key, kv.value())?),
                ("tasks", Some(i)) => {
                    job.tasks.insert(i, parse(&key, kv.value())?);
                }
                ("owners", Some(i)) => {
                    let mut owner: Owner = parse(&key, kv.value())?;
                    owner.token = kv.mod_revision().max(0) as u64;
                    job.owners.insert(i, owner);
                }
                ("results", Some(i)) => {
                    job.results.insert(i, parse(&key, kv.value())?);
                }
                ("attempts", Some(i)) => {
                    job.attempts.insert(i, parse(&key, kv.value())?);
                }
                _ => {}
            }
        }
        for job in jobs.values_mut() {
            // Tasks past the planning mark are from an append that did not finish: planning
            // goes on from the mark and numbers them anew.
            if let Some(planned) = job.planned {
                job.tasks.retain(|index, _| *index < planned.next_task);
            }
        }
        Ok(jobs.into_values().collect())
    }

    /// Tasks whose owner key disappeared without a result: the lease expired (worker dead,
    /// frozen or cut off) or the attempt was released. Sends (job, task index).
    pub async fn watch_lost_owners(&self) -> Result<mpsc::Receiver<(String, u32, Option<u64>)>> {
        let base = format!("{}/jobs/", self.prefix);
        let client = self.client.clone();
        // Fail fast if etcd is not there now; later outages are ridden out by re-watching.
        let first = client
            .clone()
            .watch(
                base.clone(),
                Some(WatchOptions::new().with_prefix().with_prev_key()),
            )
            .await?;
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(async move {
            let mut stream = Some(first);
            loop {
                if let Some(mut s) = stream.take() {
                    while let Ok(Some(response)) = s.message().await {
                        for event in response.events() {
                            if event.event_type() != EventType::Delete {
                                continue;
                            }
                            let Some(key) = event.kv().and_then(|kv| kv.key_str().ok()) else {
                                continue;
                            };
                            let Some(rest) = key.strip_prefix(&base) else {
                                continue;
                            };
                            let parts: Vec<&str> = rest.split('/').collect();
                            // The deleted owner key's mod_revision is its attempt's fencing
                            // token (the claim's revision): the lifecycle ignores the event
                            // if a later attempt runs the task by now.
                            let token = event.prev_kv().map(|kv| kv.mod_revision().max(0) as u64);
                            if let [job, "owners", index] = parts.as_slice()
                                && let Ok(index) = index.parse()
                                && tx.send((job.to_string(), index, token)).await.is_err()
                            {
                                return;
                            }
                        }
                    }
                }
                if tx.is_closed() {
                    return;
                }
                tracing::warn!("etcd watch broken; re-watching");
                tokio::time::sleep(Duration::from_secs(1)).await;
                stream = client
                    .clone()
                    .watch(
                        base.clone(),
                        Some(WatchOptions::new().with_prefix().with_prev_key()),
                    )
                    .await
                    .ok();
            }
        });
        Ok(rx)
    }

    /// Tasks with an owner key or a result, per job: to find orphans missed while a watch
    /// was down.
    pub async fn claimed_tasks(&self, job: &str) -> Result<std::collections::BTreeSet<u32>> {
        let mut claimed = std::collections::BTreeSet::new();
        for kind in ["owners/", "results/"] {
            let base = self.job_key(job, kind);
            for kv in self.scan_with(&base, true).await? {
                if let Some(index) = kv
                    .key_str()
                    .ok()
                    .and_then(|k| k.strip_prefix(&base))
                    .and_then(|i| i.parse().ok())
                {
                    claimed.insert(index);
                }
            }
        }
        Ok(claimed)
    }

    /// One job's spec, state and report, read in one snapshot; its tasks, owners, results and
    /// attempts are left empty (they grow with the job and readers of its outcome do not need them).
    /// Unfenced: any replica may read, e.g. to serve Flight.
    pub async fn load_job(&self, job_id: &str) -> Result<Option<StoredJob>> {
        let keys = ["spec", "state", "report"].map(|k| self.job_key(job_id, k));
        let gets: Vec<TxnOp> = keys.iter().map(|k| TxnOp::get(k.clone(), None)).collect();
        let response = self.client.clone().txn(Txn::new().and_then(gets)).await?;
        let mut values = response.op_responses().into_iter().map(|r| match r {
            etcd_client::TxnOpResponse::Get(get) => get.kvs().first().map(|kv| kv.value().to_vec()),
            _ => None,
        });
        let (Some(Some(spec)), Some(state), Some(report)) =
            (values.next(), values.next(), values.next())
        else {
            return Ok(None);
        };
        Ok(Some(StoredJob {
            job_id: job_id.to_string(),
            spec: parse(&keys[0], &spec)?,
            state: state
                .map(|s| parse(&keys[1], &s))
                .transpose()?
                .unwrap_or(JobState::Pending),
            tasks: BTreeMap::new(),
            owners: BTreeMap::new(),
            results: BTreeMap::new(),
            attempts: BTreeMap::new(),
            report: report.map(|r| parse(&keys[2], &r)).transpose()?,
            planned: None,
        }))
    }
}

impl From<StateError> for StoreError {
    fn from(e: StateError) -> Self {
        match e {
            StateError::NotLeader => StoreError::NotLeader,
            StateError::JobExists(job) => StoreError::JobExists(job),
            StateError::Corrupt { key, message } => StoreError::Corrupt { key, message },
            e @ (StateError::Unreachable { .. } | StateError::Etcd(_)) => {
                StoreError::Unavailable(e.to_string())
            }
        }
    }
}

/// The fleet's job store: the lifecycle's writes as fenced etcd transactions.
#[async_trait::async_trait]
impl JobStore for EtcdState {
    fn name_key(&self, name: &str, vars: &BTreeMap<String, String>) -> String {
        EtcdState::name_key(self, name, vars)
    }

    async fn job_for_name(&self, name_key: &str) -> StoreResult<Option<String>> {
        Ok(EtcdState::job_for_name(self, name_key).await?)
    }

    async fn create_job(
        &self,
        job_id: &str,
        spec: &serde_json::Value,
        tasks: &[Task],
        name: Option<NameClaim<'_>>,
        planned: Option<Planned>,
    ) -> StoreResult<()> {
        let name = name.map(|n| (n.key, n.seen));
        Ok(EtcdState::create_job(self, job_id, spec, tasks, name, planned).await?)
    }

    async fn add_tasks(&self, job_id: &str, tasks: &[Task], planned: Planned) -> StoreResult<()> {
        Ok(EtcdState::add_tasks(self, job_id, tasks, planned).await?)
    }

    async fn resume_job(&self, job_id: &str) -> StoreResult<()> {
        Ok(EtcdState::resume_job(self, job_id).await?)
    }

    async fn set_job_state(&self, job_id: &str, state: JobState) -> StoreResult<()> {
        Ok(EtcdState::set_job_state(self, job_id, state).await?)
    }

    async fn claim(
        &self,
        job_id: &str,
        index: u32,
        worker: &str,
        attempt: u32,
        handed_back: u32,
        lease: i64,
    ) -> StoreResult<Option<u64>> {
        Ok(EtcdState::claim(self, job_id, index, worker, attempt, handed_back, lease).await?)
    }

    async fn complete(&self, job_id: &str, token: u64, result: &TaskResult) -> StoreResult<bool> {
        Ok(EtcdState::complete(self, job_id, result.index, token, result).await?)
    }

    async fn release(&self, job_id: &str, index: u32, token: u64) -> StoreResult<bool> {
        Ok(EtcdState::release(self, job_id, index, token).await?)
    }

    async fn replace_tasks(&self, job_id: &str, removed: &[u32], task: &Task) -> StoreResult<()> {
        Ok(EtcdState::replace_tasks(self, job_id, removed, task).await?)
    }

    async fn reset_tasks(&self, job_id: &str, indexes: &[u32]) -> StoreResult<()> {
        Ok(EtcdState::reset_tasks(self, job_id, indexes).await?)
    }

    async fn mark(&self, name: &str) -> StoreResult<Option<String>> {
        Ok(EtcdState::mark(self, name).await?)
    }

    async fn set_mark(&self, name: &str, value: &str) -> StoreResult<()> {
        Ok(EtcdState::set_mark(self, name, value).await?)
    }

    async fn confirm_leading(&self) -> StoreResult<()> {
        Ok(EtcdState::confirm_leading(self).await?)
    }

    async fn finish_job(&self, report: &JobReport) -> StoreResult<()> {
        Ok(EtcdState::finish_job(self, report).await?)
    }
}
