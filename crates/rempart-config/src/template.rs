//! The defaults, and the commented file `rempart init` writes from them.

use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use rempart_core::Role;

use crate::access::{
    AccessSettings, AllowSetting, DurationSetting, LabelsSetting, PatternSetting, ThresholdSetting,
    WebhookSetting,
};
use crate::values::{Bounded, ContactUri, LogOrigin, OptionalAddr, ServerName, StoreSetting};
use crate::{
    Config, DatabaseSettings, HttpSettings, SecurityTxt, SshSettings, SyslogSettings, TlsSettings,
    TokenSettings, WellLogSettings,
};

const LISTEN: &str = "127.0.0.1:8443";
const SERVER_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];
const SERVER_CERT_DAYS: i64 = 365;
const MACHINE_CERT_DAYS: i64 = 90;
const MAX_BODY_BYTES: i64 = 1_048_576;
const REQUEST_TIMEOUT_SECS: i64 = 30;
const HSTS_MAX_AGE_SECS: i64 = 63_072_000;
const MAX_CONNECTIONS: i64 = 4096;
const TOKEN_TTL_DAYS: i64 = 0;
/// `rempart init` replaces it with a name unique to the deployment.
pub const DEFAULT_ORIGIN: &str = "rempart.local/welllog";
const CHECKPOINT_INTERVAL_MS: i64 = 500;
const MAX_BATCH_BYTES: i64 = 16 << 20;
const INGEST_MEMORY_BYTES: i64 = 128 << 20;

const MAX_ACCESS: &str = "8h";
const PENDING_FOR: &str = "24h";
const MIN_REASON_CHARS: i64 = 20;
const USER_CERTIFICATE_MAX: &str = "8h";
const SESSION_CERTIFICATE: &str = "5m";

pub(crate) fn default_ssh() -> SshSettings {
    let duration = |text: &str| {
        DurationSetting::try_from(text.to_owned())
            .unwrap_or_else(|_| unreachable!("the default durations parse"))
    };
    SshSettings {
        user_certificate_max: duration(USER_CERTIFICATE_MAX),
        session_certificate: duration(SESSION_CERTIFICATE),
    }
}

const DATABASE_CERTIFICATE_MAX: &str = "8h";

pub(crate) fn default_database() -> DatabaseSettings {
    DatabaseSettings {
        user_certificate_max: DurationSetting::try_from(DATABASE_CERTIFICATE_MAX.to_owned())
            .unwrap_or_else(|_| unreachable!("the default duration parses")),
    }
}

pub(crate) fn default_access() -> AccessSettings {
    let duration = |text: &str| {
        DurationSetting::try_from(text.to_owned())
            .unwrap_or_else(|_| unreachable!("the default durations parse"))
    };
    AccessSettings {
        reviewer_role: Role::Security,
        max_duration: duration(MAX_ACCESS),
        pending_for: duration(PENDING_FOR),
        min_reason_chars: Bounded::new_default(MIN_REASON_CHARS),
        ticket_pattern: PatternSetting::try_from(String::new())
            .unwrap_or_else(|_| unreachable!("no pattern is valid")),
        required_training: Vec::new(),
        approvals: Bounded::new_default(1),
        webhook: WebhookSetting::try_from(String::new())
            .unwrap_or_else(|_| unreachable!("no webhook is valid")),
        allow: vec![AllowSetting {
            roles: vec![Role::Engineer],
            labels: LabelsSetting::default(),
        }],
        threshold: vec![ThresholdSetting {
            labels: LabelsSetting([("data".to_owned(), "pii".to_owned())].into()),
            approvals: Bounded::new_default(2),
        }],
    }
}

pub(crate) fn default_ingest_memory_bytes() -> Bounded<1_048_576, 68_719_476_736> {
    Bounded::new_default(INGEST_MEMORY_BYTES)
}
const RETENTION_DAYS: i64 = 0;
const CONTACT: &str = "mailto:security@example.com";
const LANGUAGES: [&str; 1] = ["en"];

