//! The job store of `zoopipectl run`: the same conditional claims and completions as the
//! fleet's etcd store, held in this process (a crash leaves nothing to resume, and nothing
//! visible either: outputs appear only at commit).

use super::store::{JobStore, NameClaim, Planned, StoreError, StoreResult};
use async_trait::async_trait;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use zoopipe_common::plan::Task;
use zoopipe_common::report::{JobReport, JobState, TaskResult};

#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// The next fencing token.
    revision: u64,
    /// (job, task) → the owning attempt's token.
    owners: HashMap<(String, u32), u64>,
    /// (job, task) → the recorded result.
    results: HashMap<(String, u32), TaskResult>,
    names: HashMap<String, String>,
    jobs: HashMap<String, JobState>,
}

impl MemoryStore {
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> StoreResult<T> {
        let mut inner = self
            .inner
            .lock()
            .map_err(|_| StoreError::Unavailable("the in-memory job store is poisoned".into()))?;
        Ok(f(&mut inner))
    }
}

#[async_trait]
impl JobStore for MemoryStore {
    fn name_key(&self, name: &str, vars: &BTreeMap<String, String>) -> String {
        let vars: Vec<String> = vars.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("{name}/{}", vars.join("&"))
    }

    async fn job_for_name(&self, name_key: &str) -> StoreResult<Option<String>> {
        self.with(|s| s.names.get(name_key).cloned())
    }

    async fn create_job(
        &self,
        job_id: &str,
        _spec: &serde_json::Value,
        _tasks: &[Task],
        name: Option<NameClaim<'_>>,
        _planned: Option<Planned>,
    ) -> StoreResult<()> {
        self.with(|s| {
            if s.jobs.contains_key(job_id) {
                return Err(StoreError::JobExists(job_id.to_string()));
            }
            if let Some(claim) = name {
                if s.names.get(claim.key).map(String::as_str) != claim.seen {
                    return Err(StoreError::JobExists(job_id.to_string()));
                }
                s.names.insert(claim.key.to_string(), job_id.to_string());
            }
            s.jobs.insert(job_id.to_string(), JobState::Running);
            Ok(())
        })?
    }

    async fn add_tasks(
        &self,
        _job_id: &str,
        _tasks: &[Task],
        _planned: Planned,
    ) -> StoreResult<()> {
        // The tasks live in the job table: nothing outlives this process to resume from.
        Ok(())
    }

    async fn resume_job(&self, job_id: &str) -> StoreResult<()> {
        self.set_job_state(job_id, JobState::Running).await
    }

    async fn set_job_state(&self, job_id: &str, state: JobState) -> StoreResult<()> {
        self.with(|s| {
            s.jobs.insert(job_id.to_string(), state);
        })
    }

    async fn claim(
        &self,
        job_id: &str,
        index: u32,
        _worker: &str,
        _attempt: u32,
        _handed_back: u32,
        _lease: i64,
    ) -> StoreResult<Option<u64>> {
        self.with(|s| {
            let key = (job_id.to_string(), index);
            if s.owners.contains_key(&key) || s.results.contains_key(&key) {
                return None;
            }
            s.revision += 1;
            s.owners.insert(key, s.revision);
            Some(s.revision)
        })
    }

    async fn complete(&self, job_id: &str, token: u64, result: &TaskResult) -> StoreResult<bool> {
        self.with(|s| {
            let key = (job_id.to_string(), result.index);
            if s.owners.get(&key) == Some(&token) {
                s.owners.remove(&key);
                s.results.insert(key, result.clone());
                return true;
            }
            s.results.get(&key).is_some_and(|recorded| {
                recorded.attempt == result.attempt && recorded.staged().eq(result.staged())
            })
        })
    }

    async fn release(&self, job_id: &str, index: u32, token: u64) -> StoreResult<bool> {
        self.with(|s| {
            let key = (job_id.to_string(), index);
            if s.owners.get(&key) == Some(&token) {
                s.owners.remove(&key);
                true
            } else {
                false
            }
        })
    }

    async fn replace_tasks(&self, job_id: &str, removed: &[u32], _task: &Task) -> StoreResult<()> {
        self.with(|s| {
            for index in removed {
                let key = (job_id.to_string(), *index);
                s.results.remove(&key);
                s.owners.remove(&key);
            }
        })
    }

    async fn reset_tasks(&self, job_id: &str, indexes: &[u32]) -> StoreResult<()> {
        self.with(|s| {
            for index in indexes {
                let key = (job_id.to_string(), *index);
                s.results.remove(&key);
                s.owners.remove(&key);
            }
        })
    }

    /// The embedded mode has no server: marks live in files under `ZOOPIPE_STATE_DIR`
    /// (default `~/.local/state/zoopipe`), one per job name, so daily runs on one machine (or a
    /// pod with that directory on a volume) go on where the last one stopped.
    async fn mark(&self, name: &str) -> StoreResult<Option<String>> {
        match std::fs::read_to_string(mark_file(name)?) {
            Ok(text) => Ok(Some(text.trim_end_matches('\n').to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::Unavailable(format!(
                "reading the mark of {name}: {e}"
            ))),
        }
    }

    async fn set_mark(&self, name: &str, value: &str) -> StoreResult<()> {
        let file = mark_file(name)?;
        let write = || -> std::io::Result<()> {
            if let Some(dir) = file.parent() {
                std::fs::create_dir_all(dir)?;
            }
            // Written aside, then renamed: a crash leaves the old mark or the new one.
            let temp = file.with_extension("tmp");
            std::fs::write(&temp, format!("{value}\n"))?;
            std::fs::rename(&temp, &file)
        };
        write().map_err(|e| StoreError::Unavailable(format!("writing the mark of {name}: {e}")))
    }

    async fn confirm_leading(&self) -> StoreResult<()> {
        Ok(())
    }

    async fn finish_job(&self, report: &JobReport) -> StoreResult<()> {
        self.set_job_state(&report.job_id, report.state).await
    }
}

/// Where the embedded mode keeps the mark of job `name`.
fn mark_file(name: &str) -> StoreResult<std::path::PathBuf> {
    let dir = match std::env::var_os("ZOOPIPE_STATE_DIR") {
        Some(dir) => std::path::PathBuf::from(dir),
        None => std::env::var_os("XDG_STATE_HOME")
            .map(std::path::PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".local/state"))
            })
            .ok_or_else(|| {
                StoreError::Unavailable("no HOME or ZOOPIPE_STATE_DIR for the job's mark".into())
            })?
            .join("zoopipe"),
    };
    let file: String =
        percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC).to_string();
    Ok(dir.join("marks").join(file))
}
