//! A request's life, computed from the request and its rows at an instant.
//!
//! ```text
//! pending ──approvals reach the threshold──► approved ──end──► expired
//!    │  │                                      └──revoke──► revoked
//!    │  └──one deny──► denied
//!    ├──requester cancels──► cancelled
//!    └──nobody decides before pending_until──► expired
//! ```
//!
//! The server writes a row only when the transition is allowed at that
//! moment (under a lock on the request); this module decides what the rows
//! mean, and ignores any row that could not have been allowed (a review by
//! the requester, a second review by one reviewer, anything after the
//! decision), so that no stored row can widen a grant.

use std::collections::BTreeSet;

use crate::resource::ResourceRef;

/// An access request as it was made. Never changed after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub id: String,
    pub requester: String,
    pub resources: Vec<ResourceRef>,
    pub reason: String,
    pub created_at_ms: i64,
    /// When the access should start; `None`: as soon as approved.
    pub start_ms: Option<i64>,
    pub duration_ms: i64,
    /// Distinct approvals needed (from the rules, when it was made).
    pub approvals_needed: u32,
    /// Undecided at this instant, it expires.
    pub pending_until_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Deny,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Approve => "approve",
            Decision::Deny => "deny",
        }
    }
}

/// A reviewer's decision, in the order the store committed them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    pub reviewer: String,
    pub decision: Decision,
    pub comment: String,
    pub at_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionKind {
    /// The requester withdraws a pending request.
    Cancel,
    /// A reviewer (or an admin) ends an approved grant early.
    Revoke,
}

