//! The `rpc` scenario: how fast rkms answers the Kurento protocol, and
//! what a live element costs in memory.
//!
//! Each client is one WebSocket doing one request at a time (closed loop),
//! as an application server does. `ping` is measured in the same run as the
//! baseline: it is the cost of the transport alone, so `invoke / ping`
//! tells what the object model adds whatever the machine's load.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;
use serde_json::{Value, json};

use crate::Error;
use crate::kurento::KurentoClient;
use crate::stats::{Latency, Percentiles};

#[derive(Debug, Args)]
pub struct RpcArgs {
    /// The server's Kurento WebSocket.
    #[arg(long, default_value = "ws://127.0.0.1:8888/kurento")]
    pub url: String,
    /// Concurrent clients; a list runs each in turn.
    #[arg(long, value_delimiter = ',', default_value = "1,50")]
    pub clients: Vec<usize>,
    /// Seconds each measurement runs.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Live PassThrough elements for the memory measurement (0 skips it).
    #[arg(long, default_value_t = 10_000)]
    pub elements: usize,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// What one measurement repeats.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// `ping`: the transport alone (the baseline).
    Ping,
    /// `invoke getName` on a PassThrough: a property get.
    Invoke,
    /// `create PassThrough` then `release` it (one sample is both).
    CreateRelease,
}

#[derive(Debug, Serialize)]
pub struct Measurement {
    pub operation: Operation,
    pub clients: usize,
    pub requests_per_second: f64,
    pub latency_ms: Percentiles,
    /// Requests per second relative to `ping` with the same clients.
    pub rate_vs_ping: f64,
}

#[derive(Debug, Serialize)]
pub struct MemoryMeasurement {
    pub elements: usize,
    pub rss_before_kib: u64,
    pub rss_with_elements_kib: u64,
    pub bytes_per_element: f64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub scenario: &'static str,
    pub url: String,
    pub seconds: f64,
    pub measurements: Vec<Measurement>,
    pub memory: Option<MemoryMeasurement>,
}

pub async fn run(args: RpcArgs) -> Result<(), Error> {
    let duration = Duration::from_secs_f64(args.seconds);
    // Memory first, on a server whose heap the churn below has not grown.
    let memory = match args.elements {
        0 => None,
        n => Some(measure_memory(&args.url, n).await?),
    };
    let mut measurements = Vec::new();
    for &clients in &args.clients {
        let clients = clients.max(1);
        let mut ping_rate = None;
        for op in [Operation::Ping, Operation::Invoke, Operation::CreateRelease] {
            let (rate, latency) = measure(&args.url, op, clients, duration).await?;
            let baseline = *ping_rate.get_or_insert(rate);
            measurements.push(Measurement {
                operation: op,
                clients,
                requests_per_second: rate,
                latency_ms: latency.summary(),
                rate_vs_ping: rate / baseline,
            });
        }
    }
    let report = Report {
        scenario: "rpc",
        url: args.url,
        seconds: args.seconds,
        measurements,
        memory,
    };
    print_report(&report);
    if let Some(path) = args.json {
        let text = serde_json::to_string_pretty(&report).unwrap_or_default();
        std::fs::write(&path, text).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
    }
    Ok(())
}

/// Runs `clients` closed loops of `op` for `duration`; returns the rate
/// (samples per second) and the latencies.
async fn measure(
    url: &str,
    op: Operation,
    clients: usize,
    duration: Duration,
) -> Result<(f64, Latency), Error> {
    // Everybody connects and sets up first, so the clock covers only the loop.
    let mut prepared = Vec::with_capacity(clients);
    for _ in 0..clients {
        let mut client = KurentoClient::connect(url).await?;
        let pipeline = client.create("MediaPipeline", json!({})).await?;
        let element = client
            .create("PassThrough", json!({"mediaPipeline": pipeline}))
            .await?;
        prepared.push((client, pipeline, element));
    }
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = prepared
        .into_iter()
        .map(|(mut client, pipeline, element)| {
            tokio::spawn(async move {
                let mut latency = Latency::default();
                while Instant::now() < deadline {
                    let t0 = Instant::now();
                    one(&mut client, op, &pipeline, &element).await?;
                    latency.record(t0.elapsed());
                }
                client.release(&pipeline).await?;
                Ok::<_, Error>(latency)
            })
        })
        .collect();
    let mut total = Latency::default();
    for task in tasks {
        let latency = task.await.map_err(|e| Error::Unexpected {
            method: "load task".into(),
            answer: e.to_string(),
        })??;
        total.merge(&latency);
    }
    let elapsed = start.elapsed().as_secs_f64();
    Ok((total.count() as f64 / elapsed, total))
}

async fn one(
    client: &mut KurentoClient,
    op: Operation,
    pipeline: &str,
    element: &str,
) -> Result<(), Error> {
    match op {
        Operation::Ping => client.call("ping", json!({})).await.map(drop),
        Operation::Invoke => client.invoke(element, "getName", json!({})).await.map(drop),
        Operation::CreateRelease => {
            let id = client
                .create("PassThrough", json!({"mediaPipeline": pipeline}))
                .await?;
            client.release(&id).await
        }
    }
}

/// Server RSS before and after creating `n` PassThrough elements.
async fn measure_memory(url: &str, n: usize) -> Result<MemoryMeasurement, Error> {
    let mut client = KurentoClient::connect(url).await?;
    let pipeline = client.create("MediaPipeline", json!({})).await?;
    let before = used_memory(&mut client).await?;
    for _ in 0..n {
        client
            .create("PassThrough", json!({"mediaPipeline": pipeline}))
            .await?;
    }
    let with = used_memory(&mut client).await?;
    client.release(&pipeline).await?;
    Ok(MemoryMeasurement {
        elements: n,
        rss_before_kib: before,
        rss_with_elements_kib: with,
        bytes_per_element: (with.saturating_sub(before) * 1024) as f64 / n as f64,
    })
}

async fn used_memory(client: &mut KurentoClient) -> Result<u64, Error> {
    let v = client
        .invoke("manager_ServerManager", "getUsedMemory", json!({}))
        .await?;
    v.as_u64().ok_or_else(|| Error::Unexpected {
        method: "getUsedMemory".into(),
        answer: Value::to_string(&v),
    })
}

fn print_report(report: &Report) {
    println!(
        "{:<15} {:>7} {:>12} {:>9} {:>9} {:>9} {:>9}",
        "operation", "clients", "req/s", "vs ping", "p50 ms", "p95 ms", "p99 ms"
    );
    for m in &report.measurements {
        println!(
            "{:<15} {:>7} {:>12.0} {:>9.2} {:>9.3} {:>9.3} {:>9.3}",
            format!("{:?}", m.operation),
            m.clients,
            m.requests_per_second,
            m.rate_vs_ping,
            m.latency_ms.p50,
            m.latency_ms.p95,
            m.latency_ms.p99
        );
    }
    if let Some(mem) = &report.memory {
        println!(
            "memory: {} live PassThrough elements: RSS {} KiB -> {} KiB, {:.0} bytes per element",
            mem.elements, mem.rss_before_kib, mem.rss_with_elements_kib, mem.bytes_per_element
        );
    }
}
