//! Security training: which required modules a person lacks at an instant.

/// A module's state for one person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrainingState {
    /// Completed and valid until `expires_at_ms`.
    Current { expires_at_ms: i64 },
    /// The last completion lapsed at `expired_at_ms`.
    Expired { expired_at_ms: i64 },
    /// Never completed (or the module is unknown).
    Missing,
}

/// The state of `module` given its validity (`None`: no such module) and
/// the person's completions (when each was completed).
pub fn module_state(valid_for_ms: Option<i64>, completions: &[i64], now_ms: i64) -> TrainingState {
    let (Some(valid_for), Some(last)) = (valid_for_ms, completions.iter().max()) else {
        return TrainingState::Missing;
    };
    let expires = last.saturating_add(valid_for);
    if now_ms < expires {
        TrainingState::Current {
            expires_at_ms: expires,
        }
    } else {
        TrainingState::Expired {
            expired_at_ms: expires,
        }
    }
}

/// What is missing among `required`, as a sentence for a deny: `None` when
/// everything is current. `state_of` gives each module's state.
pub fn missing(
    required: &[String],
    state_of: impl Fn(&str) -> TrainingState,
    format_time: impl Fn(i64) -> String,
) -> Option<String> {
    let gaps: Vec<String> = required
        .iter()
        .filter_map(|module| match state_of(module) {
            TrainingState::Current { .. } => None,
            TrainingState::Expired { expired_at_ms } => {
                Some(format!("{module} (expired {})", format_time(expired_at_ms)))
            }
            TrainingState::Missing => Some(format!("{module} (never completed)")),
        })
        .collect();
    (!gaps.is_empty()).then(|| format!("training missing: {}", gaps.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_completion_counts() {
        let year = 365 * 86_400_000;
        assert_eq!(module_state(Some(year), &[], 5), TrainingState::Missing);
        assert_eq!(module_state(None, &[1], 5), TrainingState::Missing);
        assert_eq!(
            module_state(Some(year), &[0, 10], 20),
            TrainingState::Current {
                expires_at_ms: 10 + year
            }
        );
        assert_eq!(
            module_state(Some(10), &[0], 10),
            TrainingState::Expired { expired_at_ms: 10 }
        );
        let required = vec!["basics".to_owned(), "phishing".to_owned()];
        let gap = missing(
            &required,
            |m| {
                if m == "basics" {
                    TrainingState::Expired { expired_at_ms: 7 }
                } else {
                    TrainingState::Missing
                }
            },
            |t| t.to_string(),
        );
        assert_eq!(
            gap.as_deref(),
            Some("training missing: basics (expired 7), phishing (never completed)")
        );
        assert_eq!(
            missing(
                &required,
                |_| TrainingState::Current { expires_at_ms: 9 },
                |t| t.to_string()
            ),
            None
        );
    }
}