/// security.txt expires a year after `init`, as RFC 9116 §2.5.5 recommends.
fn expires(now: OffsetDateTime) -> OffsetDateTime {
    (now + Duration::days(365))
        .replace_nanosecond(0)
        .unwrap_or(now)
}

pub(crate) fn defaults(now: OffsetDateTime) -> Config {
    let owned = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    Config {
        listen: LISTEN
            .parse()
            .unwrap_or_else(|_| unreachable!("LISTEN is a socket address")),
        server_names: owned(&SERVER_NAMES)
            .into_iter()
            .filter_map(|n| ServerName::try_from(n).ok())
            .collect(),
        store: StoreSetting::Sqlite,
        tls: TlsSettings {
            server_cert_days: Bounded::new_default(SERVER_CERT_DAYS),
            machine_cert_days: Bounded::new_default(MACHINE_CERT_DAYS),
        },
        http: HttpSettings {
            max_body_bytes: Bounded::new_default(MAX_BODY_BYTES),
            request_timeout_secs: Bounded::new_default(REQUEST_TIMEOUT_SECS),
            hsts_max_age_secs: Bounded::new_default(HSTS_MAX_AGE_SECS),
            max_connections: Bounded::new_default(MAX_CONNECTIONS),
        },
        tokens: TokenSettings {
            ttl_days: Bounded::new_default(TOKEN_TTL_DAYS),
        },
        welllog: WellLogSettings {
            origin: LogOrigin::try_from(DEFAULT_ORIGIN.to_owned())
                .unwrap_or_else(|_| unreachable!("the default origin is valid")),
            checkpoint_interval_ms: Bounded::new_default(CHECKPOINT_INTERVAL_MS),
            max_batch_bytes: Bounded::new_default(MAX_BATCH_BYTES),
            ingest_memory_bytes: default_ingest_memory_bytes(),
            retention_days: Bounded::new_default(RETENTION_DAYS),
        },
        syslog: SyslogSettings {
            tcp: OptionalAddr(None),
            tls: OptionalAddr(None),
            udp: OptionalAddr(None),
        },
        access: default_access(),
        ssh: default_ssh(),
        database: default_database(),
        security_txt: SecurityTxt {
            contact: ContactUri::try_from(CONTACT.to_owned())
                .into_iter()
                .collect(),
            expires: expires(now),
            policy: None,
            preferred_languages: owned(&LANGUAGES),
        },
    }
}

fn toml_list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

