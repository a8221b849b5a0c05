//! The OpenAPI document, generated from the handlers' annotations.

use std::sync::OnceLock;

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{access, db, log, machines, meta, sessions, ssh, training, users};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Rempart control plane API",
        description = "Identities, machine certificates and the control plane's own operation. \
                       Every route but /healthz and /.well-known/security.txt needs a bearer \
                       token or a machine client certificate (mTLS).",
    ),
    paths(
        meta::healthz, meta::security_txt, meta::whoami, meta::openapi, meta::metrics,
        users::list, users::get, users::create, users::disable, users::token,
        machines::list, machines::create, machines::revoke,
        log::append, log::list, log::search, log::checkpoint, log::entry, log::erase, log::inclusion, log::consistency,
        access::create_resource, access::list_resources, access::create_request, access::list_requests,
        access::show_request, access::approve, access::deny, access::revoke, access::cancel, access::check_grant,
        training::create_module, training::list_modules, training::record, training::status,
        ssh::authorities, ssh::create_certificate, ssh::open_session,
        db::authorities, db::create_certificate,
        sessions::store_recording, sessions::store_session, sessions::list_sessions,
        sessions::show_session, sessions::get_recording,
    ),
    modifiers(&SecuritySchemes),
)]
struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        components.add_security_scheme(
            "mtls",
            SecurityScheme::MutualTls {
                description: Some(
                    "A machine identity's client certificate from the deployment's CA".into(),
                ),
                extensions: None,
            },
        );
    }
}

/// The document, built once.
pub fn document() -> &'static utoipa::openapi::OpenApi {
    static DOC: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = ApiDoc::openapi();
        doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
        doc
    })
}
