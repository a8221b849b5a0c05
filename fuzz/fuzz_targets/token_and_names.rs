//! Presented API tokens, user and machine names, roles and the stored role
//! list, on arbitrary UTF-8 text.
//!
//! Properties: nothing panics; a token that parses keeps its exact text and
//! hashes like a re-parse of `token.expose()`; names keep their exact text;
//! a role list re-parses from its storage form to the same set.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rempart_core::{ApiToken, MachineName, MachineRole, Role, Roles, TokenHash, UserName};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };

    if let Ok(token) = ApiToken::parse(text) {
        assert_eq!(token.expose(), text);
        let again = ApiToken::parse(token.expose()).expect("an accepted token re-parses");
        assert_eq!(token.hash(), again.hash());
        let _ = token.hash().to_hex();
    }

    if let Ok(name) = text.parse::<UserName>() {
        assert_eq!(name.as_str(), text);
        assert_eq!(UserName::try_from(text.to_owned()).ok(), Some(name));
    }
    if let Ok(name) = text.parse::<MachineName>() {
        assert_eq!(name.as_str(), text);
        assert_eq!(MachineName::try_from(text.to_owned()).ok(), Some(name));
    }

    if let Ok(role) = text.parse::<Role>() {
        assert_eq!(role.as_str(), text);
    }
    if let Ok(role) = text.parse::<MachineRole>() {
        assert_eq!(role.as_str(), text);
    }

    if let Ok(roles) = Roles::from_csv(text) {
        let csv = roles.to_csv();
        assert_eq!(Roles::from_csv(&csv).ok(), Some(roles), "{csv:?}");
    }

    // Hashes read back from the store: must not panic on any text.
    let _ = TokenHash::from_hex(text);
});
