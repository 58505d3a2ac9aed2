//! The review of a policy proposal (four eyes): who may decide, how many
//! approvals a kind needs, when a proposal expires, and the one way an
//! author may activate alone (while nobody else can approve).
//!
//! Pure: given a proposal's review so far, a rule and the time, it says
//! what a decision makes of it, or why the decision is refused. The store
//! keeps the state and records every step in the ledger.

use crate::time::DAY_US;

/// How a kind's proposals are reviewed (`policies.<kind>.approvals`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReviewRule {
    /// Approvals needed from people other than the author (0: the author's
    /// proposal takes effect at once; only an admin may set that, and it is
    /// recorded).
    pub approvals: u32,
    /// How long a proposal waits for its approvals (µs).
    pub ttl_us: i64,
}

impl Default for ReviewRule {
    /// One approval by a second person, within seven days.
    fn default() -> ReviewRule {
        ReviewRule { approvals: 1, ttl_us: 7 * DAY_US }
    }
}

/// Where a proposal is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewState {
    /// Waiting for approvals.
    Pending,
    /// Approved: it becomes the next version.
    Approved,
    /// Someone rejected it; it ends there.
    Rejected,
    /// Its time ran out before enough approvals.
    Expired,
}

/// A decision on a proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Approve.
    Approve,
    /// Reject (ends the proposal).
    Reject,
}

/// Why a decision is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReviewError {
    /// The author may not approve (or reject) their own proposal.
    #[error("you cannot review your own proposal")]
    OwnProposal,
    /// Each approver counts once.
    #[error("you have already approved this proposal")]
    AlreadyApproved,
    /// Decided already, or expired.
    #[error("the proposal is no longer pending: it was {0}")]
    NotPending(&'static str),
    /// Only the author may activate alone, and only while nobody else can
    /// approve.
    #[error("{0}")]
    NotAlone(&'static str),
}

/// A proposal's review so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    /// Who proposed (a principal, `user:<id>`).
    pub author: String,
    /// When (µs).
    pub proposed_at_us: i64,
    /// Who approved, in order.
    pub approvers: Vec<String>,
    /// Who rejected, if someone did.
    pub rejected_by: Option<String>,
    /// Activated by its author alone, while nobody else could approve
    /// (shown as such in the trail).
    pub alone: bool,
    state: ReviewState,
}

impl ReviewState {
    /// The word for people and the trail.
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewState::Pending => "pending",
            ReviewState::Approved => "approved",
            ReviewState::Rejected => "rejected",
            ReviewState::Expired => "expired",
        }
    }
}

impl Review {
    /// A new proposal by `author` at `now`. Under a rule needing no
    /// approval it is approved at once.
    pub fn new(author: &str, now: i64, rule: ReviewRule) -> Review {
        let state = if rule.approvals == 0 { ReviewState::Approved } else { ReviewState::Pending };
        Review {
            author: author.to_owned(),
            proposed_at_us: now,
            approvers: Vec::new(),
            rejected_by: None,
            alone: false,
            state,
        }
    }

    /// Its state at `now` (a pending proposal past its time is expired).
    pub fn state(&self, rule: ReviewRule, now: i64) -> ReviewState {
        match self.state {
            ReviewState::Pending if now >= self.proposed_at_us.saturating_add(rule.ttl_us) => ReviewState::Expired,
            s => s,
        }
    }

    fn pending(&self, rule: ReviewRule, now: i64) -> Result<(), ReviewError> {
        match self.state(rule, now) {
            ReviewState::Pending => Ok(()),
            s => Err(ReviewError::NotPending(s.as_str())),
        }
    }

    /// `who` decides at `now`; returns the new state.
    pub fn decide(
        &mut self,
        rule: ReviewRule,
        who: &str,
        decision: Decision,
        now: i64,
    ) -> Result<ReviewState, ReviewError> {
        self.pending(rule, now)?;
        if who == self.author {
            return Err(ReviewError::OwnProposal);
        }
        match decision {
            Decision::Reject => {
                self.rejected_by = Some(who.to_owned());
                self.state = ReviewState::Rejected;
            }
            Decision::Approve => {
                if self.approvers.iter().any(|a| a == who) {
                    return Err(ReviewError::AlreadyApproved);
                }
                self.approvers.push(who.to_owned());
                if self.approvers.len() >= rule.approvals as usize {
                    self.state = ReviewState::Approved;
                }
            }
        }
        Ok(self.state)
    }

