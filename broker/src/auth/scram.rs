//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677): the salted credentials a user is
//! stored as (salt, iterations, StoredKey, ServerKey: never the password), the server side
//! of the two-round exchange, password checks against a credential (HTTP Basic, SASL PLAIN),
//! and SASL PLAIN's message (RFC 4616).
//!
//! The primitives come from crates: PBKDF2 (`pbkdf2`), HMAC (`hmac`), SHA-2 (`sha2`) and
//! constant-time comparison (`subtle`); this module only parses and builds the messages.
//! It knows nothing of users, the store or the wire around the SASL bytes.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

use super::AuthError;

/// PBKDF2 iterations for new credentials (RFC 7677's minimum; Kafka's default).
pub const DEFAULT_ITERATIONS: u32 = 4096;
/// Fewest iterations a stored credential may have.
pub const MIN_ITERATIONS: u32 = 4096;
/// Most iterations a stored credential may have (bounds the work of one login).
pub const MAX_ITERATIONS: u32 = 100_000;
/// Bytes of salt in new credentials.
const SALT_BYTES: usize = 24;
/// Bytes of the server's nonce.
const NONCE_BYTES: usize = 24;
/// Longest SASL message accepted (user names and nonces are short).
pub const MAX_SASL_MESSAGE_BYTES: usize = 4096;

/// The SCRAM hash functions Weir offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    ScramSha256,
    ScramSha512,
}

impl Mechanism {
    /// The SASL mechanism name.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            Mechanism::ScramSha256 => {
                // HMAC takes keys of any length; `new_from_slice` cannot fail.
                let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key)
                    .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            Mechanism::ScramSha512 => {
                let mut m = <Hmac<Sha512> as Mac>::new_from_slice(key)
                    .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Mechanism::ScramSha256 => Sha256::digest(data).to_vec(),
            Mechanism::ScramSha512 => Sha512::digest(data).to_vec(),
        }
    }

    fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            Mechanism::ScramSha256 => {
                let mut out = [0u8; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
                out.to_vec()
            }
            Mechanism::ScramSha512 => {
                let mut out = [0u8; 64];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out);
                out.to_vec()
            }
        }
    }
}

/// Fills a buffer from the OS's random source.
pub fn random_bytes(n: usize) -> Result<Vec<u8>, AuthError> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).map_err(|e| AuthError::Random(e.to_string()))?;
    Ok(b)
}

/// A user's salted credential for one mechanism (RFC 5802 §3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredential {
    #[serde(with = "b64")]
    pub salt: Vec<u8>,
    pub iterations: u32,
    #[serde(with = "b64")]
    pub stored_key: Vec<u8>,
    #[serde(with = "b64")]
    pub server_key: Vec<u8>,
}

impl ScramCredential {
    /// Derives a credential for `password` with a fresh random salt.
    pub fn new(mech: Mechanism, password: &str, iterations: u32) -> Result<Self, AuthError> {
        let salt = random_bytes(SALT_BYTES)?;
        Ok(Self::derive(mech, password, salt, iterations))
    }

    fn derive(mech: Mechanism, password: &str, salt: Vec<u8>, iterations: u32) -> Self {
        let salted = mech.salted_password(password.as_bytes(), &salt, iterations);
        let client_key = mech.hmac(&salted, b"Client Key");
        ScramCredential {
            stored_key: mech.hash(&client_key),
            server_key: mech.hmac(&salted, b"Server Key"),
            salt,
            iterations,
        }
    }

    /// A credential that matches no password (for unknown users, so that an exchange with
    /// one looks like an exchange with a known user until the proof fails).
    fn decoy(mech: Mechanism) -> Result<Self, AuthError> {
        let len = mech.hash(b"").len();
        Ok(ScramCredential {
            salt: random_bytes(SALT_BYTES)?,
            iterations: DEFAULT_ITERATIONS,
            stored_key: random_bytes(len)?,
            server_key: random_bytes(len)?,
        })
    }

