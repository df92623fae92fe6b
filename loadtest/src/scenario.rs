//! The media scenarios (`one2many`, `group`, `loopback`): set sessions up at the ramp rate,
//! wait until every subscriber receives media, measure a steady window, report.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tokio::task::JoinSet;

use crate::Error;
use crate::engine::{Engine, EngineConfig, MediaProfile, PeerSpec, ShardReport};
use crate::stats::{Latency, Percentiles, loss_ratio};
use crate::target_janus::JanusTarget;
use crate::target_kurento::KurentoTarget;
use crate::usage::{ServerMeter, SocketDrops, own_cpu_seconds, udp_buffer_drops};

/// Which server the scenario drives.
#[derive(Debug, Clone, Copy, ValueEnum, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// rkms or KMS, over the Kurento protocol.
    Kurento,
    /// Janus, through its VideoRoom (and EchoTest for loopback) plugins.
    Janus,
}

#[derive(Debug, Clone, Args)]
pub struct MediaArgs {
    /// The server's Kurento WebSocket.
    #[arg(long, default_value = "ws://127.0.0.1:8888/kurento")]
    pub url: String,
    /// Which server to drive.
    #[arg(long, value_enum, default_value = "kurento")]
    pub target: TargetKind,
    /// Janus's WebSocket API (with `--target janus`).
    #[arg(long, default_value = "ws://127.0.0.1:8188/")]
    pub janus_url: String,
    /// New sessions per second while ramping up.
    #[arg(long, default_value_t = 50.0)]
    pub ramp_rate: f64,
    /// Seconds of the steady measurement window.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds between the last subscriber receiving media and the window.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Seconds to wait for every subscriber's first media before measuring anyway.
    #[arg(long, default_value_t = 30.0)]
    pub setup_timeout: f64,
    /// Video bitrate of each publisher, bits per second (0: no video).
    #[arg(long, default_value_t = 1_500_000)]
    pub video_bitrate: u64,
    /// Audio bitrate of each publisher, bits per second (0: no audio).
    #[arg(long, default_value_t = 64_000)]
    pub audio_bitrate: u64,
    /// Video frames per second.
    #[arg(long, default_value_t = 30)]
    pub fps: u32,
    /// RTP payload bytes of a full video packet.
    #[arg(long, default_value_t = 1100)]
    pub packet_size: usize,
    /// Spread a frame's packets at this multiple of the video bitrate, as a browser's pacer
    /// does (2.5 in Chrome); 0 sends each frame's packets back to back.
    #[arg(long, default_value_t = 2.5)]
    pub pacing: f64,
    /// Peer threads of this client.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Decrypt and check one received packet in this many (0: enough to keep ~4,000
    /// decryptions a second); every packet still counts for loss and jitter.
    #[arg(long, default_value_t = 0)]
    pub sample_every: u64,
    /// Address the client peers bind and advertise.
    #[arg(long, default_value = "127.0.0.1")]
    pub local_ip: IpAddr,
    /// The server's process id: CPU and memory are read from /proc (otherwise from the
    /// Kurento ServerManager; Janus has no equivalent).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Also draw latency and CPU over time to this SVG file.
    #[arg(long)]
    pub plot: Option<PathBuf>,
}

/// The sessions a scenario sets up.
#[derive(Debug, Clone, Copy)]
pub enum Plan {
    /// `publishers` rooms, each with `subscribers` receivers.
    One2many {
        publishers: usize,
        subscribers: usize,
    },
    /// One room, every participant publishes and receives every other one.
    Group { participants: usize },
    /// Peers whose media the server sends back to them.
    Loopback { peers: usize },
}

