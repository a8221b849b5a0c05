//! The domain vocabulary every other Rempart crate speaks.
//!
//! This crate holds the types that name who acts and with what authority:
//! [`UserName`] and [`MachineName`] (validated identifiers), [`Role`] and
//! [`MachineRole`], the [`Identity`] a request was authenticated as, API
//! tokens ([`ApiToken`] and the only form the store keeps, [`TokenHash`]),
//! and [`Secret`], the wrapper that keeps secrets out of logs.
//!
//! ```
//! use rempart_core::{ApiToken, Role, UserName};
//!
//! let name: UserName = "alice".parse().unwrap();
//! let token = ApiToken::generate();
//! // The store keeps only the hash; the token itself is shown once.
//! let hash = token.hash();
//! assert_eq!(hash, ApiToken::parse(token.expose()).unwrap().hash());
//! assert_eq!("security".parse::<Role>().unwrap(), Role::Security);
//! assert_eq!(name.as_str(), "alice");
//! ```
//!
//! Architecture invariant: this crate does no I/O and knows nothing of HTTP,
//! SQL or TLS.
#![forbid(unsafe_code)]

mod identity;
mod name;
mod secret;
mod token;

pub use identity::{Identity, MachineRole, Role, Roles};
pub use name::{MachineName, NameError, UserName};
pub use secret::Secret;
pub use token::{ApiToken, TokenError, TokenHash};