    /// Whether the stored fields are usable (lengths for `mech`, iterations in bounds).
    pub fn is_valid(&self, mech: Mechanism) -> bool {
        let len = mech.hash(b"").len();
        self.stored_key.len() == len
            && self.server_key.len() == len
            && !self.salt.is_empty()
            && (MIN_ITERATIONS..=MAX_ITERATIONS).contains(&self.iterations)
    }

    /// Whether `password` is the one this credential was derived from (constant time in
    /// the comparison).
    pub fn verify_password(&self, mech: Mechanism, password: &str) -> bool {
        let salted = mech.salted_password(password.as_bytes(), &self.salt, self.iterations);
        let client_key = mech.hmac(&salted, b"Client Key");
        let stored = mech.hash(&client_key);
        bool::from(stored.ct_eq(&self.stored_key))
    }
}

/// What one step of the exchange produced.
#[derive(Debug, PartialEq, Eq)]
pub enum ScramStep {
    /// Send these bytes (server-first-message) and wait for the client's final message.
    Continue(Vec<u8>),
    /// The client proved it knows the password: send these bytes (server-final-message).
    Success { user: String, response: Vec<u8> },
}

/// The server side of one SCRAM exchange.
#[derive(Debug)]
pub struct ScramServer {
    mech: Mechanism,
    state: State,
}

#[derive(Debug)]
enum State {
    Initial,
    SentFirst(Box<Exchange>),
    Done,
}

/// What the server keeps between its first and final message.
#[derive(Debug)]
struct Exchange {
    user: String,
    /// `false` when `credential` is a decoy for an unknown user.
    known: bool,
    credential: ScramCredential,
    gs2_header: String,
    client_first_bare: String,
    server_first: String,
    /// The client's nonce followed by ours, as sent in server-first.
    nonce: String,
    /// How many leading bytes of `nonce` are the client's.
    client_nonce_len: usize,
}

impl ScramServer {
    pub fn new(mech: Mechanism) -> Self {
        ScramServer {
            mech,
            state: State::Initial,
        }
    }

    pub fn mechanism(&self) -> Mechanism {
        self.mech
    }