    /// The author activates the proposal alone at `now`: allowed only
    /// while the approvals it has and could still get fall short of the
    /// rule (`other_approvers`: those holding `policy:approve` who are not
    /// the author and have not approved it yet), as on a fresh installation
    /// with one admin. Recorded as approved without a second person.
    pub fn activate_alone(
        &mut self,
        rule: ReviewRule,
        who: &str,
        other_approvers: usize,
        now: i64,
    ) -> Result<ReviewState, ReviewError> {
        self.pending(rule, now)?;
        if who != self.author {
            return Err(ReviewError::NotAlone("only the author may activate a proposal alone"));
        }
        if other_approvers + self.approvers.len() >= rule.approvals as usize {
            return Err(ReviewError::NotAlone("enough other people can approve it: ask them"));
        }
        self.alone = true;
        self.state = ReviewState::Approved;
        Ok(self.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_764_000_000_000_000;

    #[test]
    fn a_second_person_approves_and_the_author_cannot() {
        let rule = ReviewRule::default();
        let mut r = Review::new("user:1", T0, rule);
        assert_eq!(r.state(rule, T0), ReviewState::Pending);
        assert_eq!(r.decide(rule, "user:1", Decision::Approve, T0 + 1), Err(ReviewError::OwnProposal));
        assert_eq!(r.decide(rule, "user:1", Decision::Reject, T0 + 1), Err(ReviewError::OwnProposal));
        assert_eq!(r.decide(rule, "user:2", Decision::Approve, T0 + 2), Ok(ReviewState::Approved));
        assert_eq!(r.approvers, ["user:2"]);
        assert_eq!(r.decide(rule, "user:3", Decision::Approve, T0 + 3), Err(ReviewError::NotPending("approved")));
    }

    #[test]
    fn each_approver_counts_once_and_a_rejection_ends_it() {
        let rule = ReviewRule { approvals: 2, ..ReviewRule::default() };
        let mut r = Review::new("user:1", T0, rule);
        assert_eq!(r.decide(rule, "user:2", Decision::Approve, T0), Ok(ReviewState::Pending));
        assert_eq!(r.decide(rule, "user:2", Decision::Approve, T0), Err(ReviewError::AlreadyApproved));
        assert_eq!(r.decide(rule, "user:3", Decision::Reject, T0), Ok(ReviewState::Rejected));
        assert_eq!(r.rejected_by.as_deref(), Some("user:3"));
        assert_eq!(r.decide(rule, "user:4", Decision::Approve, T0), Err(ReviewError::NotPending("rejected")));
    }

    #[test]
    fn proposals_expire() {
        let rule = ReviewRule::default();
        let mut r = Review::new("user:1", T0, rule);
        let late = T0 + 7 * DAY_US;
        assert_eq!(r.state(rule, late - 1), ReviewState::Pending);
        assert_eq!(r.state(rule, late), ReviewState::Expired);
        assert_eq!(r.decide(rule, "user:2", Decision::Approve, late), Err(ReviewError::NotPending("expired")));
        assert_eq!(r.activate_alone(rule, "user:1", 0, late), Err(ReviewError::NotPending("expired")));
    }

    #[test]
    fn the_author_activates_alone_only_while_nobody_else_can_approve() {
        let rule = ReviewRule::default();
        let mut r = Review::new("user:1", T0, rule);
        assert!(matches!(r.activate_alone(rule, "user:2", 0, T0), Err(ReviewError::NotAlone(_))), "not the author");
        assert!(
            matches!(r.activate_alone(rule, "user:1", 1, T0), Err(ReviewError::NotAlone(_))),
            "someone can approve"
        );
        assert_eq!(r.activate_alone(rule, "user:1", 0, T0), Ok(ReviewState::Approved));
        assert!(r.alone, "recorded as approved without a second person");
        // Two approvals needed, one given, nobody else left: alone again.
        let two = ReviewRule { approvals: 2, ..ReviewRule::default() };
        let mut r = Review::new("user:1", T0, two);
        r.decide(two, "user:2", Decision::Approve, T0).unwrap();
        assert!(matches!(r.activate_alone(two, "user:1", 1, T0), Err(ReviewError::NotAlone(_))));
        assert_eq!(r.activate_alone(two, "user:1", 0, T0), Ok(ReviewState::Approved));
    }

    #[test]
    fn no_approval_needed_takes_effect_at_once() {
        let rule = ReviewRule { approvals: 0, ..ReviewRule::default() };
        let r = Review::new("user:1", T0, rule);
        assert_eq!(r.state(rule, T0), ReviewState::Approved);
    }
}
