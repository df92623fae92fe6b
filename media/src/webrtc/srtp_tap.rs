//! Learning a peer's negotiated outbound SRTP master key without patching `rtc`.
//!
//! `rtc` 0.21 keeps its SRTP contexts private, but it builds them through the crypto provider
//! that the [`SettingEngine`](rtc::peer_connection::configuration::setting_engine::SettingEngine)
//! names, and every peer may have its own provider. [`SrtpKeyTap`] wraps the built-in provider
//! and watches the SRTP key derivation (RFC 3711 §4.3), which is the only user of
//! `block_encrypt` in the stack: its first call is keyed with the *local* master key (the
//! crate derives the local context before the remote one) and its input block starts with the
//! master salt (label 0, index 0). The next cipher constructor tells the profile: an AEAD means
//! AES-128-GCM, a stream cipher means AES-128-CM-HMAC-SHA1-80 (the only two profiles
//! [`SUPPORTED_PROFILES`] lets DTLS negotiate).
//!
//! The tapped key feeds [`super::srtp_out::SrtpOut`], the forwarding fast path. The crate keeps
//! using its own context for everything it sends itself (RTCP, data), on SSRCs the fast path
//! never uses, so no (SSRC, index) pair is ever protected twice under the key.

use std::sync::Arc;

use parking_lot::Mutex;
use rtc::crypto::{
    ActiveKeyExchange, AeadAlgorithm, AeadCipher, BlockCipherAlgorithm, CbcAlgorithm, CbcCipher,
    CryptoAlgorithm, CryptoError, HashAlgorithm, HmacAlgorithm, KeyExchangeAlgorithm, Mac,
    PublicKey, RTCCrypto, RTCCryptoProvider, RTCRandom, SignatureScheme, SigningKey, StreamCipher,
    StreamCipherAlgorithm,
};
use rtc::dtls::extension::extension_use_srtp::SrtpProtectionProfile;

/// The DTLS-SRTP profiles rkms offers and accepts: both are implemented by the fast path.
pub const SUPPORTED_PROFILES: [SrtpProtectionProfile; 2] = [
    SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm,
    SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80,
];

/// The SRTP profile of a tapped key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SrtpProfile {
    /// AEAD_AES_128_GCM (RFC 7714): 12-byte salt, 16-byte tag.
    AeadAes128Gcm,
    /// AES_CM_128_HMAC_SHA1_80 (RFC 3711): 14-byte salt, 10-byte tag.
    Aes128CmHmacSha1_80,
}

impl SrtpProfile {
    /// Length of the master salt.
    pub fn salt_len(self) -> usize {
        match self {
            SrtpProfile::AeadAes128Gcm => 12,
            SrtpProfile::Aes128CmHmacSha1_80 => 14,
        }
    }
}

/// A local (outbound) SRTP master key and salt.
#[derive(Clone)]
pub struct SrtpMasterKey {
    /// The negotiated profile.
    pub profile: SrtpProfile,
    /// 16-byte master key.
    pub key: [u8; 16],
    /// Master salt, `profile.salt_len()` bytes used.
    pub salt: [u8; 14],
}

impl std::fmt::Debug for SrtpMasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtpMasterKey")
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
enum TapState {
    /// No SRTP key derivation seen yet.
    #[default]
    Waiting,
    /// The first derivation block was seen; the profile is told by the next cipher built.
    KeySeen { key: [u8; 16], block: [u8; 16] },
    /// The local key is known.
    Done(SrtpMasterKey),
}

/// A crypto provider for one peer connection that records its local SRTP master key.
pub struct SrtpKeyTap {
    inner: Arc<dyn RTCCryptoProvider>,
    state: Mutex<TapState>,
}

impl SrtpKeyTap {
    /// Wraps the crate's built-in provider.
    pub fn new() -> Result<Arc<Self>, CryptoError> {
        Ok(Arc::new(SrtpKeyTap {
            inner: rtc::crypto::default_provider()?,
            state: Mutex::default(),
        }))
    }

    /// The local master key, once DTLS has completed and the crate built its SRTP contexts.
    pub fn local_key(&self) -> Option<SrtpMasterKey> {
        match &*self.state.lock() {
            TapState::Done(key) => Some(key.clone()),
            _ => None,
        }
    }

