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
}
