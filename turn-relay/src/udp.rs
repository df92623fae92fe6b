//! The UDP driver: one task per listening socket owns the session table
//! (keyed by the client's address), and one task per allocation relays
//! peer traffic back through the listening socket.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::Instant;

use crate::allocation::{Allocation, Bucket, Session};
use crate::core::{Core, MAX_HEADER, Outcome};
use crate::stun::{Class, Message, channel_data, method};

const MAX_DATAGRAM: usize = 65536;

pub(crate) async fn serve(socket: Arc<UdpSocket>, core: Arc<Core>) {
    let mut sessions: HashMap<SocketAddr, Session> = HashMap::new();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut out = Vec::with_capacity(1500);
    let mut sweep = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            biased;
            received = socket.recv_from(&mut buf) => {
                // Errors here are ICMP reports about earlier sends: nothing to do.
                let Ok((n, client)) = received else { continue };
                let packet = &buf[..n];
                if channel_data::is_channel_data(packet) {
                    match sessions.get_mut(&client) {
                        Some(s) => core.relay_channel_data(packet, s),
                        None => core.metrics.drop_packet(),
                    }
                    continue;
                }
                let Ok(msg) = Message::parse(packet) else {
                    core.metrics.malformed_packet();
                    continue;
                };
                if msg.class == Class::Indication && msg.method == method::SEND {
                    match sessions.get_mut(&client) {
                        Some(s) => core.relay_send_indication(&msg, s),
                        None => core.metrics.drop_packet(),
                    }
                    continue;
                }
                let mut slot = sessions.remove(&client);
                if core.handle_stun(&msg, client, &mut slot, &mut out) == Outcome::Allocated
                    && let Some(s) = slot.as_mut()
                {
                    let task = tokio::spawn(relay_to_client(s.alloc.clone(), core.clone(), socket.clone(), client));
                    s.relay_task = Some(task.abort_handle());
                }
                if let Some(s) = slot {
                    sessions.insert(client, s);
                }
                if !out.is_empty() {
                    let _ = socket.send_to(&out, client).await;
                }
            }
            _ = sweep.tick() => {
                let now = Instant::now();
                sessions.retain(|_, s| s.expires > now);
            }
        }
    }
}

/// Peer → client for one allocation, until its session drops and aborts it.
async fn relay_to_client(
    alloc: Arc<Allocation>,
    core: Arc<Core>,
    listener: Arc<UdpSocket>,
    client: SocketAddr,
) {
    // Untouched pages of this buffer are never made resident.
    let mut buf = vec![0u8; MAX_HEADER + MAX_DATAGRAM + 4];
    let mut bucket = Bucket::new(core.limits.max_bps);
    loop {
        let Ok((n, peer)) = alloc
            .socket
            .recv_from(&mut buf[MAX_HEADER..MAX_HEADER + MAX_DATAGRAM])
            .await
        else {
            continue;
        };
        if let Some(frame) = core.frame_for_client(&alloc, peer, &mut buf, n, false, &mut bucket) {
            match listener.send_to(frame, client).await {
                Ok(_) => core.metrics.relayed_to_client(n),
                Err(_) => core.metrics.drop_packet(),
            }
        }
    }
}
