//! SDES keying (RFC 4568) of an RtpEndpoint: Kurento's `SDES` constructor parameter, the
//! `a=crypto` attribute, and the SRTP contexts (`rtc`'s srtp) keyed from them.
//!
//! Each side encrypts with its own master key and announces it in its `a=crypto` line; the
//! other side decrypts with the key it read there.
//!
//! A master key has a lifetime ([`KeyUsage`]): RFC 3711 §9.2 bounds it to 2^48 SRTP and 2^31
//! SRTCP packets, and an `a=crypto` line may announce a shorter one (`inline:KEY|2^20`,
//! RFC 4568 §6.1), which counts SRTP and SRTCP packets each.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rtc::srtp::context::Context;
use rtc::srtp::protection_profile::ProtectionProfile;

use super::RtpError;

/// Kurento's `CryptoSuite` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CryptoSuite {
    /// AES-128 counter mode, 80-bit HMAC-SHA1 tag.
    Aes128CmHmacSha1_80,
    /// AES-128 counter mode, 32-bit HMAC-SHA1 tag.
    Aes128CmHmacSha1_32,
    /// AES-256 counter mode, 80-bit HMAC-SHA1 tag.
    Aes256CmHmacSha1_80,
    /// AES-256 counter mode, 32-bit HMAC-SHA1 tag.
    Aes256CmHmacSha1_32,
}

const SUITES: [CryptoSuite; 4] = [
    CryptoSuite::Aes128CmHmacSha1_80,
    CryptoSuite::Aes128CmHmacSha1_32,
    CryptoSuite::Aes256CmHmacSha1_80,
    CryptoSuite::Aes256CmHmacSha1_32,
];

impl CryptoSuite {
    /// The suite of Kurento's enum name (`AES_128_CM_HMAC_SHA1_80`, ...).
    pub fn from_kurento(name: &str) -> Option<Self> {
        SUITES.into_iter().find(|s| s.kurento_name() == name)
    }

    /// Kurento's enum name.
    pub fn kurento_name(self) -> &'static str {
        match self {
            CryptoSuite::Aes128CmHmacSha1_80 => "AES_128_CM_HMAC_SHA1_80",
            CryptoSuite::Aes128CmHmacSha1_32 => "AES_128_CM_HMAC_SHA1_32",
            CryptoSuite::Aes256CmHmacSha1_80 => "AES_256_CM_HMAC_SHA1_80",
            CryptoSuite::Aes256CmHmacSha1_32 => "AES_256_CM_HMAC_SHA1_32",
        }
    }

    /// The name SDP uses (RFC 4568 and RFC 6188).
    fn sdp_name(self) -> &'static str {
        match self {
            CryptoSuite::Aes128CmHmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            CryptoSuite::Aes128CmHmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
            CryptoSuite::Aes256CmHmacSha1_80 => "AES_256_CM_HMAC_SHA1_80",
            CryptoSuite::Aes256CmHmacSha1_32 => "AES_256_CM_HMAC_SHA1_32",
        }
    }

    fn from_sdp_name(name: &str) -> Option<Self> {
        SUITES.into_iter().find(|s| s.sdp_name() == name)
    }

    fn profile(self) -> ProtectionProfile {
        match self {
            CryptoSuite::Aes128CmHmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
            CryptoSuite::Aes128CmHmacSha1_32 => ProtectionProfile::Aes128CmHmacSha1_32,
            CryptoSuite::Aes256CmHmacSha1_80 => ProtectionProfile::Aes256CmHmacSha1_80,
            CryptoSuite::Aes256CmHmacSha1_32 => ProtectionProfile::Aes256CmHmacSha1_32,
        }
    }

    /// Bytes of master key plus master salt (30 for AES-128, 46 for AES-256).
    fn key_salt_len(self) -> usize {
        let profile = self.profile();
        profile.key_len() + profile.salt_len()
    }
}