    /// Takes the client's next message. `lookup` finds a user's credential for this
    /// mechanism (called once, on the first message). Any error ends the exchange.
    pub fn step(
        &mut self,
        input: &[u8],
        lookup: impl FnOnce(&str) -> Option<ScramCredential>,
    ) -> Result<ScramStep, AuthError> {
        if input.len() > MAX_SASL_MESSAGE_BYTES {
            return Err(AuthError::AuthenticationFailed);
        }
        let input = std::str::from_utf8(input).map_err(|_| AuthError::AuthenticationFailed)?;
        match std::mem::replace(&mut self.state, State::Done) {
            State::Initial => {
                let (gs2_header, bare) = split_gs2(input)?;
                let mut user = None;
                let mut client_nonce = None;
                for (i, attr) in bare.split(',').enumerate() {
                    match attr.split_once('=') {
                        Some(("m", _)) if i == 0 => return Err(AuthError::AuthenticationFailed),
                        Some(("n", v)) if i == 0 => user = Some(decode_saslname(v)?),
                        Some(("r", v)) if i == 1 && !v.is_empty() => client_nonce = Some(v),
                        _ if i >= 2 => {} // extensions
                        _ => return Err(AuthError::AuthenticationFailed),
                    }
                }
                let (Some(user), Some(client_nonce)) = (user, client_nonce) else {
                    return Err(AuthError::AuthenticationFailed);
                };
                if let Some(authzid) = gs2_authzid(&gs2_header)?
                    && authzid != user
                {
                    return Err(AuthError::AuthenticationFailed);
                }
                let (known, credential) = match lookup(&user) {
                    Some(c) if c.is_valid(self.mech) => (true, c),
                    _ => (false, ScramCredential::decoy(self.mech)?),
                };
                let nonce = format!("{client_nonce}{}", B64.encode(random_bytes(NONCE_BYTES)?));
                let server_first = format!(
                    "r={nonce},s={},i={}",
                    B64.encode(&credential.salt),
                    credential.iterations
                );
                let out = server_first.clone().into_bytes();
                self.state = State::SentFirst(Box::new(Exchange {
                    user,
                    known,
                    credential,
                    gs2_header,
                    client_first_bare: bare.to_string(),
                    server_first,
                    client_nonce_len: client_nonce.len(),
                    nonce,
                }));
                Ok(ScramStep::Continue(out))
            }
            State::SentFirst(exchange) => {
                let Exchange {
                    user,
                    known,
                    credential,
                    gs2_header,
                    client_first_bare,
                    server_first,
                    nonce,
                    client_nonce_len,
                } = *exchange;
                let (without_proof, proof) = input
                    .rsplit_once(",p=")
                    .ok_or(AuthError::AuthenticationFailed)?;
                let mut attrs = without_proof.split(',');
                let binding = attrs
                    .next()
                    .and_then(|a| a.strip_prefix("c="))
                    .ok_or(AuthError::AuthenticationFailed)?;
                let got_nonce = attrs
                    .next()
                    .and_then(|a| a.strip_prefix("r="))
                    .ok_or(AuthError::AuthenticationFailed)?;
                let binding_ok = B64
                    .decode(binding)
                    .is_ok_and(|b| b == gs2_header.as_bytes());
                if !binding_ok || !nonce_matches(got_nonce, &nonce, client_nonce_len) {
                    return Err(AuthError::AuthenticationFailed);
                }
                let proof = B64
                    .decode(proof)
                    .map_err(|_| AuthError::AuthenticationFailed)?;
                let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
                let signature = self
                    .mech
                    .hmac(&credential.stored_key, auth_message.as_bytes());
                if proof.len() != signature.len() {
                    return Err(AuthError::AuthenticationFailed);
                }
                let client_key: Vec<u8> =
                    proof.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
                let matches = self.mech.hash(&client_key).ct_eq(&credential.stored_key);
                if !(bool::from(matches) && known) {
                    return Err(AuthError::AuthenticationFailed);
                }
                let server_signature = self
                    .mech
                    .hmac(&credential.server_key, auth_message.as_bytes());
                Ok(ScramStep::Success {
                    user,
                    response: format!("v={}", B64.encode(server_signature)).into_bytes(),
                })
            }
            State::Done => Err(AuthError::AuthenticationFailed),
        }
    }
}

/// Whether the client-final nonce is the one server-first sent (RFC 5802). librdkafka before
/// 2.6.1 (Debian's kcat links 2.0.2) sends the client nonce once more in front of it
/// (confluentinc/librdkafka#4895); Kafka 3.x brokers accept that too, and so do we: it
/// still carries our fresh nonce, so a replayed exchange fails all the same.
fn nonce_matches(got: &str, nonce: &str, client_nonce_len: usize) -> bool {
    if got == nonce {
        return true;
    }
    let client_nonce = &nonce[..client_nonce_len.min(nonce.len())];
    got.strip_prefix(client_nonce) == Some(nonce)
}

/// Splits a client-first-message into its GS2 header (with the trailing comma) and the
/// client-first-message-bare. Channel binding (`p=`) is refused: there is none to bind to.
fn split_gs2(msg: &str) -> Result<(String, &str), AuthError> {
    let flag_end = msg.find(',').ok_or(AuthError::AuthenticationFailed)?;
    match &msg[..flag_end] {
        "n" | "y" => {}
        _ => return Err(AuthError::AuthenticationFailed),
    }
    let rest = &msg[flag_end + 1..];
    let authz_end = rest.find(',').ok_or(AuthError::AuthenticationFailed)?;
    let header_len = flag_end + 1 + authz_end + 1;
    Ok((msg[..header_len].to_string(), &msg[header_len..]))
}

