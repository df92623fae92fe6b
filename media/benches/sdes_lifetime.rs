//! What counting SDES packets against their key's lifetime adds to an RtpEndpoint's send path:
//! protecting one 1,100-byte RTP packet (AES-128-CM, HMAC-SHA1-80), without and with the
//! [`KeyUsage::count`] that now precedes it. Both run in the same process, alternated.
//!
//! Run: `cargo bench -p rkms-media --bench sdes_lifetime`.
//!
//! Figures (2 shared vCPUs, load average ~1.4, 2026-12-02): protect alone 1.35, 1.58, 1.39 µs;
//! counted 1.43, 1.41, 1.48 µs in the same three rounds: 1.05×, 0.90×, 1.07×, within the noise.

use std::hint::black_box;

use criterion::Criterion;
use rkms_media::elements::rtp::sdes::{CryptoSuite, KeyState, KeyUsage, MasterKey, Packets};

fn packet(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 96];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 9, 0, 0, 0, 7]);
    p.resize(12 + 1_100, 0xab);
    p
}

fn bench(c: &mut Criterion) {
    let key = MasterKey::generate(CryptoSuite::Aes128CmHmacSha1_80);
    let mut group = c.benchmark_group("sdes_protect");
    for round in 0..3 {
        let mut plain = key.context().expect("context");
        let mut buf = packet(0);
        let mut seq = 0u16;
        group.bench_function(format!("protect/{round}"), |b| {
            b.iter(|| {
                seq = seq.wrapping_add(1);
                buf[2..4].copy_from_slice(&seq.to_be_bytes());
                black_box(plain.encrypt_rtp(&buf).expect("protect"))
            })
        });
        let mut counted = key.context().expect("context");
        let usage = KeyUsage::new(None);
        group.bench_function(format!("count_and_protect/{round}"), |b| {
            b.iter(|| {
                seq = seq.wrapping_add(1);
                buf[2..4].copy_from_slice(&seq.to_be_bytes());
                if usage.count(Packets::Rtp) == KeyState::Expired {
                    return None;
                }
                Some(black_box(counted.encrypt_rtp(&buf).expect("protect")))
            })
        });
    }
    group.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