impl Plan {
    fn name(self) -> &'static str {
        match self {
            Plan::One2many { .. } => "one2many",
            Plan::Group { .. } => "group",
            Plan::Loopback { .. } => "loopback",
        }
    }

    fn publishers(self) -> usize {
        match self {
            Plan::One2many { publishers, .. } => publishers,
            Plan::Group { participants } => participants,
            Plan::Loopback { peers } => peers,
        }
    }

    /// Receiving sessions.
    fn subscribers(self) -> usize {
        match self {
            Plan::One2many {
                publishers,
                subscribers,
            } => publishers * subscribers,
            Plan::Group { participants } => participants * participants.saturating_sub(1),
            Plan::Loopback { peers } => peers,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TimelinePoint {
    pub t_s: f64,
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    pub server_cpu_cores: Option<f64>,
    pub client_cpu_cores: f64,
    pub packets_received: u64,
}

#[derive(Debug, Serialize)]
pub struct MediaReport {
    pub scenario: &'static str,
    pub target: TargetKind,
    pub url: String,
    pub publishers: usize,
    pub subscribers: usize,
    pub duration_s: f64,
    pub video_bitrate: u64,
    pub audio_bitrate: u64,
    pub fps: u32,
    pub packet_size: usize,
    pub pacing: f64,
    pub sample_every: u64,
    pub sessions_failed: u64,
    pub subscribers_with_media: u64,
    pub packets_sent: u64,
    pub packets_received: u64,
    /// Fewest and most packets a single subscriber received in the window.
    pub subscriber_packets_min: u64,
    pub subscriber_packets_max: u64,
    pub bytes_received: u64,
    pub packets_expected: u64,
    pub packets_lost: u64,
    pub loss_ratio: f64,
    pub packets_verified: u64,
    pub srtp_errors: u64,
    pub latency_ms: Percentiles,
    pub jitter_ms: f64,
    pub setup_ms: Percentiles,
    pub server_cpu_s: Option<f64>,
    pub server_rss_bytes: Option<u64>,
    pub server_rss_baseline_bytes: Option<u64>,
    pub server_rss_per_subscriber_bytes: Option<f64>,
    pub server_cpu_us_per_forwarded_packet: Option<f64>,
    pub client_cpu_s: f64,
    /// Datagrams the kernel dropped on this machine during the window for lack of receive /
    /// send buffer space (any process): loss that a starved process, not the network, caused.
    pub udp_receive_buffer_drops: Option<u64>,
    pub udp_send_buffer_drops: Option<u64>,
    /// Receive-buffer drops in the window at the server's own UDP sockets (with
    /// `--server-pid`), and how many sockets it held: a lossy run whose drops are here lost the
    /// packets because the server did not read fast enough.
    pub server_socket_drops: Option<u64>,
    pub server_udp_sockets: Option<usize>,
    /// The same at this client's sockets (the subscribers' and publishers').
    pub client_socket_drops: Option<u64>,
    pub client_udp_sockets: Option<usize>,
    pub timeline: Vec<TimelinePoint>,
}

enum Server {
    Kurento(Arc<KurentoTarget>),
    Janus(Arc<JanusTarget>),
}

/// What a subscriber session subscribes to.
#[derive(Clone)]
enum Source {
    Kurento { pipeline: String, endpoint: String },
    Janus(u64),
}

pub async fn run(args: MediaArgs, plan: Plan) -> Result<(), Error> {
    let profile = MediaProfile {
        video_bps: args.video_bitrate,
        audio_bps: args.audio_bitrate,
        fps: args.fps.max(1),
        packet_size: args.packet_size.clamp(64, 1400),
        pacing: args.pacing.max(0.0),
    };
    let sample_every = match args.sample_every {
        0 => {
            let pps = plan.subscribers() as f64 * (profile.video_pps() + 50.0);
            (pps / 4000.0).ceil().max(1.0) as u64
        }
        n => n,
    };
    let engine = Arc::new(Engine::start(EngineConfig {
        threads: args.threads,
        profile,
        local_ip: args.local_ip,
        sample_every,
    })?);
    let (server, meter) = match args.target {
        TargetKind::Kurento => {
            let k = KurentoTarget::connect(&args.url).await?;
            let meter = match args.server_pid {
                Some(pid) => ServerMeter::Proc(pid),
                None => ServerMeter::kurento(&args.url, k.clone()).await?,
            };
            (Server::Kurento(k), meter)
        }
        TargetKind::Janus => {
            let j = JanusTarget::connect(&args.janus_url, plan.publishers()).await?;
            let meter = args.server_pid.map_or(ServerMeter::None, ServerMeter::Proc);
            (Server::Janus(j), meter)
        }
    };
    let (_, rss_baseline) = meter.sample().await;
    engine.each(|s| s.set_sending(true)).await?;

    let (pipelines, signalling_failures) = set_up(&args, plan, &server, &engine).await?;
    let with_media = wait_for_media(&args, plan, &engine, signalling_failures).await?;
    tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;

    let (timeline, window) = measure(&args, &engine, &meter).await?;
    let reports = engine.each(|s| s.report()).await?;
    let latencies = engine.each(|s| s.window_latency.clone()).await?;
    let setups = engine.each(|s| s.setup.clone()).await?;

    engine.each(|s| s.set_sending(false)).await?;
    match &server {
        Server::Kurento(k) => {
            for p in &pipelines {
                let _ = k.release(p).await;
            }
            k.close().await;
        }
        Server::Janus(j) => j.close().await,
    }
    if let Ok(engine) = Arc::try_unwrap(engine) {
        engine.shutdown().await;
    }

    let report = build_report(
        &args,
        plan,
        sample_every,
        Figures {
            reports,
            latencies,
            setups,
            window,
            timeline,
            rss_baseline,
            signalling_failures,
            with_media,
        },
    );
    print_report(&report);
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report).unwrap_or_default();
        write_file(path, &text)?;
    }
    if let Some(path) = &args.plot {
        let title = format!(
            "{} on {:?}: {} publisher(s), {} subscriber(s)",
            report.scenario, report.target, report.publishers, report.subscribers
        );
        write_file(path, &crate::plot::svg(&title, &report.timeline))?;
    }
    Ok(())
}

