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
    /// Set up, but nothing in the period shows it in use (no export, say):
    /// not a pass.
    NoEvidence,
    /// Met, with something to look at.
    Warn,
    /// Met.
    Pass,
}

/// How an action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// It did what was asked.
    Success,
    /// It was tried and did not work (a wrong password, a bad request).
    Failure,
    /// It was not allowed.
    Denied,
    /// Something broke.
    Error,
}

/// How much an event matters, lowest first (syslog's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Diagnostics.
    Debug,
    /// Normal operation.
    Info,
    /// Normal but worth noting (admin changes).
    Notice,
    /// Something to look at (failures, denials).
    Warning,
    /// Something failed.
    Error,
    /// Integrity or security at stake.
    Critical,
}

/// The way into Custos an own event came (clients' events name their own
/// channel in `source.channel`, an open set).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// The REST API (the default: a request).
    #[default]
    Api,
    /// The browser UI (pages and server functions).
    Ui,
    /// The command line.
    Cli,
    /// Custos on its own (start, stop, schedules).
    System,
}

/// Implements the wire word, `ALL`, `Display` and `FromStr` of a vocabulary enum.
macro_rules! words {
    ($t:ident { $($v:ident => $w:literal),+ $(,)? }) => {
        impl $t {
            /// Every value, in declaration order.
            pub const ALL: [$t; [$($w),+].len()] = [$($t::$v),+];
            /// Their wire words, in the same order.
            pub const WORDS: [&'static str; [$($w),+].len()] = [$($w),+];

            /// The wire word.
            pub const fn as_str(self) -> &'static str {
                match self { $($t::$v => $w),+ }
            }
        }

        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $t {
            type Err = String;

            /// The wire word; the error lists the allowed ones.
            fn from_str(s: &str) -> Result<$t, String> {
                match s {
                    $($w => Ok($t::$v),)+
                    _ => Err(format!("must be one of: {}", $t::WORDS.join(", "))),
                }
            }
        }
    };
}

words!(Outcome { Success => "success", Failure => "failure", Denied => "denied", Error => "error" });
words!(Severity {
    Debug => "debug",
    Info => "info",
    Notice => "notice",
    Warning => "warning",
    Error => "error",
    Critical => "critical",
});
words!(Channel { Api => "api", Ui => "ui", Cli => "cli", System => "system" });
words!(JobState { Running => "running", Done => "done", Failed => "failed" });
words!(CheckStatus { Fail => "fail", NotConfigured => "not_configured", NoEvidence => "no_evidence", Warn => "warn", Pass => "pass" });

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

    /// serde's names and the macro's words must not drift apart.
    fn round_trips<T>(all: &[T])
    where
        T: Copy + PartialEq + std::fmt::Debug + std::fmt::Display + serde::Serialize + serde::de::DeserializeOwned,
        T: std::str::FromStr<Err = String>,
    {
        for v in all {
            let wire = serde_json::to_string(v).unwrap();
            assert_eq!(wire, format!("\"{v}\""));
            assert_eq!(serde_json::from_str::<T>(&wire).unwrap(), *v);
            assert_eq!(v.to_string().parse::<T>(), Ok(*v));
        }
    }

    #[test]
    fn every_vocabulary_keeps_its_wire_words() {
        round_trips(&Outcome::ALL);
        round_trips(&Severity::ALL);
        round_trips(&Channel::ALL);
        round_trips(&JobState::ALL);
        round_trips(&CheckStatus::ALL);
    }

    #[test]
    fn outcomes_and_severities_keep_their_wire_words() {
        for o in Outcome::ALL {
            assert_eq!(serde_json::to_string(&o).unwrap(), format!("\"{o}\""));
            assert_eq!(o.as_str().parse::<Outcome>(), Ok(o));
        }
        assert!(Severity::ALL.windows(2).all(|w| w[0] < w[1]), "lowest first");
        assert_eq!(
            "loud".parse::<Severity>().unwrap_err(),
            "must be one of: debug, info, notice, warning, error, critical"
        );
    }

    #[test]
    fn check_statuses_keep_their_wire_words_and_rank_worst_first() {
        for s in CheckStatus::ALL {
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
        use CheckStatus::*;
        assert!(Fail < NotConfigured && NotConfigured < NoEvidence && NoEvidence < Warn && Warn < Pass);
    }
}
