// Connecting browser peer connections to WebRtcEndpoints the way Kurento
// applications do (processOffer, candidates both ways, gatherCandidates),
// and page-side peer connections beyond the page's main one, so one page
// can publish and receive several participants as the group-call tutorial
// does. Used by the routing, group-call and loss tests.
import { createRequire } from 'node:module';
import { sleep } from './helpers.mjs';

const require = createRequire(import.meta.url);
const kurento = require('kurento-client');
const IceCandidate = kurento.getComplexType('IceCandidate');

/**
 * Negotiates `side` (an offering browser peer connection: createOffer,
 * acceptAnswer, addCandidate, takeCandidates, connectionState) with
 * `endpoint`, exchanging candidates until the browser is connected.
 * `toServer`/`toBrowser` may rewrite or drop (return null) candidates on
 * their way, and `offer`/`answer` rewrite the SDP, e.g. to put a proxy in
 * between.
 */
export async function connectEndpoint(endpoint, side,
  { toServer = (c) => c, toBrowser = (c) => c, offer = (sdp) => sdp, answer = (sdp) => sdp,
    timeoutMs = 10000 } = {}) {
  endpoint.on('IceCandidateFound', (ev) => {
    const c = toBrowser({ candidate: ev.candidate.candidate, sdpMid: ev.candidate.sdpMid,
      sdpMLineIndex: ev.candidate.sdpMLineIndex });
    if (c) side.addCandidate(c).catch(() => {});
  });
  await side.acceptAnswer(answer(await endpoint.processOffer(offer(await side.createOffer()))));
  await endpoint.gatherCandidates();
  const done = Date.now() + timeoutMs;
  while (Date.now() < done) {
    for (const c of await side.takeCandidates()) {
      const mapped = toServer(c);
      if (mapped) await endpoint.addIceCandidate(IceCandidate(mapped));
    }
    if (await side.connectionState() === 'connected') return;
    await sleep(100);
  }
  throw new Error(`browser peer connection not connected after ${timeoutMs} ms`);
}

/** A page's main peer connection (browser.mjs's BrowserPeer) as a `side`. */
export function mainPc(peer) {
  return {
    createOffer: () => peer.createOffer(),
    acceptAnswer: (sdp) => peer.acceptAnswer(sdp),
    addCandidate: (c) => peer.addCandidate(c),
    takeCandidates: () => peer.takeCandidates(),
    connectionState: async () => (await peer.stats()).connection,
  };
}

/** A browser peer and a new WebRtcEndpoint of `pipeline`, connected. */
export async function join(browser, pipeline, options) {
  const endpoint = await pipeline.create('WebRtcEndpoint');
  const peer = await browser.newPeer();
  await connectEndpoint(endpoint, mainPc(peer), options);
  return { endpoint, peer };
}

/** Installs `window.extraPcs` in a page: named receive-only peer connections. */
async function installExtraPcs(page) {
  await page.evaluate(() => {
    if (window.extraPcs) return;
    window.extraPcs = {
      pcs: {},
      create(name) {
        const pc = new RTCPeerConnection();
        const entry = { pc, candidates: [] };
        pc.onicecandidate = (e) => { if (e.candidate) entry.candidates.push(e.candidate.toJSON()); };
        pc.addTransceiver('audio', { direction: 'recvonly' });
        pc.addTransceiver('video', { direction: 'recvonly' });
        // Decoding needs a sink: a muted video element per receiver.
        pc.ontrack = (e) => {
          if (e.track.kind !== 'video') return;
          const v = document.createElement('video');
          v.muted = true; v.autoplay = true; v.playsInline = true;
          v.srcObject = new MediaStream([e.track]);
          document.body.appendChild(v);
        };
        this.pcs[name] = entry;
      },
      async createOffer(name) {
        const { pc } = this.pcs[name];
        await pc.setLocalDescription(await pc.createOffer());
        return pc.localDescription.sdp;
      },
      async acceptAnswer(name, sdp) { await this.pcs[name].pc.setRemoteDescription({ type: 'answer', sdp }); },
      async addCandidate(name, c) { await this.pcs[name].pc.addIceCandidate(c); },
      takeCandidates(name) { const e = this.pcs[name]; const c = e.candidates; e.candidates = []; return c; },
      state(name) { return this.pcs[name].pc.connectionState; },
    };
  });
}

/** A receive-only peer connection `name` in `page`, as a `side`. */
export async function recvOnlyPc(page, name) {
  await installExtraPcs(page);
  await page.evaluate((n) => window.extraPcs.create(n), name);
  return {
    name,
    createOffer: () => page.evaluate((n) => window.extraPcs.createOffer(n), name),
    acceptAnswer: (sdp) => page.evaluate(([n, s]) => window.extraPcs.acceptAnswer(n, s), [name, sdp]),
    addCandidate: (c) => page.evaluate(([n, x]) => window.extraPcs.addCandidate(n, x), [name, c]),
    takeCandidates: () => page.evaluate((n) => window.extraPcs.takeCandidates(n), name),
    connectionState: () => page.evaluate((n) => window.extraPcs.state(n), name),
  };
}

/**
 * Inbound video/audio and outbound video figures of a page's peer
 * connection (the main one, or the extra one named `name`).
 */
export function rtpStats(page, name) {
  return page.evaluate(async (n) => {
    const pc = n ? window.extraPcs.pcs[n].pc : window.peer.pc;
    const out = { video: null, audio: null, sent: null };
    (await pc.getStats()).forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video') {
        out.video = {
          framesDecoded: s.framesDecoded || 0, framesDropped: s.framesDropped || 0,
          packetsReceived: s.packetsReceived || 0, packetsLost: s.packetsLost || 0,
          nackCount: s.nackCount || 0, pliCount: s.pliCount || 0,
          freezeCount: s.freezeCount || 0, totalFreezesDuration: s.totalFreezesDuration || 0,
          retransmittedPacketsReceived: s.retransmittedPacketsReceived || 0,
        };
      }
      if (s.type === 'inbound-rtp' && s.kind === 'audio') {
        out.audio = { packetsReceived: s.packetsReceived || 0, packetsLost: s.packetsLost || 0 };
      }
      if (s.type === 'outbound-rtp' && s.kind === 'video') {
        out.sent = { packetsSent: s.packetsSent || 0, nackCount: s.nackCount || 0,
          retransmittedPacketsSent: s.retransmittedPacketsSent || 0 };
      }
    });
    return out;
  }, name);
}