fn write_file(path: &std::path::Path, text: &str) -> Result<(), Error> {
    std::fs::write(path, text).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })
}

fn bar(len: u64, message: &'static str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg:>12} [{elapsed_precise}] [{bar:40}] {pos}/{len} {prefix}",
    ) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(message);
    pb
}

/// Sets up every session; returns the pipelines to release and how many sessions failed.
async fn set_up(
    args: &MediaArgs,
    plan: Plan,
    server: &Server,
    engine: &Arc<Engine>,
) -> Result<(Vec<String>, u64), Error> {
    let total = (plan.publishers() + plan.subscribers()) as u64;
    let pb = bar(total, "ramping up");
    let mut pipelines = Vec::new();
    let mut failures = 0u64;
    let publisher = PeerSpec {
        send: true,
        receive: matches!(plan, Plan::Loopback { .. }),
        created: Instant::now(),
    };
    let interval = Duration::from_secs_f64(1.0 / args.ramp_rate.max(0.1));
    let mut ticker = tokio::time::interval(interval);
    let mut sessions = JoinSet::new();

    // Publishers (and loopback peers) first; then the subscribers, each in its own task.
    let mut sources = Vec::new();
    let shared_pipeline = match (server, plan) {
        (Server::Kurento(k), Plan::Group { .. }) => {
            let p = k.create_pipeline().await?;
            pipelines.push(p.clone());
            Some(p)
        }
        _ => None,
    };
    for _ in 0..plan.publishers() {
        ticker.tick().await;
        let spec = PeerSpec {
            created: Instant::now(),
            ..publisher
        };
        let loopback = matches!(plan, Plan::Loopback { .. });
        let made = match server {
            Server::Kurento(k) => {
                let pipeline = match &shared_pipeline {
                    Some(p) => p.clone(),
                    None => {
                        let p = k.create_pipeline().await?;
                        pipelines.push(p.clone());
                        p
                    }
                };
                k.endpoint(engine, &pipeline, spec, None, loopback)
                    .await
                    .map(|endpoint| Source::Kurento { pipeline, endpoint })
            }
            Server::Janus(j) if loopback => {
                j.loopback(engine, spec).await.map(|()| Source::Janus(0))
            }
            Server::Janus(j) => j.publish(engine, spec).await.map(Source::Janus),
        };
        match made {
            Ok(s) => sources.push(s),
            Err(e) => {
                failures += 1;
                pb.println(format!("publisher failed: {e}"));
            }
        }
        pb.inc(1);
    }
    // Subscribing needs a live publisher (Janus refuses a feed that is not publishing yet).
    let deadline = Instant::now() + Duration::from_secs_f64(args.setup_timeout);
    loop {
        let senders = engine.each(|s| s.senders_connected()).await?;
        let (up, all) = senders
            .iter()
            .fold((0, 0), |(u, a), (su, sa)| (u + su, a + sa));
        if up >= all || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if !matches!(plan, Plan::Loopback { .. }) {
        let per_source = match plan {
            Plan::One2many { subscribers, .. } => subscribers,
            _ => plan.publishers().saturating_sub(1),
        };
        for source in &sources {
            for _ in 0..per_source {
                ticker.tick().await;
                let (engine, source) = (engine.clone(), source.clone());
                let spec = PeerSpec {
                    send: false,
                    receive: true,
                    created: Instant::now(),
                };
                match server {
                    Server::Kurento(k) => {
                        let k = k.clone();
                        sessions.spawn(async move {
                            let Source::Kurento { pipeline, endpoint } = source else {
                                return Ok(());
                            };
                            k.endpoint(&engine, &pipeline, spec, Some(&endpoint), false)
                                .await
                                .map(drop)
                        });
                    }
                    Server::Janus(j) => {
                        let j = j.clone();
                        sessions.spawn(async move {
                            let Source::Janus(feed) = source else {
                                return Ok(());
                            };
                            j.subscribe(&engine, feed, spec).await
                        });
                    }
                }
                while let Some(done) = sessions.try_join_next() {
                    failures += session_outcome(&pb, done);
                }
            }
        }
    }
    while let Some(done) = sessions.join_next().await {
        failures += session_outcome(&pb, done);
    }
    pb.finish_and_clear();
    Ok((pipelines, failures))
}

fn session_outcome(
    pb: &ProgressBar,
    done: Result<Result<(), Error>, tokio::task::JoinError>,
) -> u64 {
    pb.inc(1);
    match done {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            pb.println(format!("subscriber failed: {e}"));
            1
        }
        Err(e) => {
            pb.println(format!("subscriber task: {e}"));
            1
        }
    }
}