/// The authorization identity in a GS2 header, if any.
fn gs2_authzid(header: &str) -> Result<Option<String>, AuthError> {
    let middle = header
        .split(',')
        .nth(1)
        .ok_or(AuthError::AuthenticationFailed)?;
    if middle.is_empty() {
        return Ok(None);
    }
    let name = middle
        .strip_prefix("a=")
        .ok_or(AuthError::AuthenticationFailed)?;
    decode_saslname(name).map(Some)
}

/// `=2C` is `,` and `=3D` is `=`; any other `=` is malformed (RFC 5802 §5.1).
fn decode_saslname(s: &str) -> Result<String, AuthError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        let esc = rest.get(i..i + 3).ok_or(AuthError::AuthenticationFailed)?;
        match esc {
            "=2C" => out.push(','),
            "=3D" => out.push('='),
            _ => return Err(AuthError::AuthenticationFailed),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    if out.is_empty() {
        return Err(AuthError::AuthenticationFailed);
    }
    Ok(out)
}

/// Parses a SASL PLAIN message (`authzid NUL authcid NUL password`) into the user and the
/// password. An authorization identity other than the user is refused.
pub fn parse_plain(msg: &[u8]) -> Result<(String, String), AuthError> {
    if msg.len() > MAX_SASL_MESSAGE_BYTES {
        return Err(AuthError::AuthenticationFailed);
    }
    let msg = std::str::from_utf8(msg).map_err(|_| AuthError::AuthenticationFailed)?;
    let mut parts = msg.split('\0');
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::AuthenticationFailed);
    };
    if user.is_empty() || (!authzid.is_empty() && authzid != user) {
        return Err(AuthError::AuthenticationFailed);
    }
    Ok((user.to_string(), password.to_string()))
}

