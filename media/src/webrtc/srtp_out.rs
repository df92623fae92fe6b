//! In-place SRTP protection of forwarded RTP packets (the fast path).
//!
//! `rtc`'s send path (`RTCRtpSender::write_rtp`) checks the packet against the sender's
//! parameters, runs the interceptor chain, marshals into a new buffer and encrypts into another.
//! A forwarded packet needs none of that: the routing core writes the rewritten header and the
//! shared payload into one reusable buffer and [`SrtpOut::protect`] encrypts it there, with keys
//! derived (RFC 3711 §4.3) from the master key [`super::srtp_tap`] learned from the session.

use rtc::crypto::{
    AeadAlgorithm, AeadCipher, BlockCipherAlgorithm, CryptoError, HmacAlgorithm, Mac, RTCCrypto,
    StreamCipher, StreamCipherAlgorithm,
};

use super::srtp_tap::{SrtpMasterKey, SrtpProfile};

/// The most bytes [`SrtpOut::protect`] appends to a packet.
pub const MAX_SRTP_OVERHEAD: usize = 16;

const LABEL_RTP_ENCRYPTION: u8 = 0x00;
const LABEL_RTP_AUTH: u8 = 0x01;
const LABEL_RTP_SALT: u8 = 0x02;
const GCM_TAG_LEN: usize = 16;
const SHA1_80_TAG_LEN: usize = 10;

enum Cipher {
    Gcm {
        aead: Box<dyn AeadCipher>,
        salt: [u8; 12],
    },
    CmSha1 {
        ctr: Box<dyn StreamCipher>,
        mac: Box<dyn Mac>,
        salt: [u8; 14],
    },
}

/// Outbound SRTP for the RTP streams the fast path owns on one peer connection.
pub struct SrtpOut {
    cipher: Cipher,
}

impl SrtpOut {
    /// Derives the session keys from `master` and keys the ciphers once.
    pub fn new(master: &SrtpMasterKey, crypto: &dyn RTCCrypto) -> Result<Self, CryptoError> {
        let salt = &master.salt[..master.profile.salt_len()];
        let mut session_key = [0u8; 16];
        kdf(
            crypto,
            &master.key,
            salt,
            LABEL_RTP_ENCRYPTION,
            &mut session_key,
        )?;
        let cipher = match master.profile {
            SrtpProfile::AeadAes128Gcm => {
                let mut session_salt = [0u8; 12];
                kdf(crypto, &master.key, salt, LABEL_RTP_SALT, &mut session_salt)?;
                Cipher::Gcm {
                    aead: crypto.new_aead(AeadAlgorithm::Aes128Gcm, &session_key)?,
                    salt: session_salt,
                }
            }
            SrtpProfile::Aes128CmHmacSha1_80 => {
                let mut session_salt = [0u8; 14];
                kdf(crypto, &master.key, salt, LABEL_RTP_SALT, &mut session_salt)?;
                let mut auth_key = [0u8; 20];
                kdf(crypto, &master.key, salt, LABEL_RTP_AUTH, &mut auth_key)?;
                Cipher::CmSha1 {
                    ctr: crypto
                        .new_stream_cipher(StreamCipherAlgorithm::Aes128Ctr, &session_key)?,
                    mac: crypto.new_hmac(HmacAlgorithm::Sha1, &auth_key)?,
                    salt: session_salt,
                }
            }
        };
        Ok(SrtpOut { cipher })
    }

    /// Protects the RTP packet in `buf[..len]` (header of `header_len` bytes, SSRC and sequence
    /// number already rewritten) in place and appends the tag. `buf` must have
    /// [`MAX_SRTP_OVERHEAD`] spare bytes after `len`. Returns the protected length.
    pub fn protect(
        &mut self,
        buf: &mut [u8],
        header_len: usize,
        len: usize,
        ssrc: u32,
        seq: u16,
        roc: u32,
    ) -> Result<usize, CryptoError> {
        match &mut self.cipher {
            Cipher::Gcm { aead, salt } => {
                let mut iv = [0u8; 12];
                iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
                iv[6..10].copy_from_slice(&roc.to_be_bytes());
                iv[10..12].copy_from_slice(&seq.to_be_bytes());
                iv.iter_mut().zip(salt.iter()).for_each(|(v, s)| *v ^= s);
                let (packet, rest) = buf.split_at_mut(len);
                let (aad, payload) = packet.split_at_mut(header_len);
                aead.seal_in_place(&iv, aad, payload, &mut rest[..GCM_TAG_LEN])?;
                Ok(len + GCM_TAG_LEN)
            }
            Cipher::CmSha1 { ctr, mac, salt } => {
                let mut iv = [0u8; 16];
                iv[4..8].copy_from_slice(&ssrc.to_be_bytes());
                iv[8..12].copy_from_slice(&roc.to_be_bytes());
                iv[12..14].copy_from_slice(&seq.to_be_bytes());
                iv.iter_mut().zip(salt.iter()).for_each(|(v, s)| *v ^= s);
                ctr.apply_keystream(&iv, &mut buf[header_len..len])?;
                let mut tag = [0u8; 20];
                mac.sign(&[&buf[..len], &roc.to_be_bytes()], &mut tag)?;
                buf[len..len + SHA1_80_TAG_LEN].copy_from_slice(&tag[..SHA1_80_TAG_LEN]);
                Ok(len + SHA1_80_TAG_LEN)
            }
        }
    }
}

