//! SaslHandshake and SaslAuthenticate (KIP-152 framing): `PLAIN`, `SCRAM-SHA-256` and
//! `SCRAM-SHA-512` against the node's [`crate::auth::AuthStore`]. The exchange's state lives
//! on the connection ([`Conn::sasl`]); a failed login is answered with
//! `SASL_AUTHENTICATION_FAILED`, logged, counted against the client's address, and the
//! connection is closed after the response, as Kafka does.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};

use super::{Conn, Ctx, blocking, str_bytes};
use crate::auth::scram::{self, Mechanism, ScramServer, ScramStep};
use crate::auth::{AuthError, AuthStore};

/// Mechanisms offered, in the order listed to clients.
const MECHANISMS: [&str; 3] = ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"];

/// Where a connection is in its SASL exchange.
#[derive(Debug, Default)]
pub enum SaslState {
    /// No handshake yet.
    #[default]
    Start,
    /// Handshake done: `PLAIN` chosen.
    Plain,
    /// Handshake done: a SCRAM mechanism chosen, no message yet.
    ScramChosen(Mechanism),
    /// Waiting for the client's final SCRAM message.
    Scram(ScramServer),
    /// Authenticated as this user.
    Done(String),
}

pub fn handshake(
    ctx: &Arc<Ctx>,
    conn: &mut Conn,
    req: SaslHandshakeRequest,
    _version: i16,
) -> SaslHandshakeResponse {
    let offered = || MECHANISMS.iter().map(|m| str_bytes(*m)).collect();
    if ctx.config.auth.is_none() {
        conn.close = true;
        return SaslHandshakeResponse::default()
            .with_error_code(ResponseError::UnsupportedSaslMechanism.code());
    }
    if !matches!(conn.sasl, SaslState::Start) {
        conn.close = true;
        return SaslHandshakeResponse::default()
            .with_error_code(ResponseError::IllegalSaslState.code())
            .with_mechanisms(offered());
    }
    conn.sasl = match req.mechanism.as_str() {
        "PLAIN" => SaslState::Plain,
        "SCRAM-SHA-256" => SaslState::ScramChosen(Mechanism::ScramSha256),
        "SCRAM-SHA-512" => SaslState::ScramChosen(Mechanism::ScramSha512),
        other => {
            tracing::info!(peer = %conn.peer, mechanism = %other, "unsupported SASL mechanism");
            conn.close = true;
            return SaslHandshakeResponse::default()
                .with_error_code(ResponseError::UnsupportedSaslMechanism.code())
                .with_mechanisms(offered());
        }
    };
    SaslHandshakeResponse::default().with_mechanisms(offered())
}

pub async fn authenticate(
    ctx: &Arc<Ctx>,
    conn: &mut Conn,
    req: SaslAuthenticateRequest,
    _version: i16,
) -> SaslAuthenticateResponse {
    let Some(store) = ctx.config.auth.clone() else {
        return fail(conn, ResponseError::IllegalSaslState, "SASL is not enabled");
    };
    let ip = conn.peer.ip();
    match std::mem::take(&mut conn.sasl) {
        SaslState::Plain => {
            if let Err(e) = store.limiter.check(ip) {
                return refused(conn, &store, None, e);
            }
            let (user, password) = match scram::parse_plain(&req.auth_bytes) {
                Ok(p) => p,
                Err(e) => return refused(conn, &store, None, e),
            };
            let s = store.clone();
            let u = user.clone();
            let ok = blocking(move || s.verify_password(&u, &password))
                .await
                .unwrap_or(false);
            if !ok {
                return refused(conn, &store, Some(&user), AuthError::AuthenticationFailed);
            }
            authenticated(conn, user, Bytes::new())
        }
        SaslState::ScramChosen(mech) => {
            if let Err(e) = store.limiter.check(ip) {
                return refused(conn, &store, None, e);
            }
            let mut server = ScramServer::new(mech);
            match server.step(&req.auth_bytes, |u| store.scram_credential(u, mech)) {
                Ok(ScramStep::Continue(out)) => {
                    conn.sasl = SaslState::Scram(server);
                    SaslAuthenticateResponse::default().with_auth_bytes(Bytes::from(out))
                }
                Ok(ScramStep::Success { .. }) => fail(
                    conn,
                    ResponseError::SaslAuthenticationFailed,
                    "unexpected SCRAM state",
                ),
                Err(e) => refused(conn, &store, None, e),
            }
        }
        SaslState::Scram(mut server) => match server.step(&req.auth_bytes, |_| None) {
            Ok(ScramStep::Success { user, response }) => {
                authenticated(conn, user, Bytes::from(response))
            }
            Ok(ScramStep::Continue(_)) => fail(
                conn,
                ResponseError::SaslAuthenticationFailed,
                "unexpected SCRAM state",
            ),
            Err(e) => refused(conn, &store, None, e),
        },
        state @ (SaslState::Start | SaslState::Done(_)) => {
            conn.sasl = state;
            fail(
                conn,
                ResponseError::IllegalSaslState,
                "SaslAuthenticate without a SaslHandshake",
            )
        }
    }
}

fn authenticated(conn: &mut Conn, user: String, bytes: Bytes) -> SaslAuthenticateResponse {
    tracing::debug!(peer = %conn.peer, user = %user, "Kafka client authenticated");
    conn.sasl = SaslState::Done(user);
    SaslAuthenticateResponse::default().with_auth_bytes(bytes)
}

/// A failed login: logged, counted against the address, answered, then the connection is
/// closed.
fn refused(
    conn: &mut Conn,
    store: &AuthStore,
    user: Option<&str>,
    e: AuthError,
) -> SaslAuthenticateResponse {
    if !matches!(e, AuthError::TooManyFailures { .. }) {
        store.limiter.failed(conn.peer.ip());
    }
    tracing::warn!(peer = %conn.peer, user = user.unwrap_or("?"), error = %e, "Kafka login failed");
    let message = match e {
        AuthError::TooManyFailures { .. } => e.to_string(),
        _ => "Authentication failed: invalid credentials".to_string(),
    };
    fail(conn, ResponseError::SaslAuthenticationFailed, &message)
}

fn fail(conn: &mut Conn, code: ResponseError, message: &str) -> SaslAuthenticateResponse {
    conn.close = true;
    SaslAuthenticateResponse::default()
        .with_error_code(code.code())
        .with_error_message(Some(str_bytes(message)))
}