/// Waits until every receiver that was set up has media (or the timeout); returns how many have.
async fn wait_for_media(
    args: &MediaArgs,
    plan: Plan,
    engine: &Arc<Engine>,
    failures: u64,
) -> Result<u64, Error> {
    let wanted = (plan.subscribers() as u64).saturating_sub(failures);
    let pb = bar(wanted, "first media");
    let deadline = Instant::now() + Duration::from_secs_f64(args.setup_timeout);
    loop {
        let progress = engine.each(|s| s.media_progress()).await?;
        let with: u64 = progress.iter().map(|p| p.0).sum();
        pb.set_position(with);
        if with >= wanted || Instant::now() >= deadline {
            pb.finish_and_clear();
            return Ok(with);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What the steady window measured.
struct Window {
    seconds: f64,
    udp_drops: Option<(u64, u64)>,
    /// Drops and sockets, see [`MediaReport::server_socket_drops`].
    server_socket_drops: Option<(u64, usize)>,
    client_socket_drops: Option<(u64, usize)>,
    server_cpu_s: Option<f64>,
    server_rss: Option<u64>,
    client_cpu_s: f64,
}

async fn measure(
    args: &MediaArgs,
    engine: &Arc<Engine>,
    meter: &ServerMeter,
) -> Result<(Vec<TimelinePoint>, Window), Error> {
    engine.each(|s| s.begin_window()).await?;
    let start = Instant::now();
    let (server_cpu0, _) = meter.sample().await;
    let client_cpu0 = own_cpu_seconds();
    let drops0 = udp_buffer_drops();
    let server_pid = meter.pid();
    let server_sockets0 = server_pid.and_then(SocketDrops::of);
    let client_sockets0 = SocketDrops::of(std::process::id());
    let pb = bar(args.duration.ceil() as u64, "measuring");
    let mut timeline = Vec::new();
    let (mut last_t, mut last_server, mut last_client, mut last_packets) =
        (0.0, server_cpu0, client_cpu0, 0u64);
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    let mut peak_rss = None;
    while start.elapsed().as_secs_f64() < args.duration {
        ticker.tick().await;
        let intervals = engine
            .each(|s| {
                let l = s.interval_latency.clone();
                s.interval_latency.clear();
                l
            })
            .await?;
        let mut latency = Latency::default();
        intervals.iter().for_each(|l| latency.merge(l));
        let packets: u64 = engine
            .each(|s| s.report().counters.packets_received)
            .await?
            .iter()
            .sum();
        let (server_cpu, rss) = meter.sample().await;
        peak_rss = peak_rss.max(rss);
        let client_cpu = own_cpu_seconds();
        let t = start.elapsed().as_secs_f64();
        let dt = (t - last_t).max(1e-3);
        let summary = (latency.count() > 0).then(|| latency.summary());
        timeline.push(TimelinePoint {
            t_s: t,
            latency_p50_ms: summary.map(|s| s.p50),
            latency_p99_ms: summary.map(|s| s.p99),
            server_cpu_cores: server_cpu.zip(last_server).map(|(a, b)| (a - b) / dt),
            client_cpu_cores: (client_cpu - last_client) / dt,
            packets_received: packets - last_packets,
        });
        pb.set_prefix(format!(
            "{} pkt/s, p99 {:.2} ms",
            packets - last_packets,
            summary.map_or(0.0, |s| s.p99)
        ));
        pb.inc(1);
        (last_t, last_server, last_client, last_packets) = (t, server_cpu, client_cpu, packets);
    }
    pb.finish_and_clear();
    let (server_cpu1, rss) = meter.sample().await;
    let since = |now: Option<SocketDrops>, before: Option<SocketDrops>| {
        now.zip(before).map(|(now, before)| now.since(&before))
    };
    Ok((
        timeline,
        Window {
            seconds: start.elapsed().as_secs_f64(),
            udp_drops: udp_buffer_drops()
                .zip(drops0)
                .map(|((r1, s1), (r0, s0))| (r1.saturating_sub(r0), s1.saturating_sub(s0))),
            server_socket_drops: since(server_pid.and_then(SocketDrops::of), server_sockets0),
            client_socket_drops: since(SocketDrops::of(std::process::id()), client_sockets0),
            server_cpu_s: server_cpu1.zip(server_cpu0).map(|(a, b)| a - b),
            server_rss: peak_rss.max(rss),
            client_cpu_s: own_cpu_seconds() - client_cpu0,
        },
    ))
}

struct Figures {
    reports: Vec<ShardReport>,
    latencies: Vec<Latency>,
    setups: Vec<Latency>,
    window: Window,
    timeline: Vec<TimelinePoint>,
    rss_baseline: Option<u64>,
    signalling_failures: u64,
    with_media: u64,
}

fn build_report(args: &MediaArgs, plan: Plan, sample_every: u64, f: Figures) -> MediaReport {
    let mut total = ShardReport::default();
    for r in &f.reports {
        let c = &r.counters;
        total.counters.packets_sent += c.packets_sent;
        total.counters.bytes_sent += c.bytes_sent;
        total.counters.packets_received += c.packets_received;
        total.counters.bytes_received += c.bytes_received;
        total.counters.packets_verified += c.packets_verified;
        total.counters.read_errors += c.read_errors;
        total.expected += r.expected;
        total.lost += r.lost;
        total.jitter_ms_sum += r.jitter_ms_sum;
        total.streams += r.streams;
        total.failed_peers += r.failed_peers;
        if let Some(m) = r.receiver_packets_min {
            total.receiver_packets_min = Some(total.receiver_packets_min.map_or(m, |t| t.min(m)));
        }
        total.receiver_packets_max = total.receiver_packets_max.max(r.receiver_packets_max);
    }
    let mut latency = Latency::default();
    f.latencies.iter().for_each(|l| latency.merge(l));
    let mut setup = Latency::default();
    f.setups.iter().for_each(|l| setup.merge(l));
    let received = total.counters.packets_received;
    let subscribers = plan.subscribers();
    let rss_per_subscriber = f
        .window
        .server_rss
        .zip(f.rss_baseline)
        .map(|(with, before)| with.saturating_sub(before) as f64 / subscribers.max(1) as f64);
    MediaReport {
        scenario: plan.name(),
        target: args.target,
        url: match args.target {
            TargetKind::Kurento => args.url.clone(),
            TargetKind::Janus => args.janus_url.clone(),
        },
        publishers: plan.publishers(),
        subscribers,
        duration_s: f.window.seconds,
        video_bitrate: args.video_bitrate,
        audio_bitrate: args.audio_bitrate,
        fps: args.fps,
        packet_size: args.packet_size,
        pacing: args.pacing,
        sample_every,
        sessions_failed: f.signalling_failures + total.failed_peers,
        subscribers_with_media: f.with_media,
        packets_sent: total.counters.packets_sent,
        packets_received: received,
        subscriber_packets_min: total.receiver_packets_min.unwrap_or(0),
        subscriber_packets_max: total.receiver_packets_max,
        bytes_received: total.counters.bytes_received,
        packets_expected: total.expected,
        packets_lost: total.lost,
        loss_ratio: loss_ratio(total.lost, total.expected),
        packets_verified: total.counters.packets_verified,
        srtp_errors: total.counters.read_errors,
        latency_ms: latency.summary(),
        jitter_ms: total.jitter_ms_sum / total.streams.max(1) as f64,
        setup_ms: setup.summary(),
        server_cpu_s: f.window.server_cpu_s,
        server_rss_bytes: f.window.server_rss,
        server_rss_baseline_bytes: f.rss_baseline,
        server_rss_per_subscriber_bytes: rss_per_subscriber,
        server_cpu_us_per_forwarded_packet: f
            .window
            .server_cpu_s
            .filter(|_| received > 0)
            .map(|s| s * 1e6 / received as f64),
        client_cpu_s: f.window.client_cpu_s,
        udp_receive_buffer_drops: f.window.udp_drops.map(|d| d.0),
        udp_send_buffer_drops: f.window.udp_drops.map(|d| d.1),
        server_socket_drops: f.window.server_socket_drops.map(|d| d.0),
        server_udp_sockets: f.window.server_socket_drops.map(|d| d.1),
        client_socket_drops: f.window.client_socket_drops.map(|d| d.0),
        client_udp_sockets: f.window.client_socket_drops.map(|d| d.1),
        timeline: f.timeline,
    }
}

fn print_report(r: &MediaReport) {
    let opt = |v: Option<f64>, unit: &str| v.map_or("n/a".to_owned(), |v| format!("{v:.2}{unit}"));
    let sockets = |drops: Option<u64>, sockets: Option<usize>| match drops.zip(sockets) {
        Some((d, n)) => format!("{d} at its {n} UDP sockets"),
        None => "n/a".to_owned(),
    };
    let rows = [
        (
            "scenario",
            format!("{} on {:?} ({})", r.scenario, r.target, r.url),
        ),
        (
            "sessions",
            format!(
                "{} publisher(s), {} subscriber(s), {} with media, {} failed",
                r.publishers, r.subscribers, r.subscribers_with_media, r.sessions_failed
            ),
        ),
        ("window", format!("{:.1} s", r.duration_s)),
        (
            "packets",
            format!(
                "{} sent, {} received ({:.0}/s; {}-{} per subscriber), {} verified (1 in {})",
                r.packets_sent,
                r.packets_received,
                r.packets_received as f64 / r.duration_s.max(1e-3),
                r.subscriber_packets_min,
                r.subscriber_packets_max,
                r.packets_verified,
                r.sample_every
            ),
        ),
        (
            "loss",
            format!(
                "{:.4}% ({} of {})",
                r.loss_ratio * 100.0,
                r.packets_lost,
                r.packets_expected
            ),
        ),
        (
            "latency",
            format!(
                "p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, jitter {:.2} ms",
                r.latency_ms.p50, r.latency_ms.p95, r.latency_ms.p99, r.jitter_ms
            ),
        ),
        (
            "setup",
            format!("p50 {:.1} ms, p99 {:.1} ms", r.setup_ms.p50, r.setup_ms.p99),
        ),
        (
            "server CPU",
            format!(
                "{} s, {} per forwarded packet",
                opt(r.server_cpu_s, ""),
                opt(r.server_cpu_us_per_forwarded_packet, " us")
            ),
        ),
        (
            "server RSS",
            format!(
                "{}, {} per subscriber",
                opt(r.server_rss_bytes.map(|b| b as f64 / 1048576.0), " MiB"),
                opt(
                    r.server_rss_per_subscriber_bytes.map(|b| b / 1024.0),
                    " KiB"
                )
            ),
        ),
        (
            "UDP drops",
            format!(
                "{} receive-buffer, {} send-buffer (kernel, whole machine, in the window)",
                r.udp_receive_buffer_drops
                    .map_or("n/a".into(), |d| d.to_string()),
                r.udp_send_buffer_drops
                    .map_or("n/a".into(), |d| d.to_string())
            ),
        ),
        (
            "socket drops",
            format!(
                "server {}, client {} (receive-buffer, per socket, in the window)",
                sockets(r.server_socket_drops, r.server_udp_sockets),
                sockets(r.client_socket_drops, r.client_udp_sockets)
            ),
        ),
        (
            "client CPU",
            format!(
                "{:.2} s ({:.2} cores)",
                r.client_cpu_s,
                r.client_cpu_s / r.duration_s.max(1e-3)
            ),
        ),
    ];
    for (k, v) in rows {
        println!("{k:>12}  {v}");
    }
}