/// A master key and salt for one suite.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey {
    /// Its suite.
    pub suite: CryptoSuite,
    /// Key then salt.
    bytes: Vec<u8>,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("MasterKey")
            .field("suite", &self.suite)
            .finish_non_exhaustive()
    }
}

impl MasterKey {
    /// The key of Kurento's `SDES` parameter: `key_base64` (decoded) or `key` (its bytes), of
    /// the suite's length; a random one when neither is given.
    pub fn from_sdes(
        suite: CryptoSuite,
        key: Option<&str>,
        key_base64: Option<&str>,
    ) -> Result<Self, RtpError> {
        let bytes = match (key_base64, key) {
            (Some(b64), _) => BASE64
                .decode(b64.trim())
                .map_err(|e| RtpError::BadKey(format!("keyBase64 is not base64: {e}")))?,
            (None, Some(text)) => text.as_bytes().to_vec(),
            (None, None) => return Ok(Self::generate(suite)),
        };
        Self::new(suite, bytes)
    }

    fn new(suite: CryptoSuite, bytes: Vec<u8>) -> Result<Self, RtpError> {
        if bytes.len() != suite.key_salt_len() {
            return Err(RtpError::BadKey(format!(
                "{} needs {} bytes of key and salt, got {}",
                suite.kurento_name(),
                suite.key_salt_len(),
                bytes.len()
            )));
        }
        Ok(Self { suite, bytes })
    }

    /// A random key.
    pub fn generate(suite: CryptoSuite) -> Self {
        let mut bytes = vec![0u8; suite.key_salt_len()];
        crate::webrtc::fill_random(&mut bytes);
        Self { suite, bytes }
    }

    /// An SRTP context (one direction) keyed with it.
    pub fn context(&self) -> Result<Context, RtpError> {
        let provider = rtc::crypto::default_provider()
            .map_err(|e| RtpError::BadKey(format!("no crypto provider: {e}")))?;
        let profile = self.suite.profile();
        let (key, salt) = self.bytes.split_at(profile.key_len());
        Context::new(key, salt, profile, None, None, provider.crypto())
            .map_err(|e| RtpError::BadKey(e.to_string()))
    }
}

/// One `a=crypto` attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CryptoAttribute {
    /// Its tag, which an answer repeats.
    pub tag: u32,
    /// The key its sender encrypts with.
    pub key: MasterKey,
    /// The key's lifetime in packets, when the line gives one.
    pub lifetime: Option<u64>,
}

impl CryptoAttribute {
    /// Reads an attribute value (`1 AES_CM_128_HMAC_SHA1_80 inline:KEY[|lifetime]`); `None` for
    /// what rkms cannot use: an unknown suite, several keys, an MKI, session parameters.
    pub fn parse(value: &str) -> Result<Option<Self>, RtpError> {
        let bad = || RtpError::Sdp(format!("bad a=crypto attribute '{value}'"));
        let mut fields = value.split_ascii_whitespace();
        let (Some(tag), Some(suite), Some(params)) = (fields.next(), fields.next(), fields.next())
        else {
            return Err(bad());
        };
        let tag: u32 = tag.parse().map_err(|_| bad())?;
        let Some(suite) = CryptoSuite::from_sdp_name(suite) else {
            return Ok(None);
        };
        if fields.next().is_some() || params.contains(';') {
            return Ok(None);
        }
        let Some(inline) = params.strip_prefix("inline:") else {
            return Err(bad());
        };
        let mut parts = inline.split('|');
        let encoded = parts.next().unwrap_or_default();
        let mut lifetime = None;
        for part in parts {
            // An MKI (`n:len`) is not supported.
            if part.contains(':') {
                return Ok(None);
            }
            lifetime = Some(parse_lifetime(part).ok_or_else(bad)?);
        }
        let bytes = BASE64.decode(encoded).map_err(|_| bad())?;
        Ok(Some(Self {
            tag,
            key: MasterKey::new(suite, bytes)?,
            lifetime,
        }))
    }

