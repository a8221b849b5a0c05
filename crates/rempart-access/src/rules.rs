//! The rules a new request must follow (`[access]` in `rempart.toml`).

use regex::Regex;
use rempart_core::{Role, Roles};

use crate::duration::format_duration;
use crate::labels::{Labels, Selector};
use crate::resource::ResourceRef;

/// Who may ask for which resources.
#[derive(Debug, Clone)]
pub struct AllowRule {
    pub roles: Vec<Role>,
    pub selector: Selector,
}

/// How many distinct approvals the resources matching `selector` need.
#[derive(Debug, Clone)]
pub struct ApprovalRule {
    pub selector: Selector,
    pub approvals: u32,
}

#[derive(Debug, Clone)]
pub struct Rules {
    /// The role whose holders review (never their own requests).
    pub reviewer_role: Role,
    pub max_duration_ms: i64,
    pub pending_for_ms: i64,
    pub min_reason_chars: usize,
    /// A reason must contain a match (a ticket reference), when set.
    pub ticket_pattern: Option<Regex>,
    /// Training modules a requester must have current to obtain a grant.
    pub required_training: Vec<String>,
    pub allow: Vec<AllowRule>,
    /// Approvals needed: the highest of the rules matching any resource of
    /// the request, and at least `default_approvals`.
    pub approvals: Vec<ApprovalRule>,
    pub default_approvals: u32,
}

/// Why a request is refused, before anything is stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("name at least one resource (--resource host:NAME or db:NAME)")]
    NoResource,
    #[error("{resource} is named twice")]
    Duplicate { resource: String },
    #[error("access for {asked} is longer than the maximum of {max}")]
    TooLong { asked: String, max: String },
    #[error("the reason is {chars} characters; at least {min} are required")]
    ReasonTooShort { chars: usize, min: usize },
    #[error("the reason must name a ticket matching {pattern}")]
    NoTicket { pattern: String },
    #[error("your roles ({roles}) may not request {resource}")]
    NotAllowed { resource: String, roles: String },
}

impl Rules {
    /// Checks a new request; the approvals it will need.
    pub fn check_request(
        &self,
        roles: &Roles,
        resources: &[(ResourceRef, Labels)],
        reason: &str,
        duration_ms: i64,
    ) -> Result<u32, RequestError> {
        if resources.is_empty() {
            return Err(RequestError::NoResource);
        }
        for (i, (resource, _)) in resources.iter().enumerate() {
            if resources[..i].iter().any(|(r, _)| r == resource) {
                return Err(RequestError::Duplicate {
                    resource: resource.to_string(),
                });
            }
        }
        if duration_ms > self.max_duration_ms {
            return Err(RequestError::TooLong {
                asked: format_duration(duration_ms),
                max: format_duration(self.max_duration_ms),
            });
        }
        let chars = reason.trim().chars().count();
        if chars < self.min_reason_chars {
            return Err(RequestError::ReasonTooShort {
                chars,
                min: self.min_reason_chars,
            });
        }
        if let Some(pattern) = &self.ticket_pattern
            && !pattern.is_match(reason)
        {
            return Err(RequestError::NoTicket {
                pattern: pattern.as_str().to_owned(),
            });
        }
        for (resource, labels) in resources {
            let allowed = self.allow.iter().any(|rule| {
                rule.selector.matches(labels) && rule.roles.iter().any(|r| roles.contains(*r))
            });
            if !allowed {
                return Err(RequestError::NotAllowed {
                    resource: resource.to_string(),
                    roles: roles.to_csv(),
                });
            }
        }
        let needed = resources
            .iter()
            .flat_map(|(_, labels)| {
                self.approvals
                    .iter()
                    .filter(|rule| rule.selector.matches(labels))
                    .map(|rule| rule.approvals)
            })
            .max()
            .unwrap_or(0)
            .max(self.default_approvals)
            .max(1);
        Ok(needed)
    }

    /// Whether someone with `roles` may review requests (not their own).
    pub fn may_review(&self, roles: &Roles) -> bool {
        roles.contains(self.reviewer_role)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn rules() -> Rules {
        Rules {
            reviewer_role: Role::Security,
            max_duration_ms: 8 * 3_600_000,
            pending_for_ms: 24 * 3_600_000,
            min_reason_chars: 10,
            ticket_pattern: Some(Regex::new("[A-Z]+-[0-9]+").expect("regex")),
            required_training: vec![],
            allow: vec![AllowRule {
                roles: vec![Role::Engineer],
                selector: Selector(labels(&[("env", "prod")])),
            }],
            approvals: vec![ApprovalRule {
                selector: Selector(labels(&[("data", "pii")])),
                approvals: 2,
            }],
            default_approvals: 1,
        }
    }

    #[test]
    fn requests_follow_the_rules() {
        let rules = rules();
        let engineer = Roles::new([Role::Engineer]).expect("roles");
        let db1 = (
            "host:db-1".parse().expect("ref"),
            labels(&[("env", "prod"), ("data", "pii")]),
        );
        let web = (
            "host:web-1".parse().expect("ref"),
            labels(&[("env", "prod")]),
        );
        let staging = (
            "host:st-1".parse().expect("ref"),
            labels(&[("env", "staging")]),
        );
        let reason = "INC-42 the replica is stuck";
        assert_eq!(
            rules.check_request(&engineer, std::slice::from_ref(&web), reason, 3_600_000),
            Ok(1)
        );
        assert_eq!(
            rules.check_request(&engineer, &[web.clone(), db1.clone()], reason, 3_600_000),
            Ok(2),
            "the strictest resource sets the threshold"
        );
        assert!(matches!(
            rules.check_request(&engineer, &[], reason, 1),
            Err(RequestError::NoResource)
        ));
        assert!(matches!(
            rules.check_request(&engineer, &[web.clone(), web.clone()], reason, 1),
            Err(RequestError::Duplicate { .. })
        ));
        assert!(matches!(
            rules.check_request(&engineer, std::slice::from_ref(&web), reason, 9 * 3_600_000),
            Err(RequestError::TooLong { .. })
        ));
        assert!(matches!(
            rules.check_request(&engineer, std::slice::from_ref(&web), "INC-1", 1),
            Err(RequestError::ReasonTooShort { chars: 5, min: 10 })
        ));
        assert!(matches!(
            rules.check_request(
                &engineer,
                std::slice::from_ref(&web),
                "no ticket named here",
                1
            ),
            Err(RequestError::NoTicket { .. })
        ));
        assert!(matches!(
            rules.check_request(&engineer, &[staging], reason, 1),
            Err(RequestError::NotAllowed { .. })
        ));
        let security = Roles::new([Role::Security]).expect("roles");
        assert!(matches!(
            rules.check_request(&security, &[web], reason, 1),
            Err(RequestError::NotAllowed { .. })
        ));
        assert!(rules.may_review(&security));
        assert!(!rules.may_review(&engineer));
    }
}