impl ActionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Cancel => "cancel",
            ActionKind::Revoke => "revoke",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    pub kind: ActionKind,
    pub actor: String,
    pub reason: String,
    pub at_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    Pending,
    Approved,
    Denied,
    Expired,
    Revoked,
    Cancelled,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Approved => "approved",
            State::Denied => "denied",
            State::Expired => "expired",
            State::Revoked => "revoked",
            State::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<State> {
        [
            State::Pending,
            State::Approved,
            State::Denied,
            State::Expired,
            State::Revoked,
            State::Cancelled,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// The access an approved request opens: `[start_ms, end_ms)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub start_ms: i64,
    /// The end, early if revoked.
    pub end_ms: i64,
}

impl Grant {
    pub fn is_active(&self, now_ms: i64) -> bool {
        self.start_ms <= now_ms && now_ms < self.end_ms
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub state: State,
    /// Distinct approvals counted.
    pub approvals: u32,
    /// When the threshold was met, or the deny came.
    pub decided_at_ms: Option<i64>,
    /// Present once approved (also after it ended).
    pub grant: Option<Grant>,
    /// When it stopped being pending or active (expired, revoked, ...).
    pub ended_at_ms: Option<i64>,
}

/// The state of `request` at `now_ms`, from its reviews and actions (each in
/// the order they were committed).
pub fn status(request: &Request, reviews: &[Review], actions: &[Action], now_ms: i64) -> Status {
    let cancel = actions
        .iter()
        .filter(|a| a.kind == ActionKind::Cancel && a.actor == request.requester)
        .map(|a| a.at_ms)
        .min();
    // The decision: the first deny, or the review that met the threshold,
    // among the reviews that could count.
    let mut approvers = BTreeSet::new();
    let mut decision: Option<(Decision, i64)> = None;
    for review in reviews {
        let too_late = review.at_ms >= request.pending_until_ms
            || cancel.is_some_and(|cancelled| review.at_ms > cancelled);
        if too_late || review.reviewer == request.requester {
            continue;
        }
        match review.decision {
            Decision::Deny => {
                decision = Some((Decision::Deny, review.at_ms));
                break;
            }
            Decision::Approve => {
                approvers.insert(review.reviewer.as_str());
                if approvers.len() as u32 >= request.approvals_needed.max(1) {
                    decision = Some((Decision::Approve, review.at_ms));
                    break;
                }
            }
        }
    }
    let approvals = approvers.len() as u32;
    let ended = |state, at: i64, grant| Status {
        state,
        approvals,
        decided_at_ms: decision.map(|(_, at)| at),
        grant,
        ended_at_ms: Some(at),
    };
    match decision {
        None => match cancel {
            Some(at) => ended(State::Cancelled, at, None),
            None if now_ms >= request.pending_until_ms => {
                ended(State::Expired, request.pending_until_ms, None)
            }
            None => Status {
                state: State::Pending,
                approvals,
                decided_at_ms: None,
                grant: None,
                ended_at_ms: None,
            },
        },
        Some((Decision::Deny, at)) => ended(State::Denied, at, None),
        Some((Decision::Approve, approved_at)) => {
            // Never before the approval, never past the requested end.
            let nominal_start = request.start_ms.unwrap_or(approved_at);
            let start_ms = nominal_start.max(approved_at);
            let end_ms = nominal_start.saturating_add(request.duration_ms);
            let revoked = actions
                .iter()
                .filter(|a| a.kind == ActionKind::Revoke && a.at_ms >= approved_at)
                .map(|a| a.at_ms)
                .min();
            let effective_end = revoked.map_or(end_ms, |r| r.min(end_ms));
            let grant = Grant {
                start_ms,
                end_ms: effective_end.max(start_ms),
            };
            // A revocation counts from the moment it is stored, whatever the
            // clock of the node that checks says (nodes' clocks differ).
            match revoked {
                Some(at) if at < end_ms => ended(State::Revoked, at, Some(grant)),
                _ if now_ms >= end_ms || start_ms >= end_ms => {
                    ended(State::Expired, end_ms, Some(grant))
                }
                _ => Status {
                    state: State::Approved,
                    approvals,
                    decided_at_ms: Some(approved_at),
                    grant: Some(grant),
                    ended_at_ms: None,
                },
            }
        }
    }
}

/// Why a grant check said no, or which grant said yes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckOutcome {
    Allow { request: String, end_ms: i64 },
    Deny(DenyReason),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DenyReason {
    NoApprovedRequest,
    StartsAt(i64),
    ExpiredAt(i64),
    RevokedAt(i64),
}

/// Whether any of `requests` (with their statuses at `now_ms`, all naming the
/// resource asked about) opens it now; the grant that ends last wins.
pub fn check<'a>(
    requests: impl IntoIterator<Item = (&'a Request, &'a Status)>,
    now_ms: i64,
) -> CheckOutcome {
    let mut best: Option<(&Request, Grant)> = None;
    let mut starts: Option<i64> = None;
    let mut expired: Option<i64> = None;
    let mut revoked: Option<i64> = None;
    for (request, status) in requests {
        let Some(grant) = status.grant else { continue };
        match status.state {
            State::Approved if grant.is_active(now_ms) => {
                let ends_later = best.is_none_or(|(_, g)| grant.end_ms > g.end_ms);
                best = if ends_later {
                    Some((request, grant))
                } else {
                    best
                };
            }
            State::Approved => {
                starts = Some(starts.map_or(grant.start_ms, |s| s.min(grant.start_ms)))
            }
            State::Revoked => revoked = revoked.max(status.ended_at_ms),
            State::Expired => expired = expired.max(status.ended_at_ms),
            _ => {}
        }
    }
    match best {
        Some((request, grant)) => CheckOutcome::Allow {
            request: request.id.clone(),
            end_ms: grant.end_ms,
        },
        None => CheckOutcome::Deny(match (starts, revoked, expired) {
            (Some(at), _, _) => DenyReason::StartsAt(at),
            (None, Some(r), Some(e)) if e > r => DenyReason::ExpiredAt(e),
            (None, Some(at), _) => DenyReason::RevokedAt(at),
            (None, None, Some(at)) => DenyReason::ExpiredAt(at),
            (None, None, None) => DenyReason::NoApprovedRequest,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    fn request(needed: u32, start: Option<i64>) -> Request {
        Request {
            id: "r1".into(),
            requester: "alice".into(),
            resources: vec!["host:db-1".parse().expect("resource")],
            reason: "INC-1 restart the replica".into(),
            created_at_ms: 0,
            start_ms: start,
            duration_ms: 2 * H,
            approvals_needed: needed,
            pending_until_ms: 24 * H,
        }
    }

    fn review(who: &str, decision: Decision, at: i64) -> Review {
        Review {
            reviewer: who.into(),
            decision,
            comment: String::new(),
            at_ms: at,
        }
    }

    fn action(kind: ActionKind, who: &str, at: i64) -> Action {
        Action {
            kind,
            actor: who.into(),
            reason: String::new(),
            at_ms: at,
        }
    }

    #[test]
    fn one_approval_opens_a_grant_for_its_duration() {
        let r = request(1, None);
        let reviews = [review("sam", Decision::Approve, H)];
        let s = status(&r, &reviews, &[], H + 1);
        assert_eq!(s.state, State::Approved);
        assert_eq!(
            s.grant,
            Some(Grant {
                start_ms: H,
                end_ms: 3 * H
            })
        );
        let later = status(&r, &reviews, &[], 3 * H);
        assert_eq!(
            (later.state, later.ended_at_ms),
            (State::Expired, Some(3 * H))
        );
    }

    #[test]
    fn the_requester_and_repeated_reviewers_do_not_count() {
        let r = request(2, None);
        let reviews = [
            review("alice", Decision::Approve, 1),
            review("sam", Decision::Approve, 2),
            review("sam", Decision::Approve, 3),
        ];
        let s = status(&r, &reviews, &[], 10);
        assert_eq!((s.state, s.approvals), (State::Pending, 1));
        let more = [reviews.to_vec(), vec![review("kim", Decision::Approve, 4)]].concat();
        let s = status(&r, &more, &[], 10);
        assert_eq!((s.state, s.decided_at_ms), (State::Approved, Some(4)));
    }

    #[test]
    fn one_deny_ends_it_and_nothing_after_a_decision_counts() {
        let r = request(2, None);
        let reviews = [
            review("sam", Decision::Approve, 1),
            review("kim", Decision::Deny, 2),
            review("lee", Decision::Approve, 3),
        ];
        let s = status(&r, &reviews, &[], 10);
        assert_eq!((s.state, s.grant), (State::Denied, None));
        // A deny after the approval changes nothing: the decision is final.
        let r1 = request(1, None);
        let s = status(
            &r1,
            &[
                review("sam", Decision::Approve, 1),
                review("kim", Decision::Deny, 2),
            ],
            &[],
            10,
        );
        assert_eq!(s.state, State::Approved);
    }

    #[test]
    fn a_scheduled_grant_starts_on_time_and_never_runs_past_its_end() {
        let r = request(1, Some(5 * H));
        let early = [review("sam", Decision::Approve, H)];
        let s = status(&r, &early, &[], 2 * H);
        assert_eq!(s.state, State::Approved);
        let grant = s.grant.expect("grant");
        assert!(!grant.is_active(2 * H));
        assert!(grant.is_active(5 * H));
        assert_eq!(grant.end_ms, 7 * H);
        // Approved late, after the requested start: it ends at the same time.
        let late = [review("sam", Decision::Approve, 6 * H)];
        let grant = status(&r, &late, &[], 6 * H).grant.expect("grant");
        assert_eq!((grant.start_ms, grant.end_ms), (6 * H, 7 * H));
    }

    #[test]
    fn pending_requests_expire_and_late_reviews_do_not_revive_them() {
        let r = request(1, None);
        let s = status(&r, &[], &[], 24 * H);
        assert_eq!((s.state, s.ended_at_ms), (State::Expired, Some(24 * H)));
        let late = [review("sam", Decision::Approve, 25 * H)];
        assert_eq!(status(&r, &late, &[], 25 * H).state, State::Expired);
    }

    #[test]
    fn cancel_and_revoke() {
        let r = request(1, None);
        let cancelled = [action(ActionKind::Cancel, "alice", 5)];
        let s = status(&r, &[review("sam", Decision::Approve, 6)], &cancelled, 10);
        assert_eq!(
            s.state,
            State::Cancelled,
            "a review after the cancel is void"
        );
        // Only the requester cancels.
        let by_other = [action(ActionKind::Cancel, "sam", 5)];
        assert_eq!(status(&r, &[], &by_other, 10).state, State::Pending);

        let reviews = [review("sam", Decision::Approve, H)];
        let revoked = [action(ActionKind::Revoke, "sam", 2 * H)];
        let s = status(&r, &reviews, &revoked, 2 * H);
        assert_eq!(s.state, State::Revoked);
        assert_eq!(s.grant.map(|g| g.end_ms), Some(2 * H));
        // Stored, it counts at once, even where the checking node's clock
        // is behind the revoking node's.
        let s = status(&r, &reviews, &revoked, 2 * H - 1);
        assert_eq!(s.state, State::Revoked);
        // A revoke before the approval is not one.
        let early = [action(ActionKind::Revoke, "sam", 1)];
        assert_eq!(status(&r, &reviews, &early, H + 1).state, State::Approved);
    }

    #[test]
    fn checks_say_why_not() {
        let r = request(1, None);
        let approved = status(&r, &[review("sam", Decision::Approve, H)], &[], 2 * H);
        assert_eq!(
            check([(&r, &approved)], 2 * H),
            CheckOutcome::Allow {
                request: "r1".into(),
                end_ms: 3 * H
            }
        );
        let expired = status(&r, &[review("sam", Decision::Approve, H)], &[], 4 * H);
        assert_eq!(
            check([(&r, &expired)], 4 * H),
            CheckOutcome::Deny(DenyReason::ExpiredAt(3 * H))
        );
        let pending = status(&r, &[], &[], 1);
        assert_eq!(
            check([(&r, &pending)], 1),
            CheckOutcome::Deny(DenyReason::NoApprovedRequest)
        );
        let scheduled_request = request(1, Some(5 * H));
        let scheduled = status(
            &scheduled_request,
            &[review("sam", Decision::Approve, H)],
            &[],
            2 * H,
        );
        assert_eq!(
            check([(&scheduled_request, &scheduled)], 2 * H),
            CheckOutcome::Deny(DenyReason::StartsAt(5 * H))
        );
    }
}