/// Serde for byte fields as standard base64 strings.
mod b64 {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as B64;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        B64.decode(s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client side of the exchange, written from RFC 5802 §3 for the tests only.
    fn client_final(
        mech: Mechanism,
        password: &str,
        client_first_bare: &str,
        server_first: &str,
    ) -> (String, Vec<u8>) {
        let attrs: Vec<&str> = server_first.split(',').collect();
        let nonce = attrs[0].strip_prefix("r=").unwrap();
        let salt = B64.decode(attrs[1].strip_prefix("s=").unwrap()).unwrap();
        let iters: u32 = attrs[2].strip_prefix("i=").unwrap().parse().unwrap();
        let salted = mech.salted_password(password.as_bytes(), &salt, iters);
        let client_key = mech.hmac(&salted, b"Client Key");
        let stored = mech.hash(&client_key);
        let without_proof = format!("c={},r={nonce}", B64.encode("n,,"));
        let auth = format!("{client_first_bare},{server_first},{without_proof}");
        let sig = mech.hmac(&stored, auth.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
        let server_key = mech.hmac(&salted, b"Server Key");
        let expected_v = mech.hmac(&server_key, auth.as_bytes());
        (
            format!("{without_proof},p={}", B64.encode(proof)),
            format!("v={}", B64.encode(expected_v)).into_bytes(),
        )
    }

    fn exchange(mech: Mechanism, stored_pw: &str, client_pw: &str, user: &str) -> bool {
        let cred = ScramCredential::new(mech, stored_pw, DEFAULT_ITERATIONS).unwrap();
        let mut server = ScramServer::new(mech);
        let bare = "n=alice,r=fyko+d2lbbFgONRv9qkxdawL";
        let first = server
            .step(format!("n,,{bare}").as_bytes(), |u| {
                (u == user).then(|| cred.clone())
            })
            .unwrap();
        let ScramStep::Continue(server_first) = first else {
            panic!("expected Continue")
        };
        let server_first = String::from_utf8(server_first).unwrap();
        assert!(server_first.starts_with("r=fyko+d2lbbFgONRv9qkxdawL"));
        let (msg, expected_v) = client_final(mech, client_pw, bare, &server_first);
        match server.step(msg.as_bytes(), |_| None) {
            Ok(ScramStep::Success { user, response }) => {
                assert_eq!(user, "alice");
                assert_eq!(response, expected_v);
                true
            }
            Ok(other) => panic!("unexpected {other:?}"),
            Err(_) => false,
        }
    }

    #[test]
    fn scram_exchanges_succeed_only_with_the_password() {
        for mech in [Mechanism::ScramSha256, Mechanism::ScramSha512] {
            assert!(exchange(mech, "s3cret", "s3cret", "alice"));
            assert!(!exchange(mech, "s3cret", "wrong", "alice"));
            // An unknown user fails at the proof, like a wrong password.
            assert!(!exchange(mech, "s3cret", "s3cret", "bob"));
        }
    }

    /// RFC 7677 §3's test vector: the server-first and server-final messages for user
    /// `user`, password `pencil`.
    #[test]
    fn rfc7677_vector() {
        let mech = Mechanism::ScramSha256;
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let cred = ScramCredential::derive(mech, "pencil", salt, 4096);
        let bare = "n=user,r=rOprNGfwEbeRWgbNEkqO";
        let server_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let without_proof = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let auth = format!("{bare},{server_first},{without_proof}");
        let sig = mech.hmac(&cred.stored_key, auth.as_bytes());
        let proof = B64
            .decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
            .unwrap();
        let client_key: Vec<u8> = proof.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
        assert_eq!(mech.hash(&client_key), cred.stored_key);
        let v = mech.hmac(&cred.server_key, auth.as_bytes());
        assert_eq!(
            B64.encode(v),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
    }

    #[test]
    fn the_nonce_librdkafka_before_2_6_1_sends_is_accepted_and_others_are_not() {
        let nonce = "cnonceSERVER";
        assert!(nonce_matches("cnonceSERVER", nonce, 6));
        assert!(nonce_matches("cnoncecnonceSERVER", nonce, 6));
        assert!(!nonce_matches("cnonce", nonce, 6));
        assert!(!nonce_matches("xxxxxxcnonceSERVER", nonce, 6));
        assert!(!nonce_matches("cnonceSERVERx", nonce, 6));
    }

    #[test]
    fn malformed_messages_fail() {
        let mut s = ScramServer::new(Mechanism::ScramSha256);
        assert!(s.step(b"p=tls-unique,,n=a,r=x", |_| None).is_err());
        for bad in [
            &b"n,,"[..],
            b"n,,r=x",
            b"n,,n=a",
            b"x",
            b"n,,n=a=zz,r=x",
            b"n,a=b,n=a,r=x",
        ] {
            let mut s = ScramServer::new(Mechanism::ScramSha256);
            assert!(s.step(bad, |_| None).is_err(), "{bad:?}");
        }
        assert_eq!(decode_saslname("a=2Cb=3Dc").unwrap(), "a,b=c");
    }

    #[test]
    fn plain_messages() {
        assert_eq!(
            parse_plain(b"\0alice\0pw").unwrap(),
            ("alice".into(), "pw".into())
        );
        assert!(parse_plain(b"alice\0alice\0pw").is_ok());
        assert!(parse_plain(b"bob\0alice\0pw").is_err());
        assert!(parse_plain(b"\0alice").is_err());
        assert!(parse_plain(b"\0\0pw").is_err());
    }

    #[test]
    fn passwords_verify_against_credentials() {
        for mech in [Mechanism::ScramSha256, Mechanism::ScramSha512] {
            let c = ScramCredential::new(mech, "pw", DEFAULT_ITERATIONS).unwrap();
            assert!(c.is_valid(mech));
            assert!(c.verify_password(mech, "pw"));
            assert!(!c.verify_password(mech, "pW"));
        }
    }
}
