//! The vocabulary of Custos's own shapes: closed sets of values as enums.
//! serde keeps the wire format (lower-case words), so the JSON is what it
//! was when these were strings.

use serde::{Deserialize, Serialize};

/// Where a background job (an export, a verification) is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Still working.
    Running,
    /// Finished; its result is ready.
    Done,
    /// Stopped before the end (`error` says why).
    Failed,
}

impl JobState {
    /// The wire word.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
        }
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A compliance check's (or a control's) status. Ordered worst first: a
/// control is as good as its worst check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    /// The system does not meet it.
    Fail,
    /// The feature it needs is not built or not set up.
    NotConfigured,
    /// Met, with something to look at.
    Warn,
    /// Met.
    Pass,
}

impl CheckStatus {
    /// Every status, in the order the dashboard shows them.
    pub const ALL: [CheckStatus; 4] =
        [CheckStatus::Pass, CheckStatus::Warn, CheckStatus::Fail, CheckStatus::NotConfigured];

    /// The wire word.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Fail => "fail",
            CheckStatus::NotConfigured => "not_configured",
            CheckStatus::Warn => "warn",
            CheckStatus::Pass => "pass",
        }
    }
}

impl std::fmt::Display for CheckStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_states_keep_their_wire_words() {
        for s in [JobState::Running, JobState::Done, JobState::Failed] {
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
            assert_eq!(serde_json::from_str::<JobState>(&format!("\"{}\"", s.as_str())).unwrap(), s);
        }
    }

    #[test]
    fn check_statuses_keep_their_wire_words_and_rank_worst_first() {
        for s in CheckStatus::ALL {
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
        use CheckStatus::*;
        assert!(Fail < NotConfigured && NotConfigured < Warn && Warn < Pass);
    }
}
