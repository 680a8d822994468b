//! Registry authentication: credentials and where they come from ([`credentials`]),
//! credential helpers run under bounds ([`helper`]), `WWW-Authenticate` challenges
//! ([`challenge`]) and bearer tokens ([`token`]).

pub mod challenge;
pub mod credentials;
pub mod helper;
pub mod token;

pub use credentials::{Credential, CredentialSource, Secret};

use base64::Engine as _;

/// `Basic base64(user:password)`.
pub(crate) fn basic_header(username: &str, password: &Secret) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD
            .encode(format!("{username}:{}", password.expose()))
    )
}
