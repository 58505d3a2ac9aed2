//! Policies admins set (masking, retention, alert rules, SIEM destinations,
//! report schedules): every change is a proposal that is reviewed before it
//! becomes the next immutable version (issue 15).
//!
//! Built so far: the review rules of a proposal ([`review`]), a pure state
//! machine the store will keep the state of. The store, the kinds, the API
//! and the pages come next.

pub mod review;
