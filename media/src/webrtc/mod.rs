//! WebRTC peers for rkms: `rtc` 0.21 sans-IO peer connections driven by rkms's own socket loop,
//! with a forwarding fast path of our own for media.
//!
//! # The spike and the decision
//!
//! `examples/forward_spike.rs` runs 1 publisher and N subscribers as rkms-side `rtc` peers on
//! ONE UDP socket from one thread's mio loop (demultiplexed by remote address, new addresses
//! learned from the STUN USERNAME), against client `rtc` peers in another thread doing real
//! ICE + DTLS + SRTP. The publisher sends 1,080-byte VP8 payloads at 170 packets/s (1.5 Mbps).
//! Server-thread CPU (user+sys, `getrusage(RUSAGE_THREAD)`) per forwarded packet, after taking
//! out the CPU of an idle phase that receives the same packets without forwarding them; floor =
//! one in-place SRTP protect + one `send_to` of the same packet, measured in the same run:
//!
//! ```text
//! cargo build --release -p rkms-media --example forward_spike
//! target/release/examples/forward_spike --subscribers 100 --seconds 5
//! ```
//!
//! | subscribers | floor µs | `crate` µs (× floor) | `fast` µs (× floor) | `batch` µs (× floor) |
//! |---|---|---|---|---|
//! | 10   | 3.48 | 18.9 (5.4×) | 6.4 (1.8×) | 6.7 (1.9×) |
//! | 100  | 4.32 | 19.9 (4.6×) | 5.9 (1.4×) | 5.0 (1.2×) |
//! | 200  | 4.17 | 16.6 (4.0×) | 5.3 (1.3×) | 4.7 (1.1×) |
//! | 500  | 3.91 | 17.2 (4.4×) | 3.7 (1.0×) | 4.3 (1.1×) |
//! | 1000 | 2.67 | 19.0 (7.1×) | 4.1 (1.5×) | 3.8 (1.4×) |
//!
//! (2 shared vCPUs, AES-128-GCM, loopback: `send_to` there also pays the receiver's side, which
//! is why the floor is ~3-4 µs while protect alone is ~0.4 µs. Single runs; the floor moves by
//! ±30% between runs on this machine, so compare within a row.)
//!
//! - `crate`: header rewritten, `RTCRtpSender::write_rtp`, `poll_write`, `send_to`. ~17-20 µs,
//!   and it saturates: at 500 subscribers it forwarded only 57% of the packets (one core).
//! - `fast`: the rewritten header and the shared payload are written once into a reusable
//!   buffer and protected in place ([`srtp_out::SrtpOut`]) with the session's own negotiated key
//!   ([`srtp_tap`]); one `send_to` per subscriber. At or near the floor: 4-6 µs.
//! - `batch`: as `fast`, leaving in `sendmmsg` batches of 64 ([`udp::SendBatch`]). On loopback
//!   it is within noise of `fast` (the kernel's per-datagram work dominates, not the syscall).
//!
//! 1000 subscribers of one 1.5 Mbps publisher held on one server thread with the fast path
//! (170k forwarded packets/s at ~4 µs = ~0.7 core), where Janus needs ~35-41 µs per packet here.
//! Memory: ~150 KB per `rtc` peer connection (310 MB for 2,002 peers, both sides).
//!
//! **Decision:** `rtc` sans-IO peers driven by rkms's own socket loop (the async `webrtc`
//! wrapper is not used); `rtc` keeps ICE, DTLS, RTCP, SCTP/data channels and SDP; forwarded RTP
//! never enters the crate's send path: it goes through the routing core's per-sink rewriter
//! and the in-place SRTP fast path, and leaves in `sendmmsg` batches.
//!
//! # The production path, measured the same way
//!
//! `examples/forward_host.rs` drives the real [`WebRtcHost`] (socket loop, router, per-sink
//! rewriting with header extensions, in-place SRTP, `sendmmsg`) with the same client peers:
//!
//! ```text
//! target/release/examples/forward_host --subscribers 500 --seconds 5
//! ```
//!
//! | subscribers | floor µs | host µs per forwarded packet (× floor) | loop thread load |
//! |---|---|---|---|
//! | 10  | 3.39 | 5.89 (1.7×) | 2% of a core |
//! | 100 | 3.64 | 5.18 (1.4×) | 11% |
//! | 500 | 2.53 | 2.94 (1.2×) | 29% |
//!
//! (The idle loop costs ~80-240 µs per *source* packet at 170 packets/s — timers of every peer —
//! and is taken out, as in the spike. At 1000 subscribers this example's single client thread,
//! whose 1001 peers are the ICE-controlling side here, saturates before they all connect; the
//! spike, where rkms offers, held 1000.)
//!
//! # Design of the peer layer
//!
//! **Threads.** A [`WebRtcHost`] runs `threads` socket-loop threads (`rkms-webrtc-N`, default 1).
//! Each binds its own UDP socket per bind address (a port from the configured range) and owns
//! its endpoints' `rtc::RTCPeerConnection`s, its [`crate::routing::Router`] and its send batches.
//! Nothing on a loop thread is shared, so nothing is locked. Endpoints are placed by
//! [`EndpointOptions::group`] (the pipeline): a pipeline's media never leaves its thread, and
//! connecting endpoints of different threads is refused. Signaling (tokio tasks) talks to it through
//! [`WebRtcHost`] and [`Endpoint`]: each call is a command on a channel plus a `mio::Waker` poke,
//! answered on a `tokio::sync::oneshot` (await it; no worker thread is blocked). Events go back on
//! one unbounded `tokio::sync::mpsc` channel per endpoint (the loop never waits on a consumer).
//! The expensive part of creating an endpoint (DTLS certificate key generation) runs in the
//! caller's thread before the peer is handed to the loop.
//!
//! **Where a packet travels.** `recv_from` on the shared socket → the endpoint is found by remote
//! address, or for a new address by the local ufrag in the STUN USERNAME → `handle_read` on its
//! peer connection (ICE, DTLS, SRTP decrypt, interceptors: NACK generation, receiver reports,
//! TWCC feedback) → `poll_read` yields the RTP packet (header + `Bytes` payload) → the router
//! walks the source pad's sinks; for each, the sink's rewriter gives sequence number and
//! timestamp, and the sink peer writes header (its SSRC and payload type for the codec) and
//! payload straight into a `sendmmsg` slot and protects it in place → the batch leaves when full
//! or at the end of the loop pass. One memcpy of the payload per sink (into the datagram it is
//! encrypted in), no allocation, no lock, no channel per forwarded packet.
//!
//! **Feedback.** A sink's PLI/FIR for rkms's SSRC becomes a keyframe request, merged and
//! rate-limited per source by the router, sent to the publisher as a PLI through its receiver; a
//! new video sink triggers one. A sink's NACK is answered from the source's history (last 512
//! packets), renumbered for that sink. RTCP rkms sends (PLI, receiver reports, TWCC feedback,
//! REMB) goes through the crate, and so do the sender reports rkms writes once a second for each
//! stream it forwards (the crate's report interceptor never sees fast-path packets).
//!
//! **Bandwidth.** Publishers get transport-wide-cc feedback from the crate's TWCC receiver (their
//! congestion control measures the uplink) and a REMB bound from rkms: the smallest demand of
//! their congested subscribers and the Kurento bandwidth properties ([`feedback`] explains the
//! rules); `maxVideoRecvBandwidth`/`maxAudioRecvBandwidth` are also announced as `b=AS`.
//!
//! **Header extensions** on forwarded packets are written per sink under the sink's negotiated
//! ids ([`extensions`]): its `mid`, a fresh `abs-send-time`, and the source's `ssrc-audio-level`
//! and `video-orientation` values; transport-wide-cc, rid and the rest are not carried.
//!
//! **Not yet:** moving a pipeline between threads to balance load; a transport-wide-cc
//! sequence of our own on forwarded packets; sender reports that carry the publisher's own
//! RTP/NTP mapping (ours map the last forwarded timestamp to the wall clock at forwarding time,
//! so audio/video sync is as good as the arrival jitter); RTX on the send side; a
//! send-side estimate of each subscriber's downlink from transport-wide-cc (subscribers' REMB
//! is used instead, see [`feedback`]).
//!
//! # Safety of the fast path's keys
//!
//! The fast path protects only the SSRCs rkms forwards on; the crate's own context protects what
//! the crate sends itself (RTCP, and any RTP written through `write_rtp`, which rkms does not do
//! on forwarded SSRCs). So no (SSRC, packet index) pair is protected twice under one key.
//! The client side decrypts the fast path's packets (the spike's last line counts them), and a
//! unit test compares [`srtp_out::SrtpOut`] byte for byte with the crate's SRTP context.

pub mod codecs;
pub mod congestion;
mod data;
mod error;
mod events;
pub mod extensions;
mod feedback;
mod host;
mod ice_servers;
mod peer;
pub mod peer_io;
mod resend_budget;
mod server_candidates;
mod settings;
mod sockets;
pub mod srtp_out;
pub mod srtp_tap;
mod stats;
mod taps;
mod tcp;
mod turn_tcp;
pub mod udp;

pub use data::DataChannelOptions;
pub use error::WebRtcError;
pub use events::{ConnectionState, DtlsState, EndpointEvent, FlowState, IceComponentState};
pub use host::{Endpoint, WebRtcHost};
pub use ice_servers::{IceServers, TurnServer, TurnTransport, TurnUrlError};
pub(crate) use peer::{fill_random, ntp_now, random_u32};
pub use settings::{BandwidthLimits, EndpointOptions, NetworkSettings};
pub use stats::{CandidatePairStats, EndpointStats, RtpStreamStats};
pub use taps::{ElementPort, KeyframeHook, SinkPacket, SinkSenderReport};
