use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::Secret;

const TOKEN_PREFIX: &str = "rpt_";
const TOKEN_BYTES: usize = 32;

/// Why a presented token was refused before any lookup.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("a Rempart token starts with \"rpt_\"")]
    MissingPrefix,
    #[error("a Rempart token has 43 base64url characters after its prefix")]
    Malformed,
}

/// An API token: 256 random bits, shown to its owner once.
///
/// The prefix `rpt_` lets secret scanners recognise a leaked token. Tokens
/// are high-entropy, so a plain SHA-256 is the right way to store them: a
/// slow password hash would only add latency to every request.
pub struct ApiToken(Secret<String>);

impl ApiToken {
    pub fn generate() -> Self {
        let mut bytes = [0u8; TOKEN_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        ApiToken(Secret::new(format!(
            "{TOKEN_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(bytes)
        )))
    }

    /// Checks the shape of a presented token, so that junk is refused before
    /// it reaches the store.
    pub fn parse(presented: &str) -> Result<Self, TokenError> {
        let body = presented
            .strip_prefix(TOKEN_PREFIX)
            .ok_or(TokenError::MissingPrefix)?;
        match URL_SAFE_NO_PAD.decode(body) {
            Ok(bytes) if bytes.len() == TOKEN_BYTES => {
                Ok(ApiToken(Secret::new(presented.to_owned())))
            }
            _ => Err(TokenError::Malformed),
        }
    }

    pub fn expose(&self) -> &str {
        self.0.expose()
    }

    pub fn hash(&self) -> TokenHash {
        TokenHash(Sha256::digest(self.0.expose().as_bytes()).into())
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiToken(<secret>)")
    }
}

/// The SHA-256 of a token: the only form in which the store keeps it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn from_hex(hex: &str) -> Option<Self> {
        // Only plain hex digits: `from_str_radix` alone would also take "+f".
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(TokenHash(out))
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenHash({})", &self.to_hex()[..12])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_parse_and_differ() {
        let a = ApiToken::generate();
        let b = ApiToken::generate();
        assert_ne!(a.expose(), b.expose());
        assert_eq!(a.expose().len(), 4 + 43);
        assert_eq!(ApiToken::parse(a.expose()).unwrap().hash(), a.hash());
    }

    #[test]
    fn malformed_tokens_are_refused() {
        assert_eq!(ApiToken::parse("").unwrap_err(), TokenError::MissingPrefix);
        assert_eq!(
            ApiToken::parse("Bearer x").unwrap_err(),
            TokenError::MissingPrefix
        );
        assert_eq!(ApiToken::parse("rpt_").unwrap_err(), TokenError::Malformed);
        assert_eq!(
            ApiToken::parse("rpt_!!!").unwrap_err(),
            TokenError::Malformed
        );
        let short = format!("rpt_{}", "A".repeat(42));
        assert_eq!(ApiToken::parse(&short).unwrap_err(), TokenError::Malformed);
    }

    #[test]
    fn hash_hex_round_trips() {
        let hash = ApiToken::generate().hash();
        assert_eq!(TokenHash::from_hex(&hash.to_hex()), Some(hash));
        assert_eq!(TokenHash::from_hex("zz"), None);
        assert_eq!(TokenHash::from_hex(&"+f".repeat(32)), None);
        assert_eq!(TokenHash::from_hex(&"é".repeat(32)), None);
    }

    #[test]
    fn debug_never_shows_the_token() {
        let token = ApiToken::generate();
        assert!(!format!("{token:?}").contains(&token.expose()[4..]));
    }
}