    /// The attribute value.
    pub fn value(&self) -> String {
        let mut value = format!(
            "{} {} inline:{}",
            self.tag,
            self.key.suite.sdp_name(),
            BASE64.encode(&self.key.bytes)
        );
        if let Some(lifetime) = self.lifetime {
            value.push('|');
            if lifetime.is_power_of_two() {
                value.push_str(&format!("2^{}", lifetime.trailing_zeros()));
            } else {
                value.push_str(&lifetime.to_string());
            }
        }
        value
    }
}

/// A key lifetime: `2^N` or a decimal count, at least 1.
fn parse_lifetime(text: &str) -> Option<u64> {
    let n = match text.strip_prefix("2^") {
        Some(exp) => 1u64.checked_shl(exp.parse().ok()?)?,
        None => text.parse().ok()?,
    };
    (n > 0).then_some(n)
}

/// RFC 3711 §9.2: at most 2^48 SRTP packets under one master key.
const SRTP_MAX_PACKETS: u64 = 1 << 48;
/// RFC 3711 §9.2: at most 2^31 SRTCP packets under one master key.
const SRTCP_MAX_PACKETS: u64 = 1 << 31;
/// How many packets before a key's end OnKeySoftLimit is raised: libsrtp's 2^16, or a tenth of
/// the lifetime for lifetimes under ten times that, so short lifetimes still get a warning
/// before their end.
const SOFT_MARGIN: u64 = 1 << 16;

/// Whether SRTP or SRTCP packets are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packets {
    /// SRTP.
    Rtp,
    /// SRTCP.
    Rtcp,
}

/// What a packet counted against a key's lifetime may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// Go on.
    Fresh,
    /// Go on; this packet reached the soft limit, the first one of the key to (raise
    /// OnKeySoftLimit).
    SoftLimit,
    /// The key is spent: drop the packet.
    Expired,
}

/// How many packets one master key has protected or unprotected, against its lifetime. Shared
/// by the threads using the key (one direction of an RtpEndpoint: its key's SRTP and SRTCP).
#[derive(Debug)]
pub struct KeyUsage {
    rtp: AtomicU64,
    rtcp: AtomicU64,
    rtp_limit: u64,
    rtcp_limit: u64,
    soft_reached: AtomicBool,
    expiry_logged: AtomicBool,
}

impl KeyUsage {
    /// A key's count from zero; `lifetime` from its `a=crypto` line, capped by RFC 3711's.
    pub fn new(lifetime: Option<u64>) -> Self {
        let cap = |max: u64| lifetime.map_or(max, |l| l.min(max));
        Self {
            rtp: AtomicU64::new(0),
            rtcp: AtomicU64::new(0),
            rtp_limit: cap(SRTP_MAX_PACKETS),
            rtcp_limit: cap(SRTCP_MAX_PACKETS),
            soft_reached: AtomicBool::new(false),
            expiry_logged: AtomicBool::new(false),
        }
    }

    fn counter(&self, packets: Packets) -> (&AtomicU64, u64) {
        match packets {
            Packets::Rtp => (&self.rtp, self.rtp_limit),
            Packets::Rtcp => (&self.rtcp, self.rtcp_limit),
        }
    }

    /// Whether the key can take no more `packets` (checked before unprotecting, so that only
    /// authentic packets are counted).
    pub fn expired(&self, packets: Packets) -> bool {
        let (count, limit) = self.counter(packets);
        // The packet numbered `limit` is the first refused: RFC 4568 §6.1 wants fewer packets
        // than the lifetime.
        count.load(Ordering::Relaxed) + 1 >= limit
    }