/// The text of a fresh `rempart.toml`: every setting, its default, and what
/// it does.
pub fn default_toml(now: OffsetDateTime) -> String {
    let expires = expires(now)
        .format(&Rfc3339)
        .unwrap_or_else(|_| unreachable!("a whole-second UTC time formats as RFC 3339"));
    let server_names = toml_list(&SERVER_NAMES);
    let languages = toml_list(&LANGUAGES);
    format!(
        r#"# rempart.toml: settings of the Rempart control plane (`rempart serve`).
# Every setting is written with its default. `rempart config check` validates
# this file; an unknown key or a bad value stops the server with its line.

# Address and port of the API. TLS only: plain HTTP gets no answer.
listen = "{LISTEN}"

# DNS names and IP addresses the server certificate covers. Clients must reach
# the server by one of them. The certificate is reissued at start when this
# list changes or when it has fewer than 30 days left.
server_names = {server_names}

# Where state lives: "sqlite" keeps it in rempart.db in the data directory;
# a "postgres://user@host:port/database" URL lets several control-plane
# nodes share it. May also be set with --store or REMPART_STORE.
store = "sqlite"

[tls]
# Days the server certificate is valid (at most 825).
server_cert_days = {SERVER_CERT_DAYS}
# Days a machine identity's client certificate is valid (at most 397).
machine_cert_days = {MACHINE_CERT_DAYS}

[http]
# Largest request body accepted, in bytes; larger ones get 413.
max_body_bytes = {MAX_BODY_BYTES}
# Seconds a request may take before it gets 408.
request_timeout_secs = {REQUEST_TIMEOUT_SECS}
# Strict-Transport-Security max-age, in seconds (0 disables the header).
hsts_max_age_secs = {HSTS_MAX_AGE_SECS}
# Connections served at once; more wait to be accepted.
max_connections = {MAX_CONNECTIONS}

[tokens]
# Days a token issued by `rempart user token` stays valid; 0 means no expiry.
ttl_days = {TOKEN_TTL_DAYS}

[welllog]
# The well-log's name in its signed checkpoints (C2SP checkpoint "origin"):
# unique to this deployment, so that its checkpoints cannot be confused.
origin = "{DEFAULT_ORIGIN}"
# Milliseconds between two signed checkpoints while entries arrive.
checkpoint_interval_ms = {CHECKPOINT_INTERVAL_MS}
# Largest body of POST /v1/log/entries (JSON lines), in bytes.
max_batch_bytes = {MAX_BATCH_BYTES}
# Memory the batches being received, parsed and written may take together,
# in bytes (each counts about three times its body). Past it, new batches
# wait unread for up to a minute, then get 503 and Retry-After.
ingest_memory_bytes = {INGEST_MEMORY_BYTES}
# Days an entry's payload is kept; older payloads are erased, their leaf
# hashes kept, so checkpoints and proofs stay valid. 0 keeps them for ever.
retention_days = {RETENTION_DAYS}

[syslog]
# Syslog listeners that feed the well-log; "" turns one off. Messages may use
# RFC 5424 or RFC 3164, framed by LF or by octet counting (RFC 6587).
# Plain TCP: anyone who reaches it can write; bind it to loopback or a trusted
# network only, e.g. "127.0.0.1:5140".
tcp = ""
# TLS (RFC 5425): senders present a machine identity's client certificate.
# The usual port is 6514, e.g. "0.0.0.0:6514".
tls = ""
# UDP, best effort: a datagram has no acknowledgement and can be lost.
udp = ""

[access]
# Access requests: `rempart access request` asks, reviewers decide.
# The role whose holders review requests (never their own).
reviewer_role = "security"
# Longest access one request may ask for (s, m, h or d).
max_duration = "{MAX_ACCESS}"
# How long a request waits for its reviews before it expires.
pending_for = "{PENDING_FOR}"
# Shortest reason accepted, in characters.
min_reason_chars = {MIN_REASON_CHARS}
# A regular expression every reason must contain, e.g. a ticket: "[A-Z]+-[0-9]+".
# "" for none.
ticket_pattern = ""
# Training modules a user must have current to obtain a grant, e.g. ["security-basics"].
required_training = []
# Distinct approvals a request needs, unless a threshold below asks for more.
approvals = 1
# Told of new requests and of decisions (a Slack-style incoming webhook):
# https://, or http:// to a loopback relay. "" for none.
webhook = ""

# Who may request which resources: any of the roles, for resources that carry
# all the labels (none: every resource). Add one [[access.allow]] per rule.
[[access.allow]]
roles = ["engineer"]
labels = {{}}

# Resources that need more approvals: the highest threshold matching any
# resource of a request applies.
[[access.threshold]]
labels = {{ data = "pii" }}
approvals = 2

[ssh]
# `rempart login` gets an OpenSSH user certificate for the bastion, valid at
# most this long (1m to 24h).
user_certificate_max = "{USER_CERTIFICATE_MAX}"
# The bastion logs in to a target with a certificate of its own per session,
# valid this long (1m to 1h): only the connection's setup needs it.
session_certificate = "{SESSION_CERTIFICATE}"

[database]
# `rempart login --db NAME` gets a client certificate for the bastion's
# PostgreSQL listener, valid at most this long (1m to 24h).
user_certificate_max = "{DATABASE_CERTIFICATE_MAX}"

[security_txt]
# Served at /.well-known/security.txt (RFC 9116) for people reporting weaknesses.
# How to reach the security team: mailto:, https:// or tel: URIs.
contact = ["{CONTACT}"]
# When this information must be reviewed again (RFC 3339, at most a year away).
expires = "{expires}"
# Optional link to the vulnerability disclosure policy, e.g. "https://example.com/security".
# policy = "https://example.com/security"
# Languages the security team reads.
preferred_languages = {languages}
"#
    )
}
