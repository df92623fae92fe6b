//! `rkms loadtest floor`: the least CPU any SFU can spend forwarding one packet to one
//! subscriber: one SRTP protect plus one UDP `send_to` of the same packet, on one thread,
//! measured on this machine in the same run as the servers it is compared with.
//!
//! A receiver thread drains the destination socket so that the kernel's path is the real one
//! (not a full queue's early drop); only the sending thread's CPU is counted.

use std::net::UdpSocket;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::Args;
use rtc::srtp::context::Context;
use rtc::srtp::protection_profile::ProtectionProfile;
use serde::Serialize;

use crate::Error;

#[derive(Debug, Args)]
pub struct FloorArgs {
    /// RTP payload bytes of the packet.
    #[arg(long, default_value_t = 1100)]
    pub packet_size: usize,
    /// Packets per measurement (each is repeated three times; the median counts).
    #[arg(long, default_value_t = 50_000)]
    pub iterations: u32,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
pub struct FloorFigure {
    pub profile: &'static str,
    /// CPU µs of one protect.
    pub protect_us: f64,
    /// CPU µs of one protect plus one `send_to`.
    pub protect_send_us: f64,
}

#[derive(Debug, Serialize)]
pub struct FloorReport {
    pub scenario: &'static str,
    pub packet_size: usize,
    pub iterations: u32,
    pub profiles: Vec<FloorFigure>,
}

fn thread_cpu() -> Duration {
    // SAFETY: getrusage only writes the struct it is given; all-zero is a valid rusage.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_THREAD, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn io_err(e: std::io::Error) -> Error {
    Error::Peer(format!("floor socket: {e}"))
}

pub async fn run(args: FloorArgs) -> Result<(), Error> {
    let report = tokio::task::spawn_blocking(move || measure(&args).map(|r| (r, args)))
        .await
        .map_err(|e| Error::Peer(e.to_string()))?;
    let (report, args) = report?;
    println!(
        "floor ({}-byte payload, median of 3 x {} packets, one thread):",
        report.packet_size, report.iterations
    );
    for f in &report.profiles {
        println!(
            "{:>22}  protect {:.2} us, protect + send_to {:.2} us per packet",
            f.profile, f.protect_us, f.protect_send_us
        );
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report).unwrap_or_default();
        std::fs::write(path, text).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
    }
    Ok(())
}

fn measure(args: &FloorArgs) -> Result<FloorReport, Error> {
    let iterations = args.iterations.max(1);
    let receiver = UdpSocket::bind("127.0.0.1:0").map_err(io_err)?;
    receiver
        .set_read_timeout(Some(Duration::from_millis(50)))
        .map_err(io_err)?;
    let to = receiver.local_addr().map_err(io_err)?;
    let sender = UdpSocket::bind("127.0.0.1:0").map_err(io_err)?;
    let stop = Arc::new(AtomicBool::new(false));
    let drain_stop = stop.clone();
    let drain = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while !drain_stop.load(Ordering::Relaxed) {
            let _ = receiver.recv_from(&mut buf);
        }
    });
    let provider = rtc::crypto::default_provider().map_err(|e| Error::Peer(e.to_string()))?;
    let mut profiles = Vec::new();
    for (name, profile) in [
        ("AEAD_AES_128_GCM", ProtectionProfile::AeadAes128Gcm),
        (
            "AES_CM_128_HMAC_SHA1_80",
            ProtectionProfile::Aes128CmHmacSha1_80,
        ),
    ] {
        let key = vec![7u8; profile.key_len()];
        let salt = vec![9u8; profile.salt_len()];
        let mut ctx = Context::new(&key, &salt, profile, None, None, provider.crypto())
            .map_err(|e| Error::Peer(e.to_string()))?;
        let mut packet = vec![0u8; 12 + args.packet_size];
        packet[0] = 0x80;
        packet[1] = 96;
        packet[8..12].copy_from_slice(&0x1234_5678u32.to_be_bytes());
        let mut seq = 0u16;
        let mut one = |send: bool| -> Result<(), Error> {
            seq = seq.wrapping_add(1);
            packet[2..4].copy_from_slice(&seq.to_be_bytes());
            let out = ctx
                .encrypt_rtp(&packet)
                .map_err(|e| Error::Peer(e.to_string()))?;
            if send {
                let _ = sender.send_to(&out, to);
            }
            Ok(())
        };
        let mut timed = |send: bool| -> Result<f64, Error> {
            let mut runs = Vec::new();
            for _ in 0..3 {
                let start = thread_cpu();
                for _ in 0..iterations {
                    one(send)?;
                }
                runs.push((thread_cpu() - start).as_secs_f64() * 1e6 / f64::from(iterations));
            }
            runs.sort_by(f64::total_cmp);
            Ok(runs[1])
        };
        let protect_us = timed(false)?;
        let protect_send_us = timed(true)?;
        profiles.push(FloorFigure {
            profile: name,
            protect_us,
            protect_send_us,
        });
    }
    stop.store(true, Ordering::Relaxed);
    let _ = drain.join();
    Ok(FloorReport {
        scenario: "floor",
        packet_size: args.packet_size,
        iterations,
        profiles,
    })
}
