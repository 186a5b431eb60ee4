//! Every Redis key and channel name of the backend, in one place.
//!
//! All names live under one configurable prefix `P` (so several deployments, or parallel
//! tests, can share one Redis):
//!
//! | name | type | TTL | what |
//! |------|------|-----|------|
//! | `P:pending` | list | idle TTL (1 day) | ids of waiting jobs; new ones `LPUSH`ed, workers `BLMOVE` from the right |
//! | `P:workers` | set | idle TTL | ids of workers that may hold jobs (the reaper walks it) |
//! | `P:worker:{w}:alive` | string | heartbeat TTL | present while worker `w` lives |
//! | `P:worker:{w}:inflight` | list | idle TTL | ids of the jobs worker `w` holds |
//! | `P:job:{id}` | hash | job timeout + grace | state, attempt, worker, parts stored, failure, gateway channel, times |
//! | `P:job:{id}:image` | string | job timeout + grace | the input image (claim-check) |
//! | `P:job:{id}:alive` | string | client TTL | present while a gateway holds the client's connection |
//! | `P:job:{id}:part:{n}` | string | payload TTL | result part `n` (claim-check) |
//! | `P:job:{id}:part:{n}:a{k}` | string | payload TTL | part `n` being written by attempt `k` (renamed into place) |
//! | `P:gateway:{g}:alive` | string | client TTL | present while gateway process `g` lives |
//! | `P:gateway:{g}:notices` | pub/sub channel | - | small notices for the jobs of gateway process `g` |
//!
//! The Lua scripts build the per-job names of jobs they find in lists from
//! [`Keys::job_prefix`] (documented in each script's header); everything else is passed as
//! `KEYS`.

use crate::JobId;

/// Key and channel names under one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Names under `prefix` (without the trailing `:`).
    pub fn new(prefix: &str) -> Self {
        Keys { prefix: prefix.trim_end_matches(':').to_owned() }
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The list of waiting job ids.
    pub fn pending(&self) -> String {
        format!("{}:pending", self.prefix)
    }

    /// The set of worker ids that may hold jobs.
    pub fn workers(&self) -> String {
        format!("{}:workers", self.prefix)
    }

    /// Worker `w`'s heartbeat key.
    pub fn worker_alive(&self, worker: &str) -> String {
        format!("{}:worker:{worker}:alive", self.prefix)
    }

    /// Worker `w`'s in-flight list.
    pub fn inflight(&self, worker: &str) -> String {
        format!("{}:worker:{worker}:inflight", self.prefix)
    }

    /// What precedes a job id in its hash's name (`P:job:`); scripts append the id.
    pub fn job_prefix(&self) -> String {
        format!("{}:job:", self.prefix)
    }

    /// The job's state hash.
    pub fn job(&self, id: JobId) -> String {
        format!("{}:job:{id}", self.prefix)
    }

    /// The job's input image.
    pub fn image(&self, id: JobId) -> String {
        format!("{}:job:{id}:image", self.prefix)
    }

    /// The job's "client alive" key.
    pub fn client_alive(&self, id: JobId) -> String {
        format!("{}:job:{id}:alive", self.prefix)
    }

    /// Stored result part `seq`.
    pub fn part(&self, id: JobId, seq: usize) -> String {
        format!("{}:job:{id}:part:{seq}", self.prefix)
    }

    /// Result part `seq` while attempt `attempt` writes it.
    pub fn part_staging(&self, id: JobId, seq: usize, attempt: u32) -> String {
        format!("{}:job:{id}:part:{seq}:a{attempt}", self.prefix)
    }

    /// Gateway process `g`'s heartbeat key. All its jobs are abandoned together when it
    /// expires, so a worker that finds one job of a dead gateway abandoned finds them all so.
    pub fn gateway_alive(&self, gateway: &str) -> String {
        format!("{}:gateway:{gateway}:alive", self.prefix)
    }

    /// The notice channel of gateway process `g`.
    pub fn notices(&self, gateway: &str) -> String {
        format!("{}:gateway:{gateway}:notices", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names are namespaced under the prefix and a trailing colon in the prefix is not doubled.
    #[test]
    fn names_are_prefixed() {
        let keys = Keys::new("img3d:");
        let id = JobId(uuid::Uuid::nil());
        assert_eq!(keys.pending(), "img3d:pending");
        assert_eq!(keys.job(id), format!("img3d:job:{id}"));
        assert_eq!(keys.job(id), format!("{}{id}", keys.job_prefix()));
        assert_eq!(keys.part(id, 2), format!("img3d:job:{id}:part:2"));
        assert_eq!(keys.inflight("w1"), "img3d:worker:w1:inflight");
        assert_eq!(keys.notices("g"), "img3d:gateway:g:notices");
        assert_eq!(keys.gateway_alive("g"), "img3d:gateway:g:alive");
    }
}
