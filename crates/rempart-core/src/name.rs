use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a user or machine name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("a name cannot be empty")]
    Empty,
    #[error("a name is at most {max} characters, this one has {len}")]
    TooLong { len: usize, max: usize },
    #[error("a name starts with a lowercase letter or a digit, not {found:?}")]
    BadStart { found: char },
    #[error(
        "a name holds only lowercase letters, digits, '.', '_' and '-'; {found:?} is not allowed"
    )]
    BadCharacter { found: char },
}

const MAX_NAME_LEN: usize = 64;

/// Names appear in SSH principals, PostgreSQL roles, certificate subjects and
/// log lines, so they are kept to a charset that is safe in all of them.
fn check_name(name: &str) -> Result<(), NameError> {
    let mut chars = name.chars();
    let first = chars.next().ok_or(NameError::Empty)?;
    let len = name.chars().count();
    if len > MAX_NAME_LEN {
        return Err(NameError::TooLong {
            len,
            max: MAX_NAME_LEN,
        });
    }
    if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
        return Err(NameError::BadStart { found: first });
    }
    match chars.find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(*c))) {
        Some(found) => Err(NameError::BadCharacter { found }),
        None => Ok(()),
    }
}

macro_rules! validated_name {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                check_name(s)?;
                Ok($name(s.to_owned()))
            }
        }

        impl TryFrom<String> for $name {
            type Error = NameError;
            fn try_from(s: String) -> Result<Self, NameError> {
                check_name(&s)?;
                Ok($name(s))
            }
        }

        impl From<$name> for String {
            fn from(name: $name) -> String {
                name.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .pattern(Some("^[a-z0-9][a-z0-9._-]{0,63}$"))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

validated_name!(
    /// The name of a person's account.
    UserName
);
validated_name!(
    /// The name of a machine identity (a bastion, an agent, a gateway).
    MachineName
);

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expect: Result<(), NameError>) {
        assert_eq!(
            input.parse::<UserName>().map(|_| ()),
            expect,
            "input {input:?}"
        );
        assert_eq!(
            input.parse::<MachineName>().map(|_| ()),
            expect,
            "input {input:?}"
        );
    }

    #[test]
    fn names() {
        check("alice", Ok(()));
        check("bastion-1", Ok(()));
        check("a.b_c-9", Ok(()));
        check("9lives", Ok(()));
        check("", Err(NameError::Empty));
        check("Alice", Err(NameError::BadStart { found: 'A' }));
        check("-x", Err(NameError::BadStart { found: '-' }));
        check("al ice", Err(NameError::BadCharacter { found: ' ' }));
        check("a/b", Err(NameError::BadCharacter { found: '/' }));
        check("é", Err(NameError::BadStart { found: 'é' }));
        check("a\u{0}", Err(NameError::BadCharacter { found: '\u{0}' }));
        check(&"a".repeat(64), Ok(()));
        check(
            &"a".repeat(65),
            Err(NameError::TooLong { len: 65, max: 64 }),
        );
    }

    #[test]
    fn serde_refuses_invalid_names() {
        assert!(serde_json::from_str::<UserName>("\"Root\"").is_err());
        let name: UserName = serde_json::from_str("\"root\"").unwrap();
        assert_eq!(serde_json::to_string(&name).unwrap(), "\"root\"");
    }
}
