// rkms's own server candidates, configured as Kurento's are (KMS_STUN_IP/PORT, KMS_TURN_URL),
// with `rkms turn` on loopback as the STUN and TURN server: a WebRtcEndpoint announces a srflx
// candidate, and a relay candidate that a headless Chromium reaches when nothing else works
// (media crosses the server-side allocation); with no turnURL the embedded relay gives it. A dead server delays gathering a little but
// never stops it: IceGatheringDone comes and media flows over host candidates.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { createRequire } from 'node:module';
import { startRkms, startTurnServer, turnRestCredentials, sleep } from './helpers.mjs';
import { launchBrowser } from './browser.mjs';

const require = createRequire(import.meta.url);
const kurento = require('kurento-client');

const SECRET = 'ice-servers-e2e';

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { await browser?.close(); });

/** A loopback UDP port nobody answers on (bound, then closed). */
async function deadUdpPort() {
  const s = createSocket('udp4');
  await new Promise((r) => s.bind(0, '127.0.0.1', r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

/** Hello-world against `server`; rkms's candidates reach the browser only if `keep(candidate)`.
 * Resolves once the browser decodes its own camera, with what rkms announced and when. */
async function helloWorld(server, { keep = () => true, peerOptions = {} } = {}) {
  const client = await kurento(server.url, { failAfter: 3 });
  const pipeline = await client.create('MediaPipeline');
  const endpoint = await pipeline.create('WebRtcEndpoint');
  const peer = await browser.newPeer(peerOptions);
  const announced = [];
  endpoint.on('IceCandidateFound', (ev) => {
    announced.push(ev.candidate.candidate);
    if (!keep(ev.candidate.candidate)) return;
    peer.addCandidate({ candidate: ev.candidate.candidate, sdpMid: ev.candidate.sdpMid,
      sdpMLineIndex: ev.candidate.sdpMLineIndex }).catch(() => {});
  });
  let gatheringDone = null;
  endpoint.on('IceGatheringDone', () => { gatheringDone = announced.length; });
  const answer = await endpoint.processOffer(await peer.createOffer());
  await endpoint.gatherCandidates();
  await endpoint.connect(endpoint);
  await peer.acceptAnswer(answer);
  const IceCandidate = kurento.getComplexType('IceCandidate');
  const state = { done: false };
  const trickling = (async () => {
    while (!state.done) {
      for (const c of await peer.takeCandidates()) await endpoint.addIceCandidate(IceCandidate(c));
      await sleep(100);
    }
  })();
  try {
    const first = await peer.waitFor((s) => s.video?.framesDecoded > 30 && s.audio?.packetsReceived > 20);
    await sleep(700);
    const later = await peer.stats();
    assert.ok(later.video.framesDecoded > first.video.framesDecoded, 'video keeps flowing');
    const deadline = Date.now() + 10000;
    while (gatheringDone === null && Date.now() < deadline) await sleep(100);
    return { announced, gatheringDone, video: later.video };
  } finally {
    state.done = true;
    await trickling;
    await pipeline.release();
    client.close();
  }
}

const typeOf = (candidate) => / typ (\w+)/.exec(candidate)?.[1];

test('KMS_STUN_IP/PORT: the endpoint announces a srflx candidate and hello-world plays', async () => {
  const turn = await startTurnServer({ secret: SECRET });
  const [host, port] = turn.udp.split(':');
  const server = await startRkms({
    env: { KMS_NETWORK_INTERFACES: 'lo', KMS_STUN_IP: host, KMS_STUN_PORT: port },
  });
  try {
    const { announced, gatheringDone } = await helloWorld(server);
    const types = announced.map(typeOf);
    assert.ok(types.includes('srflx'), `announced: ${announced.join(' | ')}`);
    assert.equal(gatheringDone, announced.length, 'every candidate comes before IceGatheringDone');
    const srflx = announced.find((c) => typeOf(c) === 'srflx');
    assert.match(srflx, / 127\.0\.0\.1 \d+ typ srflx raddr 127\.0\.0\.1 rport \d+/);
  } finally {
    await server.stop();
    await turn.stop();
  }
});

// rkms's media socket is on 127.0.0.2 and the browser is relay-only with its own allocation on
// the same server, which only ever permits 127.0.0.1 (rkms's relay candidate): the one path
// that works is the browser's allocation to rkms's allocation to rkms.
async function relayOnly(server, browserTurnUrl) {
  const result = await helloWorld(server, {
    keep: (c) => typeOf(c) === 'relay',
    peerOptions: {
      iceServers: [{ urls: [browserTurnUrl], ...turnRestCredentials(SECRET, 'browser') }],
      iceTransportPolicy: 'relay',
    },
  });
  const relay = result.announced.filter((c) => typeOf(c) === 'relay');
  assert.ok(relay.length > 0, `announced: ${result.announced.join(' | ')}`);
  for (const c of relay) assert.match(c, / 127\.0\.0\.1 \d+ typ relay raddr 127\.0\.0\.2 rport \d+/);
  assert.equal(result.gatheringDone, result.announced.length);
  return result;
}

test('KMS_TURN_URL: a browser given only the relay candidate decodes through the allocation', async () => {
  const turn = await startTurnServer({ secret: SECRET });
  const { username, credential } = turnRestCredentials(SECRET, 'rkms', 3600);
  const server = await startRkms({
    env: {
      KMS_NETWORK_INTERFACES: '127.0.0.2',
      KMS_TURN_URL: `${username}:${credential}@${turn.udp}?transport=udp`,
    },
  });
  let result;
  try {
    result = await relayOnly(server, `turn:${turn.udp}?transport=udp`);
  } finally {
    await server.stop();
  }
  const metrics = await turn.stop();
  const detail = JSON.stringify({ metrics, video: result?.video });
  assert.equal(metrics.auth_failures, 0, detail);
  assert.ok(metrics.allocations_total >= 2, detail);
  // Every packet the browser decoded crossed two allocations: rkms's (to its peer) and the
  // browser's (to its client).
  assert.ok(metrics.packets_to_peer >= result.video.packetsReceived, detail);
  assert.ok(metrics.packets_to_client >= result.video.packetsReceived, detail);
});

test('with no turnURL, endpoints get a relay candidate from the embedded relay', async () => {
  const server = await startRkms({
    env: { KMS_NETWORK_INTERFACES: '127.0.0.2' },
    config: {
      rkms: {
        turn: {
          listening_ips: ['127.0.0.1'], relay_ips: ['127.0.0.1'], realm: 'e2e',
          static_auth_secrets: [SECRET], allow_loopback_peers: true,
        },
      },
    },
  });
  try {
    await relayOnly(server, server.turnUrls.find((u) => u.endsWith('transport=udp')));
  } finally {
    await server.stop();
  }
});

test('dead STUN and TURN servers: gathering completes and media flows over host candidates', async () => {
  const [stunPort, turnPort] = [await deadUdpPort(), await deadUdpPort()];
  const server = await startRkms({
    env: {
      KMS_NETWORK_INTERFACES: 'lo', KMS_STUN_IP: '127.0.0.1', KMS_STUN_PORT: String(stunPort),
      KMS_TURN_URL: `user:pass@127.0.0.1:${turnPort}`,
    },
  });
  try {
    const { announced, gatheringDone } = await helloWorld(server);
    assert.deepEqual([...new Set(announced.map(typeOf))], ['host']);
    assert.equal(gatheringDone, announced.length, 'IceGatheringDone arrived');
  } finally {
    await server.stop();
  }
});
