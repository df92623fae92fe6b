//! Long-term credentials (RFC 8489 §9.2): static users, coturn-style
//! precomputed keys, and coturn's TURN REST API secrets; stateless nonces
//! that go stale.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha1::Sha1;

/// The 16-byte long-term key, MD5(username ":" realm ":" password).
pub type Key = [u8; 16];

/// Why a set of credentials was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("unknown user")]
    UnknownUser,
    #[error("REST API credentials have expired")]
    Expired,
}

/// A configuration entry that is not a valid user.
#[derive(Debug, thiserror::Error)]
#[error("user entry {0:?} is not `name:password` or `name:0xKEY` (32 hex digits)")]
pub struct BadUser(pub String);

pub struct Authenticator {
    realm: String,
    users: HashMap<String, Key>,
    secrets: Vec<Vec<u8>>,
    nonce_secret: [u8; 32],
    nonce_lifetime: Duration,
}

pub fn long_term_key(username: &str, realm: &str, password: &str) -> Key {
    let mut h = Md5::new();
    h.update(username.as_bytes());
    h.update(b":");
    h.update(realm.as_bytes());
    h.update(b":");
    h.update(password.as_bytes());
    h.finalize().into()
}

/// The password coturn's REST API scheme derives for `username`:
/// base64(HMAC-SHA1(secret, username)).
pub fn rest_password(secret: &[u8], username: &str) -> String {
    // HMAC accepts keys of any length.
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Authenticator {
    /// `users` are `name:password` or `name:0xKEY` entries; `secrets` are
    /// REST API shared secrets (any of them may have minted a credential).
    pub fn new(
        realm: &str,
        users: &[String],
        secrets: &[String],
        nonce_lifetime: Duration,
    ) -> Result<Self, BadUser> {
        let mut map = HashMap::new();
        for entry in users {
            let (name, pass) = entry
                .split_once(':')
                .ok_or_else(|| BadUser(entry.clone()))?;
            let key = match pass.strip_prefix("0x") {
                Some(hex) => parse_hex_key(hex).ok_or_else(|| BadUser(entry.clone()))?,
                None => long_term_key(name, realm, pass),
            };
            map.insert(name.to_owned(), key);
        }
        Ok(Authenticator {
            realm: realm.to_owned(),
            users: map,
            secrets: secrets.iter().map(|s| s.as_bytes().to_vec()).collect(),
            nonce_secret: rand::random(),
            nonce_lifetime,
        })
    }

    pub fn realm(&self) -> &str {
        &self.realm
    }

    pub fn add_secret(&mut self, secret: &[u8]) {
        self.secrets.push(secret.to_vec());
    }

    /// The keys a message from `username` may be signed with: the static
    /// user's key, else one per REST secret when the username carries an
    /// unexpired `expiry[:user]` timestamp.
    pub fn candidate_keys(&self, username: &str, now_unix: u64) -> Result<Vec<Key>, AuthError> {
        if let Some(key) = self.users.get(username) {
            return Ok(vec![*key]);
        }
        if self.secrets.is_empty() {
            return Err(AuthError::UnknownUser);
        }
        let stamp = username.split(':').next().unwrap_or_default();
        let expiry: u64 = stamp.parse().map_err(|_| AuthError::UnknownUser)?;
        if expiry < now_unix {
            return Err(AuthError::Expired);
        }
        Ok(self
            .secrets
            .iter()
            .map(|s| long_term_key(username, &self.realm, &rest_password(s, username)))
            .collect())
    }

    /// A fresh nonce: its creation time and a MAC over it, so any listener
    /// can verify it without shared state.
    pub fn nonce(&self, now_unix: u64) -> String {
        let stamp = now_unix.to_be_bytes();
        let mut out = hex(&stamp);
        out.push_str(&hex(&self.nonce_mac(&stamp)));
        out
    }

    /// Whether a nonce was made here and has not gone stale.
    pub fn nonce_fresh(&self, nonce: &str, now_unix: u64) -> bool {
        let Some(bytes) = parse_hex(nonce) else {
            return false;
        };
        let Some((stamp, mac)) = bytes.split_first_chunk::<8>() else {
            return false;
        };
        let made = u64::from_be_bytes(*stamp);
        mac == self.nonce_mac(stamp)
            && made <= now_unix
            && now_unix - made < self.nonce_lifetime.as_secs()
    }

    fn nonce_mac(&self, stamp: &[u8; 8]) -> [u8; 8] {
        let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(&self.nonce_secret)
            .unwrap_or_else(|_| unreachable!());
        mac.update(stamp);
        let tag = mac.finalize().into_bytes();
        let mut out = [0u8; 8];
        out.copy_from_slice(&tag[..8]);
        out
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn parse_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

fn parse_hex_key(s: &str) -> Option<Key> {
    parse_hex(s)?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Authenticator {
        Authenticator::new(
            "example.org",
            &[
                "alice:secret".into(),
                "bob:0x00112233445566778899aabbccddeeff".into(),
            ],
            &["rest-secret".into()],
            Duration::from_secs(600),
        )
        .unwrap()
    }

    #[test]
    fn static_users_and_hex_keys() {
        let a = auth();
        assert_eq!(
            a.candidate_keys("alice", 0).unwrap(),
            vec![long_term_key("alice", "example.org", "secret")]
        );
        assert_eq!(a.candidate_keys("bob", 0).unwrap()[0][..2], [0x00, 0x11]);
        assert!(Authenticator::new("r", &["x:0x12".into()], &[], Duration::ZERO).is_err());
        assert!(Authenticator::new("r", &["nocolon".into()], &[], Duration::ZERO).is_err());
    }

    #[test]
    fn rest_credentials_expire() {
        let a = auth();
        let keys = a.candidate_keys("2000:carol", 1000).unwrap();
        let pass = rest_password(b"rest-secret", "2000:carol");
        assert_eq!(
            keys,
            vec![long_term_key("2000:carol", "example.org", &pass)]
        );
        assert_eq!(a.candidate_keys("999:carol", 1000), Err(AuthError::Expired));
        assert_eq!(a.candidate_keys("carol", 1000), Err(AuthError::UnknownUser));
    }

    #[test]
    fn rest_password_matches_coturn_example() {
        // base64(HMAC-SHA1("secret", "1400000000:user")) computed independently
        // with `printf %s 1400000000:user | openssl dgst -sha1 -hmac secret -binary | base64`.
        assert_eq!(
            rest_password(b"secret", "1400000000:user"),
            "oObEhoAliRcq5810uMlN2rCQRGI="
        );
    }

    #[test]
    fn nonces_go_stale_and_cannot_be_forged() {
        let a = auth();
        let n = a.nonce(5000);
        assert!(a.nonce_fresh(&n, 5000));
        assert!(a.nonce_fresh(&n, 5599));
        assert!(!a.nonce_fresh(&n, 5600));
        assert!(!a.nonce_fresh(&auth().nonce(5000), 5000));
        assert!(!a.nonce_fresh("zz", 5000));
    }
}
