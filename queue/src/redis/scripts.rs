//! The Lua scripts (one file each under `lua/`, each with a header naming its KEYS and ARGV).
//!
//! Every state change that must be atomic across gateways, workers and reapers is one script:
//! the bounded push, a claim, each fenced publish, ending or returning a lease, releasing a
//! job, reaping a dead worker's jobs. Every key a script touches is in its `KEYS` (see
//! [`super::keys`]); a script that must act on the ids in a list acts on one id per call. `redis::Script` sends `EVALSHA` and loads the script on
//! `NOSCRIPT`, so a restarted Redis (empty script cache) needs nothing special.
//!
//! `give_back.lua` is a Lua function, not a script: the scripts that return jobs a worker no
//! longer holds (`reap.lua`, `audit.lua`) are compiled with it prepended, so both give a job
//! back the same way.

use std::sync::LazyLock;

use deadpool_redis::redis::Script;

/// All scripts, compiled (hashed) once per process.
pub(crate) struct Scripts {
    pub submit: Script,
    pub claim: Script,
    pub publish_part: Script,
    pub progress: Script,
    pub finish: Script,
    pub requeue: Script,
    pub release: Script,
    pub reap: Script,
    pub forget_worker: Script,
    pub audit: Script,
}

pub(crate) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    submit: Script::new(include_str!("lua/submit.lua")),
    claim: Script::new(include_str!("lua/claim.lua")),
    publish_part: Script::new(include_str!("lua/publish_part.lua")),
    progress: Script::new(include_str!("lua/progress.lua")),
    finish: Script::new(include_str!("lua/finish.lua")),
    requeue: Script::new(include_str!("lua/requeue.lua")),
    release: Script::new(include_str!("lua/release.lua")),
    reap: Script::new(concat!(include_str!("lua/give_back.lua"), include_str!("lua/reap.lua"))),
    audit: Script::new(concat!(include_str!("lua/give_back.lua"), include_str!("lua/audit.lua"))),
    forget_worker: Script::new(include_str!("lua/forget_worker.lua")),
});