/// The SRTP key derivation PRF (AES-CM, key derivation rate 0), RFC 3711 §4.3.3.
fn kdf(
    crypto: &dyn RTCCrypto,
    master_key: &[u8; 16],
    master_salt: &[u8],
    label: u8,
    out: &mut [u8],
) -> Result<(), CryptoError> {
    for (i, chunk) in out.chunks_mut(16).enumerate() {
        let mut block = [0u8; 16];
        block[..master_salt.len()].copy_from_slice(master_salt);
        block[7] ^= label;
        block[14..16].copy_from_slice(&(i as u16).to_be_bytes());
        crypto.block_encrypt(BlockCipherAlgorithm::Aes128, master_key, &mut block)?;
        chunk.copy_from_slice(&block[..chunk.len()]);
    }
    Ok(())
}

/// The rollover counter of one outbound SRTP stream (RFC 3711 §3.3.1), for a sender that
/// numbers its packets itself: mostly increasing, with occasional resends of older numbers.
#[derive(Debug, Default, Clone, Copy)]
pub struct RolloverCounter {
    highest: Option<u16>,
    roc: u32,
}

impl RolloverCounter {
    /// The ROC to protect the packet numbered `seq` with; records it as sent.
    pub fn next(&mut self, seq: u16) -> u32 {
        let Some(highest) = self.highest else {
            self.highest = Some(seq);
            return self.roc;
        };
        let delta = seq.wrapping_sub(highest);
        if delta == 0 {
            self.roc
        } else if delta < 0x8000 {
            // Ahead of the highest number sent: wrapped if the number went down.
            if seq < highest {
                self.roc = self.roc.wrapping_add(1);
            }
            self.highest = Some(seq);
            self.roc
        } else if seq > highest {
            // A resend from before the last wrap.
            self.roc.wrapping_sub(1)
        } else {
            self.roc
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::srtp::context::Context;
    use rtc::srtp::protection_profile::ProtectionProfile;

    fn packet(ssrc: u32, seq: u16) -> Vec<u8> {
        let mut p = vec![0x80, 96];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&1234u32.to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend((0..1000u32).map(|i| i as u8));
        p
    }

    fn same_as_crate(profile: SrtpProfile, crate_profile: ProtectionProfile) {
        let provider = rtc::crypto::default_provider().expect("provider");
        let master = SrtpMasterKey {
            profile,
            key: [7u8; 16],
            salt: [9u8; 14],
        };
        let salt = &master.salt[..profile.salt_len()];
        let mut reference = Context::new(
            &master.key,
            salt,
            crate_profile,
            None,
            None,
            provider.crypto(),
        )
        .expect("context");
        let mut ours = SrtpOut::new(&master, provider.crypto()).expect("srtp out");
        let mut roc = RolloverCounter::default();
        for seq in [65533u16, 65534, 65535, 0, 1, 65535, 2] {
            let plain = packet(0xdead_beef, seq);
            let expected = reference.encrypt_rtp(&plain).expect("encrypt");
            let mut buf = plain.clone();
            buf.resize(plain.len() + MAX_SRTP_OVERHEAD, 0);
            let n = ours
                .protect(&mut buf, 12, plain.len(), 0xdead_beef, seq, roc.next(seq))
                .expect("protect");
            assert_eq!(&buf[..n], &expected[..], "seq {seq}");
        }
    }

    #[test]
    fn gcm_matches_the_crate_context() {
        same_as_crate(SrtpProfile::AeadAes128Gcm, ProtectionProfile::AeadAes128Gcm);
    }

    #[test]
    fn cm_sha1_matches_the_crate_context() {
        same_as_crate(
            SrtpProfile::Aes128CmHmacSha1_80,
            ProtectionProfile::Aes128CmHmacSha1_80,
        );
    }
}
