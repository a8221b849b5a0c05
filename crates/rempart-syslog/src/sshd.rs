//! What sshd says about logins, as `ssh.auth` fields.

/// A login attempt reported by sshd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    pub accepted: bool,
    pub user: String,
    pub invalid_user: bool,
    pub source_ip: String,
    pub source_port: Option<u16>,
    /// `password`, `publickey`, `keyboard-interactive/pam`, `none`.
    pub method: Option<String>,
}

/// Recognises `Accepted METHOD for USER from IP port N ...`, `Failed METHOD
/// for [invalid user ]USER from IP port N ...` and `Invalid user USER from IP
/// [port N]`; `None` for anything else.
pub fn recognise(msg: &str) -> Option<Login> {
    if let Some(rest) = msg.strip_prefix("Invalid user ") {
        let (user, rest) = rest.rsplit_once(" from ")?;
        let (ip, port) = address(rest)?;
        return Some(Login {
            accepted: false,
            user: user.to_owned(),
            invalid_user: true,
            source_ip: ip,
            source_port: port,
            method: None,
        });
    }
    let (accepted, rest) = match (msg.strip_prefix("Accepted "), msg.strip_prefix("Failed ")) {
        (Some(rest), _) => (true, rest),
        (_, Some(rest)) => (false, rest),
        _ => return None,
    };
    let (method, rest) = rest.split_once(" for ")?;
    if method.contains(' ') {
        return None;
    }
    let (invalid_user, rest) = match rest.strip_prefix("invalid user ") {
        Some(rest) => (true, rest),
        None => (false, rest),
    };
    let (user, rest) = rest.rsplit_once(" from ")?;
    let (ip, port) = address(rest)?;
    Some(Login {
        accepted,
        user: user.to_owned(),
        invalid_user,
        source_ip: ip,
        source_port: port,
        method: Some(method.to_owned()),
    })
}

/// `IP port N ssh2` or `IP`: the address and the port.
fn address(text: &str) -> Option<(String, Option<u16>)> {
    let mut words = text.split(' ');
    let ip = words.next()?;
    if ip.parse::<std::net::IpAddr>().is_err() {
        return None;
    }
    let port = match (words.next(), words.next()) {
        (Some("port"), Some(port)) => Some(port.parse().ok()?),
        _ => None,
    };
    Some((ip.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins() {
        let a = recognise(
            "Accepted publickey for alice from 10.0.0.1 port 5000 ssh2: ED25519 SHA256:x",
        )
        .unwrap();
        assert!(a.accepted && !a.invalid_user);
        assert_eq!(
            (a.user.as_str(), a.source_ip.as_str(), a.source_port),
            ("alice", "10.0.0.1", Some(5000))
        );
        assert_eq!(a.method.as_deref(), Some("publickey"));
        let f = recognise("Failed password for invalid user admin from ::1 port 22 ssh2").unwrap();
        assert!(!f.accepted && f.invalid_user);
        assert_eq!(f.source_ip, "::1");
        let i = recognise("Invalid user test9 from 52.80.34.196").unwrap();
        assert_eq!((i.user.as_str(), i.source_port), ("test9", None));
        // A user name with " from " in it still finds the address at the end.
        let odd = recognise("Failed password for a from b from 1.2.3.4 port 1 ssh2").unwrap();
        assert_eq!(odd.user, "a from b");
        assert_eq!(recognise("Connection closed by 1.2.3.4 [preauth]"), None);
        assert_eq!(
            recognise("Failed password for root from nowhere port 1"),
            None
        );
    }
}
