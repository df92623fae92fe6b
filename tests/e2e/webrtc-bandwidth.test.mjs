// Bandwidth feedback with a real browser: headless Chromium sends a 720p
// camera into the hello-world loopback and rkms's feedback (transport-wide
// cc for the uplink, REMB for the bounds) must let it reach 1280x720 with no
// default ceiling, while maxVideoSendBandwidth and maxVideoRecvBandwidth keep
// the browser's send rate under the caps they set.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { startRkms, sleep } from './helpers.mjs';
import { launchBrowser } from './browser.mjs';

const require = createRequire(import.meta.url);
const kurento = require('kurento-client');

let server;
let browser;
before(async () => {
  server = await startRkms({ env: { KMS_NETWORK_INTERFACES: 'lo' } });
  // Chromium's own fake camera is 640x480: play a 720p clip as the camera.
  const clip = join(mkdtempSync(join(tmpdir(), 'rkms-720p-')), 'camera.mjpeg');
  execFileSync('ffmpeg', ['-v', 'error', '-f', 'lavfi', '-i', 'testsrc=size=1280x720:rate=30',
    '-t', '5', '-q:v', '6', clip]);
  browser = await launchBrowser({ extraArgs: [`--use-file-for-fake-video-capture=${clip}`] });
});
after(async () => {
  await browser?.close();
  await server?.stop();
});

/** What the browser sends and receives, and what its congestion control allows. */
function sendStats(peer) {
  return peer.page.evaluate(async () => {
    const out = {};
    (await window.peer.pc.getStats()).forEach((s) => {
      if (s.type === 'outbound-rtp' && s.kind === 'video') {
        Object.assign(out, { sentWidth: s.frameWidth, bytesSent: s.bytesSent, at: s.timestamp });
      }
      if (s.type === 'inbound-rtp' && s.kind === 'video') {
        Object.assign(out, { width: s.frameWidth, height: s.frameHeight });
      }
      if (s.type === 'candidate-pair' && s.nominated && s.availableOutgoingBitrate) {
        out.availableKbps = s.availableOutgoingBitrate / 1000;
      }
    });
    return out;
  });
}

/** Polls sendStats until `pred` holds; returns the stats. */
async function waitSend(peer, pred, what, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    last = await sendStats(peer);
    if (pred(last)) return last;
    await sleep(500);
  }
  throw new Error(`${what} not reached in ${timeoutMs} ms; last ${JSON.stringify(last)}`);
}

/** The browser's video send rate over `ms`, in kbps. */
async function sendKbps(peer, ms) {
  const a = await sendStats(peer);
  await sleep(ms);
  const b = await sendStats(peer);
  return ((b.bytesSent - a.bytesSent) * 8) / (b.at - a.at);
}

/** Kurento's hello-world: the endpoint connected to itself; `configure` runs before the offer. */
async function loopback(configure = async () => {}) {
  const client = await kurento(server.url, { failAfter: 3 });
  const pipeline = await client.create('MediaPipeline');
  const endpoint = await pipeline.create('WebRtcEndpoint');
  await configure(endpoint);
  const peer = await browser.newPeer();
  endpoint.on('IceCandidateFound', (ev) => {
    peer.addCandidate({ candidate: ev.candidate.candidate, sdpMid: ev.candidate.sdpMid,
      sdpMLineIndex: ev.candidate.sdpMLineIndex }).catch(() => {});
  });
  const answer = await endpoint.processOffer(await peer.createOffer());
  await endpoint.gatherCandidates();
  await endpoint.connect(endpoint);
  await peer.acceptAnswer(answer);
  const IceCandidate = kurento.getComplexType('IceCandidate');
  for (let i = 0; i < 10; i++) {
    for (const c of await peer.takeCandidates()) await endpoint.addIceCandidate(IceCandidate(c));
    await sleep(100);
  }
  return { client, pipeline, endpoint, peer, answer };
}

test('a 720p camera comes back as 720p, and maxVideoSendBandwidth bounds it when set', async () => {
  const { client, pipeline, endpoint, peer } = await loopback();
  // Kurento's 500 kbps default would cap every publisher that has a subscriber:
  // rkms leaves it unlimited.
  assert.equal(await endpoint.getMaxVideoSendBandwidth(), 0, 'no default ceiling');
  // Chrome starts a 720p camera scaled down and climbs as its encoder and
  // congestion control allow: a generous wait, this is no timing test.
  await waitSend(peer, (s) => s.width === 1280 && s.height === 720,
    'a 1280x720 picture back', 90000);
  // Set at run time, the sink's bound reaches the browser.
  await endpoint.setMaxVideoSendBandwidth(500);
  await waitSend(peer, (s) => s.availableKbps <= 500 * 1.05, 'the 500 kbps bound', 15000);
  await pipeline.release();
  client.close();
});

test('maxVideoRecvBandwidth caps what the browser sends', async () => {
  const { client, pipeline, endpoint, peer, answer } = await loopback(async (ep) => {
    await ep.setMaxVideoRecvBandwidth(300);
    await ep.setMaxVideoSendBandwidth(2000);
  });
  assert.equal(await endpoint.getMaxVideoRecvBandwidth(), 300);
  assert.match(answer, /m=video[^]*b=AS:300/);
  const capped = await waitSend(peer, (s) => s.width > 0 && s.availableKbps > 0, 'media', 20000);
  await sleep(3000);
  const later = await sendStats(peer);
  for (const s of [capped, later]) {
    assert.ok(s.availableKbps <= 300 * 1.05, `capped at 300 kbps: ${JSON.stringify(s)}`);
  }
  assert.ok(await sendKbps(peer, 2000) <= 330);
  await pipeline.release();
  client.close();
});
