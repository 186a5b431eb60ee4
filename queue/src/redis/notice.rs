//! The small notices that travel over pub/sub: `"{job id} {kind} {args...}"`.
//!
//! Notices are wake-ups, not data: bytes stay in their own keys (claim-check), and the job's
//! hash is the truth a gateway falls back to when it suspects it missed a notice. They are
//! written by the Lua scripts (plain concatenation) and parsed here.

use img3d_protocol::{FailureCode, ProgressStage};

use crate::JobId;

/// One notice about one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Notice {
    /// A worker claimed the job (`attempt` 1, 2, ...).
    Started,
    /// Stage progress.
    Progress { stage: ProgressStage, step: u32, total: u32 },
    /// Part `seq` is stored.
    Part { seq: usize },
    /// The job completed or failed: the hash holds the outcome.
    Finished,
}

const STAGES: [ProgressStage; 5] = [
    ProgressStage::Preprocess,
    ProgressStage::Stage1,
    ProgressStage::Stage2,
    ProgressStage::Reconstruct,
    ProgressStage::Export,
];

const CODES: [FailureCode; 8] = [
    FailureCode::BadRequest,
    FailureCode::InvalidImage,
    FailureCode::TooLarge,
    FailureCode::Busy,
    FailureCode::Unavailable,
    FailureCode::Timeout,
    FailureCode::Cancelled,
    FailureCode::Internal,
];

/// Parses a stage's wire spelling.
pub(crate) fn parse_stage(s: &str) -> Option<ProgressStage> {
    STAGES.into_iter().find(|st| st.as_str() == s)
}

/// Parses a failure code's wire spelling; unknown codes read as `internal`.
pub(crate) fn parse_code(s: &str) -> FailureCode {
    CODES.into_iter().find(|c| c.as_str() == s).unwrap_or(FailureCode::Internal)
}

/// Parses a notice payload; `None` for anything malformed (logged by the caller).
pub(crate) fn parse(payload: &str) -> Option<(JobId, Notice)> {
    let mut words = payload.split(' ');
    let id = JobId(words.next()?.parse().ok()?);
    let notice = match words.next()? {
        "started" => Notice::Started,
        "progress" => Notice::Progress {
            stage: parse_stage(words.next()?)?,
            step: words.next()?.parse().ok()?,
            total: words.next()?.parse().ok()?,
        },
        "part" => Notice::Part { seq: words.next()?.parse().ok()? },
        "completed" | "failed" => Notice::Finished,
        _ => return None,
    };
    Some((id, notice))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every notice the scripts write parses back; garbage does not.
    #[test]
    fn parses_script_notices() {
        let id = JobId::new();
        assert_eq!(parse(&format!("{id} started 2")), Some((id, Notice::Started)));
        assert_eq!(
            parse(&format!("{id} progress stage2 7 50")),
            Some((id, Notice::Progress { stage: ProgressStage::Stage2, step: 7, total: 50 }))
        );
        assert_eq!(parse(&format!("{id} part 2")), Some((id, Notice::Part { seq: 2 })));
        assert_eq!(parse(&format!("{id} completed")), Some((id, Notice::Finished)));
        assert_eq!(parse(&format!("{id} failed")), Some((id, Notice::Finished)));
        assert_eq!(parse("not-a-uuid part 1"), None);
        assert_eq!(parse(&format!("{id} part x")), None);
        assert_eq!(parse(&format!("{id} progress warp 1 2")), None);
        assert_eq!(parse_code("busy"), FailureCode::Busy);
        assert_eq!(parse_code("nonsense"), FailureCode::Internal);
    }
}
