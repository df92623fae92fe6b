// A UDP proxy of the tests between one browser peer connection and rkms: it
// drops datagrams at random (both ways) and can narrow the link toward the
// browser to a rate, queueing what exceeds it. Candidates are rewritten so
// that each side knows only the proxy. Used by the loss and transport-cc tests.
import dgram from 'node:dgram';

/** A deterministic pseudo-random sequence in [0, 1) (mulberry32). */
function random(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function bind() {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    s.bind(0, '127.0.0.1', () => resolve(s));
  });
}

/**
 * A UDP relay for one peer connection: the browser talks to `browserSide`,
 * rkms to `serverSide`. Once set, `loss` drops datagrams with that
 * probability each way, and `downKbps` makes the way to the browser a link of
 * that rate: datagrams leave one after the other at its pace, and one that
 * would wait in its queue more than `queueMs` is dropped (a router's tail drop).
 */
export async function udpProxy(seed) {
  const browserSide = await bind();
  const serverSide = await bind();
  const next = random(seed);
  const queue = [];
  let linkFree = 0;
  let timer = null;
  const proxy = {
    loss: 0,
    downKbps: 0,
    queueMs: 200,
    server: null, // rkms's address, from its candidate
    browser: null, // the browser's address, from its first datagram
    dropped: 0,
    queueDropped: 0,
    passed: 0,
    foreign: 0, // datagrams from a browser address other than the first
    close() { clearTimeout(timer); browserSide.close(); serverSide.close(); },
    browserCandidate: `candidate:1 1 udp 2122260223 127.0.0.1 ${browserSide.address().port} typ host`,
    serverCandidate: `candidate:1 1 udp 2122260223 127.0.0.1 ${serverSide.address().port} typ host`,
  };
  const pass = () => {
    if (next() < proxy.loss) { proxy.dropped++; return false; }
    proxy.passed++;
    return true;
  };
  const toBrowser = (msg) => browserSide.send(msg, proxy.browser.port, proxy.browser.address);
  // Sends what is due, in order, and waits for the next.
  const pump = () => {
    timer = null;
    const now = performance.now();
    while (queue.length && queue[0].at <= now) toBrowser(queue.shift().msg);
    if (queue.length) timer = setTimeout(pump, queue[0].at - now);
  };
  browserSide.on('message', (msg, from) => {
    // One browser address only: answers to a second host candidate's checks
    // would reach the first one's socket, so its datagrams are not relayed.
    proxy.browser ??= from;
    if (from.port !== proxy.browser.port || from.address !== proxy.browser.address) {
      proxy.foreign++;
      return;
    }
    if (proxy.server && pass()) serverSide.send(msg, proxy.server.port, proxy.server.address);
  });
  serverSide.on('message', (msg) => {
    if (!proxy.browser || !pass()) return;
    if (!proxy.downKbps) { toBrowser(msg); return; }
    const now = performance.now();
    const start = Math.max(now, linkFree);
    if (start - now > proxy.queueMs) { proxy.queueDropped++; return; }
    // kbps is bits per millisecond.
    linkFree = start + (msg.length * 8) / proxy.downKbps;
    queue.push({ at: linkFree, msg });
    if (!timer) timer = setTimeout(pump, linkFree - now);
  });
  return proxy;
}

/** Candidate rewriting so that the peer connection only knows the proxy. */
export function throughProxy(proxy) {
  let told = false;
  return {
    // The browser learns the proxy's browser side as rkms's only candidate.
    toBrowser(c) {
      const [address, port] = c.candidate.split(' ').slice(4, 6);
      // A UDP host candidate: a relay candidate of the embedded TURN relay (also UDP) would not
      // take the proxy's packets.
      if (!/ udp .* typ host/i.test(c.candidate)) return null;
      if (proxy.server) return null;
      proxy.server = { address, port: Number(port) };
      return { ...c, candidate: proxy.browserCandidate };
    },
    // rkms learns the proxy's server side as the browser's only candidate.
    toServer(c) {
      if (told) return null;
      told = true;
      return { ...c, candidate: proxy.serverCandidate };
    },
  };
}

/** `sdp` without the lines matching the regular expression `re` (a string). */
export const withoutLines = (sdp, re) => sdp.split('\r\n').filter((l) => !new RegExp(re).test(l)).join('\r\n');
/** `sdp` without candidates: they travel only as (rewritten) trickle candidates. */
export const withoutCandidates = (sdp) => withoutLines(sdp, '^a=candidate:');
