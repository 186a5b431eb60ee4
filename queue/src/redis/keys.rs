//! Every Redis key and channel name of the backend, in one place.
//!
//! All names live under one configurable prefix `P` (so several deployments, or parallel
//! tests, can share one Redis). Braces below are literal: `{id}` is a Redis Cluster hash tag, so
//! all of a job's keys hash to one slot; `<w>`, `<g>`, `<n>`, `<k>` are placeholders.
//!
//! | name | type | TTL | what |
//! |------|------|-----|------|
//! | `P:pending` | list | idle TTL (1 day) | ids of waiting jobs; new ones `LPUSH`ed, workers `BLMOVE` from the right |
//! | `P:workers` | set | idle TTL | ids of workers that may hold jobs (the reaper walks it) |
//! | `P:worker:<w>:alive` | string | heartbeat TTL | present while worker `w` lives |
//! | `P:worker:<w>:inflight` | list | idle TTL | ids of the jobs worker `w` holds |
//! | `P:job:{id}` | hash | job timeout + grace | state, attempt, worker, parts stored, failure, gateway channel, times |
//! | `P:job:{id}:image` | string | job timeout + grace | the input image (claim-check) |
//! | `P:job:{id}:alive` | string | client TTL | present while a gateway holds the client's connection |
//! | `P:job:{id}:part:<n>` | string | payload TTL | result part `n` (claim-check) |
//! | `P:job:{id}:part:<n>:a<k>` | string | payload TTL | part `n` being written by attempt `k` (renamed into place) |
//! | `P:gateway:<g>:alive` | string | client TTL | present while gateway process `g` lives |
//! | `P:gateway:<g>:notices` | pub/sub channel | - | small notices for the jobs of gateway process `g` |
//!
//! Cluster-ready layout: every key a script touches is passed in its `KEYS` (no script builds
//! a name; `queue/tests/redis_keys.rs` watches every script with `MONITOR` and fails on an
//! undeclared key), and a job's keys share the hash tag `{id}`. Today one Redis (or one
//! Sentinel-managed primary) holds everything; a deployment that outgrows it can spread the
//! payload keys (image, parts) over a Redis Cluster by that tag without renaming anything.
//! The prefix itself must not contain `{`, or its tag would win and put every key in one slot
//! ([`Keys::new`] refuses it).

use crate::JobId;

/// Key and channel names under one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Names under `prefix` (without the trailing `:`).
    ///
    /// # Panics
    /// If `prefix` contains `{` or `}`: a hash tag in the prefix would override the per-job
    /// tags (see the module docs). Connecting with such a prefix fails first, with
    /// [`crate::QueueError::BadPrefix`].
    pub fn new(prefix: &str) -> Self {
        assert!(!prefix.contains(['{', '}']), "a key prefix must not contain braces: {prefix:?}");
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

    /// The job's state hash.
    pub fn job(&self, id: JobId) -> String {
        format!("{}:job:{{{id}}}", self.prefix)
    }

    /// The job's input image.
    pub fn image(&self, id: JobId) -> String {
        format!("{}:job:{{{id}}}:image", self.prefix)
    }

    /// The job's "client alive" key.
    pub fn client_alive(&self, id: JobId) -> String {
        format!("{}:job:{{{id}}}:alive", self.prefix)
    }

    /// Stored result part `seq`.
    pub fn part(&self, id: JobId, seq: usize) -> String {
        format!("{}:job:{{{id}}}:part:{seq}", self.prefix)
    }

    /// Result part `seq` while attempt `attempt` writes it.
    pub fn part_staging(&self, id: JobId, seq: usize, attempt: u32) -> String {
        format!("{}:job:{{{id}}}:part:{seq}:a{attempt}", self.prefix)
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
        assert_eq!(keys.job(id), format!("img3d:job:{{{id}}}"));
        assert_eq!(keys.part(id, 2), format!("img3d:job:{{{id}}}:part:2"));
        assert_eq!(keys.inflight("w1"), "img3d:worker:w1:inflight");
        assert_eq!(keys.notices("g"), "img3d:gateway:g:notices");
        assert_eq!(keys.gateway_alive("g"), "img3d:gateway:g:alive");
    }

    /// The hash tag of every per-job key is exactly the job id (what Redis Cluster hashes:
    /// the text between the first `{` and the next `}`).
    #[test]
    fn job_keys_share_the_job_id_as_hash_tag() {
        let keys = Keys::new("img3d");
        let id = JobId(uuid::Uuid::new_v4());
        let tag = |key: &str| {
            let open = key.find('{').expect("a hash tag");
            let close = open + key[open..].find('}').expect("a closed hash tag");
            key[open + 1..close].to_owned()
        };
        for key in [
            keys.job(id),
            keys.image(id),
            keys.client_alive(id),
            keys.part(id, 0),
            keys.part(id, 2),
            keys.part_staging(id, 1, 3),
        ] {
            assert_eq!(tag(&key), id.to_string(), "{key}");
        }
        for shared in [keys.pending(), keys.workers(), keys.inflight("w"), keys.gateway_alive("g")] {
            assert!(!shared.contains('{'), "{shared}");
        }
    }

    #[test]
    #[should_panic(expected = "braces")]
    fn a_prefix_with_a_hash_tag_is_refused() {
        Keys::new("{img3d}");
    }
}