    /// The crypto operations without the tap (for the fast path's own key schedule).
    pub fn inner_crypto(&self) -> &dyn RTCCrypto {
        self.inner.crypto()
    }

    fn cipher_built(&self, profile: SrtpProfile) {
        let mut state = self.state.lock();
        if let TapState::KeySeen { key, block } = &*state {
            let mut salt = [0u8; 14];
            let n = profile.salt_len();
            salt[..n].copy_from_slice(&block[..n]);
            *state = TapState::Done(SrtpMasterKey {
                profile,
                key: *key,
                salt,
            });
        }
    }
}

impl RTCCryptoProvider for SrtpKeyTap {
    fn name(&self) -> &'static str {
        "rkms-srtp-key-tap"
    }
    fn crypto(&self) -> &dyn RTCCrypto {
        self
    }
    fn random(&self) -> &dyn RTCRandom {
        self.inner.random()
    }
}

impl RTCCrypto for SrtpKeyTap {
    fn supports(&self, algorithm: CryptoAlgorithm) -> bool {
        self.inner.crypto().supports(algorithm)
    }
    fn hash(&self, algorithm: HashAlgorithm, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.inner.crypto().hash(algorithm, data)
    }
    fn block_encrypt(
        &self,
        algorithm: BlockCipherAlgorithm,
        key: &[u8],
        block: &mut [u8],
    ) -> Result<(), CryptoError> {
        if algorithm == BlockCipherAlgorithm::Aes128 && key.len() == 16 && block.len() == 16 {
            let mut state = self.state.lock();
            if matches!(*state, TapState::Waiting) {
                let mut k = [0u8; 16];
                k.copy_from_slice(key);
                let mut b = [0u8; 16];
                b.copy_from_slice(block);
                *state = TapState::KeySeen { key: k, block: b };
            }
        }
        self.inner.crypto().block_encrypt(algorithm, key, block)
    }
    fn new_hmac(&self, algorithm: HmacAlgorithm, key: &[u8]) -> Result<Box<dyn Mac>, CryptoError> {
        self.inner.crypto().new_hmac(algorithm, key)
    }
    fn new_stream_cipher(
        &self,
        algorithm: StreamCipherAlgorithm,
        key: &[u8],
    ) -> Result<Box<dyn StreamCipher>, CryptoError> {
        self.cipher_built(SrtpProfile::Aes128CmHmacSha1_80);
        self.inner.crypto().new_stream_cipher(algorithm, key)
    }
    fn new_aead(
        &self,
        algorithm: AeadAlgorithm,
        key: &[u8],
    ) -> Result<Box<dyn AeadCipher>, CryptoError> {
        self.cipher_built(SrtpProfile::AeadAes128Gcm);
        self.inner.crypto().new_aead(algorithm, key)
    }
    fn new_cbc(
        &self,
        algorithm: CbcAlgorithm,
        key: &[u8],
    ) -> Result<Box<dyn CbcCipher>, CryptoError> {
        self.inner.crypto().new_cbc(algorithm, key)
    }
    fn start_key_exchange(
        &self,
        algorithm: KeyExchangeAlgorithm,
    ) -> Result<Box<dyn ActiveKeyExchange>, CryptoError> {
        self.inner.crypto().start_key_exchange(algorithm)
    }
    fn generate_signing_key(
        &self,
        scheme: SignatureScheme,
    ) -> Result<Arc<dyn SigningKey>, CryptoError> {
        self.inner.crypto().generate_signing_key(scheme)
    }
    fn import_signing_key(
        &self,
        scheme: SignatureScheme,
        pkcs8_der: &[u8],
    ) -> Result<Arc<dyn SigningKey>, CryptoError> {
        self.inner.crypto().import_signing_key(scheme, pkcs8_der)
    }
    fn verify_signature(
        &self,
        scheme: SignatureScheme,
        public_key: PublicKey<'_>,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), CryptoError> {
        self.inner
            .crypto()
            .verify_signature(scheme, public_key, message, signature)
    }
}
