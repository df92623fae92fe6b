//! The UDP driver: one task per listening socket owns the session table
//! (keyed by the client's address), and one task per allocation relays
//! peer traffic back through the listening socket. Both read with
//! `recvmmsg`, and an allocation's task sends what one read brought in with
//! one `sendmmsg` ([`crate::batch`]): under load, a wake-up and a system call
//! serve many packets.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::time::Instant;

use crate::allocation::{Allocation, Bucket, Session};
use crate::batch::RecvBatch;
use crate::core::{Control, Core, MAX_HEADER, Outcome};
use crate::stun::{Class, Message, channel_data, method};

/// Datagrams read per system call on a listening socket (shared by many
/// clients) and on an allocation's relay socket.
const LISTENER_BATCH: usize = 32;
const RELAY_BATCH: usize = 8;

pub(crate) async fn serve(socket: Arc<UdpSocket>, core: Arc<Core>) {
    let mut batch = match RecvBatch::<LISTENER_BATCH>::new(0) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "no memory for a TURN listener's buffers");
            return;
        }
    };
    let mut sessions: HashMap<SocketAddr, Session> = HashMap::new();
    let mut out = Vec::with_capacity(1500);
    let mut sweep = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            biased;
            received = socket.async_io(Interest::READABLE, || batch.recv(&*socket)) => {
                // Errors here are ICMP reports about earlier sends: nothing to do.
                let Ok(n) = received else { continue };
                for i in 0..n {
                    if let (packet, Some(client)) = batch.datagram(i) {
                        from_client(packet, client, &mut sessions, &core, &socket, &mut out).await;
                    }
                }
            }
            _ = sweep.tick() => {
                let now = Instant::now();
                sessions.retain(|_, s| s.expires > now);
            }
        }
    }
}

/// One datagram from a client: relayed to its peer, or a request answered.
async fn from_client(
    packet: &[u8],
    client: SocketAddr,
    sessions: &mut HashMap<SocketAddr, Session>,
    core: &Arc<Core>,
    socket: &Arc<UdpSocket>,
    out: &mut Vec<u8>,
) {
    if channel_data::is_channel_data(packet) {
        match sessions.get_mut(&client) {
            Some(s) => core.relay_channel_data(packet, s),
            None => core.metrics.drop_packet(),
        }
        return;
    }
    let Ok(msg) = Message::parse(packet) else {
        core.metrics.malformed_packet();
        return;
    };
    if msg.class == Class::Indication && msg.method == method::SEND {
        match sessions.get_mut(&client) {
            Some(s) => core.relay_send_indication(&msg, s),
            None => core.metrics.drop_packet(),
        }
        return;
    }
    let mut slot = sessions.remove(&client);
    if let Outcome::Allocated = core.handle_stun(&msg, (client, Control::Udp), &mut slot, out)
        && let Some(s) = slot.as_mut()
    {
        let task = tokio::spawn(relay_to_client(
            s.alloc.clone(),
            core.clone(),
            socket.clone(),
            client,
        ));
        s.relay_task = Some(task.abort_handle());
    }
    if let Some(s) = slot {
        sessions.insert(client, s);
    }
    if !out.is_empty() {
        let _ = socket.send_to(out, client).await;
    }
}

/// Peer → client for one allocation, until its session drops and aborts it.
async fn relay_to_client(
    alloc: Arc<Allocation>,
    core: Arc<Core>,
    listener: Arc<UdpSocket>,
    client: SocketAddr,
) {
    let mut batch = match RecvBatch::<RELAY_BATCH>::new(MAX_HEADER) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "no memory for an allocation's buffers");
            return;
        }
    };
    let mut bucket = Bucket::new(core.limits.max_bps);
    let mut frames: Vec<(usize, Range<usize>)> = Vec::with_capacity(RELAY_BATCH);
    // Allocations made over UDP are UDP allocations.
    let Some(socket) = alloc.udp() else { return };
    loop {
        let read = socket
            .async_io(Interest::READABLE, || batch.recv(socket))
            .await;
        let Ok(n) = read else { continue };
        frames.clear();
        for i in 0..n {
            let (slot, len, peer) = batch.slot_mut(i);
            if let Some(frame) =
                peer.and_then(|p| core.frame_for_client(&alloc, p, slot, len, false, &mut bucket))
            {
                frames.push((i, frame));
            }
        }
        let mut done = 0;
        while done < frames.len() {
            let sent = listener
                .async_io(Interest::WRITABLE, || {
                    batch.send_to(&*listener, &frames[done..], client)
                })
                .await;
            match sent {
                Ok(k) => {
                    for (i, _) in &frames[done..done + k] {
                        core.metrics.relayed_to_client(batch.datagram(*i).0.len());
                    }
                    done += k;
                }
                // The kernel refused the first frame (an ICMP error pending, say): skip it.
                Err(_) => {
                    core.metrics.drop_packet();
                    done += 1;
                }
            }
        }
    }
}
