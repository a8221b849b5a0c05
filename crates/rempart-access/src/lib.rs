//! Access requests, pure: resources and their labels, the rules of
//! `rempart.toml`'s `[access]` section, and a request's life computed from
//! its rows. No I/O and no clock: every function is given `now`.
//!
//! A request is never updated. What happens to it is a row (a review, a
//! cancel, a revoke), and [`request::status`] computes its state from the
//! request and those rows at a given instant, so that expiry is a time
//! comparison at check time, never a background job that might be late.
#![forbid(unsafe_code)]

pub mod duration;
pub mod labels;
pub mod request;
pub mod resource;
pub mod rules;
pub mod training;

pub use duration::parse_duration;
pub use labels::{Labels, Selector};
pub use request::{Action, ActionKind, Decision, Grant, Request, Review, State, Status, status};
pub use resource::{ResourceKind, ResourceRef};
pub use rules::{AllowRule, ApprovalRule, RequestError, Rules};