    /// Counts one more of `packets` under the key. Packets are numbered from 1; those numbered
    /// `lifetime` and beyond are refused.
    pub fn count(&self, packets: Packets) -> KeyState {
        let (count, limit) = self.counter(packets);
        let n = count.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= limit {
            if !self.expiry_logged.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    packets = ?packets,
                    limit,
                    "rtp endpoint: an SDES key reached the end of its lifetime; its packets are \
                     dropped until a renegotiation brings a new key"
                );
            }
            return KeyState::Expired;
        }
        if n >= limit - SOFT_MARGIN.min(limit / 10)
            && !self.soft_reached.swap(true, Ordering::Relaxed)
        {
            return KeyState::SoftLimit;
        }
        KeyState::Fresh
    }

    /// Whether the key has reached its soft limit or its end (a renegotiation should bring a
    /// new one).
    pub fn worn(&self) -> bool {
        self.soft_reached.load(Ordering::Relaxed) || self.expiry_logged.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_base64_keys_are_checked_against_the_suite() {
        let suite = CryptoSuite::from_kurento("AES_128_CM_HMAC_SHA1_80").expect("known");
        let text = "0123456789abcdefghijklmnopqrst";
        let plain = MasterKey::from_sdes(suite, Some(text), None).expect("30 bytes");
        let b64 = MasterKey::from_sdes(suite, None, Some(&BASE64.encode(text))).expect("30 bytes");
        assert_eq!(plain, b64);
        assert!(matches!(
            MasterKey::from_sdes(suite, Some("short"), None),
            Err(RtpError::BadKey(_))
        ));
        assert!(matches!(
            MasterKey::from_sdes(suite, None, Some("%%%")),
            Err(RtpError::BadKey(_))
        ));
        let long = CryptoSuite::Aes256CmHmacSha1_32;
        assert!(MasterKey::from_sdes(long, Some(text), None).is_err());
        assert_eq!(MasterKey::generate(long).bytes.len(), 46);
        assert_ne!(MasterKey::generate(suite), MasterKey::generate(suite));
        assert_eq!(CryptoSuite::from_kurento("AES_CM_128_HMAC_SHA1_80"), None);
    }

    #[test]
    fn crypto_attributes_round_trip_and_skip_what_rkms_cannot_use() {
        let key = MasterKey::generate(CryptoSuite::Aes256CmHmacSha1_80);
        let attr = CryptoAttribute {
            tag: 3,
            key,
            lifetime: None,
        };
        let value = attr.value();
        assert!(value.starts_with("3 AES_256_CM_HMAC_SHA1_80 inline:"));
        assert_eq!(CryptoAttribute::parse(&value).expect("parses"), Some(attr));

        let ffmpeg =
            "1 AES_CM_128_HMAC_SHA1_80 inline:MDEyMzQ1Njc4OWFiY2RlZmdoaWprbG1ub3BxcnN0|2^31";
        let parsed = CryptoAttribute::parse(ffmpeg)
            .expect("parses")
            .expect("usable");
        assert_eq!(parsed.key.suite, CryptoSuite::Aes128CmHmacSha1_80);
        assert_eq!(parsed.lifetime, Some(1 << 31));
        assert!(parsed.value().ends_with("|2^31"), "{}", parsed.value());
        let decimal = ffmpeg.replace("2^31", "1000");
        let counted = CryptoAttribute::parse(&decimal)
            .expect("parses")
            .expect("usable");
        assert_eq!(counted.lifetime, Some(1000));
        assert_eq!(
            CryptoAttribute::parse(&counted.value()).expect("parses"),
            Some(counted)
        );
        assert_eq!(
            parsed.key,
            MasterKey::from_sdes(
                parsed.key.suite,
                Some("0123456789abcdefghijklmnopqrst"),
                None
            )
            .expect("key")
        );
        for unusable in [
            "1 F8_128_HMAC_SHA1_80 inline:MDEyMzQ1Njc4OWFiY2RlZmdoaWprbG1ub3BxcnN0",
            "1 AES_CM_128_HMAC_SHA1_80 inline:MDEyMzQ1Njc4OWFiY2RlZmdoaWprbG1ub3BxcnN0|2^20|1:4",
            "1 AES_CM_128_HMAC_SHA1_80 inline:MDEyMzQ1Njc4OWFiY2RlZmdoaWprbG1ub3BxcnN0 UNENCRYPTED_SRTP",
        ] {
            assert_eq!(CryptoAttribute::parse(unusable).expect("parses"), None);
        }
        for bad in [
            "x AES_CM_128_HMAC_SHA1_80 inline:AAAA",
            "1 AES_CM_128_HMAC_SHA1_80",
            "1 AES_CM_128_HMAC_SHA1_80 key:AAAA",
            "1 AES_CM_128_HMAC_SHA1_80 inline:AAAA",
            "1 AES_CM_128_HMAC_SHA1_80 inline:MDEyMzQ1Njc4OWFiY2RlZmdoaWprbG1ub3BxcnN0|2^x",
            "1 AES_CM_128_HMAC_SHA1_80 inline:MDEyMzQ1Njc4OWFiY2RlZmdoaWprbG1ub3BxcnN0|0",
            "1 AES_CM_128_HMAC_SHA1_80 inline:MDEyMzQ1Njc4OWFiY2RlZmdoaWprbG1ub3BxcnN0|2^64",
        ] {
            assert!(CryptoAttribute::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_key_protects_what_the_same_key_unprotects() {
        let key = MasterKey::generate(CryptoSuite::Aes128CmHmacSha1_32);
        let mut rtp = vec![0x80, 96, 0, 1, 0, 0, 0, 9, 0, 0, 0, 7];
        rtp.extend_from_slice(b"payload");
        let protected = key.context().expect("ctx").encrypt_rtp(&rtp).expect("enc");
        assert_eq!(protected.len(), rtp.len() + 4);
        let clear = key
            .context()
            .expect("ctx")
            .decrypt_rtp(&protected)
            .expect("dec");
        assert_eq!(&clear[..], &rtp[..]);
        let other = MasterKey::generate(CryptoSuite::Aes128CmHmacSha1_32);
        assert!(
            other
                .context()
                .expect("ctx")
                .decrypt_rtp(&protected)
                .is_err()
        );
    }

    #[test]
    fn a_key_counts_down_to_a_soft_limit_then_expires() {
        // 2^10 packets: the soft limit a tenth before the end, the 1024th packet refused.
        let usage = KeyUsage::new(Some(1 << 10));
        let states: Vec<KeyState> = (0..1100).map(|_| usage.count(Packets::Rtp)).collect();
        let soft: Vec<usize> = (0..states.len())
            .filter(|&i| states[i] == KeyState::SoftLimit)
            .collect();
        assert_eq!(
            soft,
            [921],
            "packet 922 of 1024 reaches the soft limit, once"
        );
        assert!(states[..1023].iter().all(|s| *s != KeyState::Expired));
        assert!(states[1023..].iter().all(|s| *s == KeyState::Expired));
        assert!(usage.worn() && usage.expired(Packets::Rtp));
        // SRTCP has a count of its own.
        assert!(!usage.expired(Packets::Rtcp));
        assert_eq!(usage.count(Packets::Rtcp), KeyState::Fresh);

        // Long lifetimes warn 2^16 packets before their end; RFC 3711 caps SRTCP at 2^31.
        let long = KeyUsage::new(Some(1 << 20));
        long.rtp.store((1 << 20) - (1 << 16) - 1, Ordering::Relaxed);
        assert_eq!(long.count(Packets::Rtp), KeyState::SoftLimit);
        let default = KeyUsage::new(None);
        default.rtcp.store((1 << 31) - 2, Ordering::Relaxed);
        assert!(!default.expired(Packets::Rtcp));
        assert_eq!(default.count(Packets::Rtcp), KeyState::SoftLimit);
        assert_eq!(default.count(Packets::Rtcp), KeyState::Expired);
        assert!(!KeyUsage::new(None).worn());
    }
}
