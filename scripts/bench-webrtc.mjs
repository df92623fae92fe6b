// Measures rkms's WebRtcEndpoint with a real browser, on loopback:
//  - setup: processOffer -> ICE+DTLS connected (ConnectionStateChanged), p50/p99 over N sessions
//  - memory and threads per idle negotiated endpoint (100 endpoints)
//  - server CPU of one 720p hello-world loopback call, against the idle server in the same run
// Usage: node scripts/bench-webrtc.mjs [SESSIONS] [CALL_SECONDS]
// Needs `scripts/test.sh` installs (Chromium, tests/e2e/node_modules) and a built rkms
// (RKMS_BIN, default target/release/rkms).
import { mkdtempSync, readdirSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { startRkms, RawClient, sleep } from '../tests/e2e/helpers.mjs';
import { launchBrowser } from '../tests/e2e/browser.mjs';
import { cpuSeconds, rssKiB } from './proc-usage.mjs';

const require = createRequire(new URL('../tests/e2e/package.json', import.meta.url));
const kurento = require('kurento-client');
const SESSIONS = Number(process.argv[2] || 50);
const CALL_SECONDS = Number(process.argv[3] || 20);

const threads = (pid) => readdirSync(`/proc/${pid}/task`).length;
const pct = (xs, q) => xs.slice().sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))];

async function negotiate(client, peer, { loopback = true } = {}) {
  const pipeline = await client.create('MediaPipeline');
  const endpoint = await pipeline.create('WebRtcEndpoint');
  const connected = new Promise((resolve) => endpoint.on('ConnectionStateChanged',
    (e) => { if (e.newState === 'CONNECTED') resolve(performance.now()); }));
  endpoint.on('IceCandidateFound', (ev) => {
    peer.addCandidate({ candidate: ev.candidate.candidate, sdpMid: ev.candidate.sdpMid,
      sdpMLineIndex: ev.candidate.sdpMLineIndex }).catch(() => {});
  });
  await sleep(50); // let the subscriptions land first
  const offer = await peer.createOffer();
  const t0 = performance.now();
  const answer = await endpoint.processOffer(offer);
  await endpoint.gatherCandidates();
  if (loopback) await endpoint.connect(endpoint);
  await peer.acceptAnswer(answer);
  const IceCandidate = kurento.getComplexType('IceCandidate');
  let done = false;
  connected.then(() => { done = true; });
  while (!done) {
    for (const c of await peer.takeCandidates()) await endpoint.addIceCandidate(IceCandidate(c));
    await sleep(20);
  }
  return { pipeline, endpoint, setupMs: (await connected) - t0 };
}

const server = await startRkms({ env: { KMS_NETWORK_INTERFACES: 'lo' } });
const pid = server.proc.pid;
// Chromium's fake camera is 640x480; a 720p call plays a 720p clip instead.
const clip = join(mkdtempSync(join(tmpdir(), 'rkms-720p-')), 'camera.mjpeg');
execFileSync('ffmpeg', ['-v', 'error', '-f', 'lavfi', '-i', 'testsrc=size=1280x720:rate=30',
  '-t', '5', '-q:v', '6', clip]);
const browser = await launchBrowser({ extraArgs: [`--use-file-for-fake-video-capture=${clip}`] });
const client = await kurento(server.url, { failAfter: 3 });
try {
  // 1. Setup time.
  const setups = [];
  for (let i = 0; i < SESSIONS; i++) {
    const peer = await browser.newPeer({ audio: true, video: true });
    const { pipeline, setupMs } = await negotiate(client, peer);
    setups.push(setupMs);
    await pipeline.release();
    await peer.page.close();
  }
  console.log(`setup (processOffer -> connected) over ${SESSIONS} sessions: ` +
    `p50 ${pct(setups, 0.5).toFixed(1)} ms, p99 ${pct(setups, 0.99).toFixed(1)} ms`);

  // 2. Memory and threads per idle negotiated endpoint.
  const offerPeer = await browser.newPeer();
  const offer = await offerPeer.createOffer();
  const raw = await RawClient.open(server.url);
  const pipeline = await raw.call('create', { type: 'MediaPipeline' });
  await sleep(500);
  const [rss0, thr0] = [rssKiB(pid), threads(pid)];
  for (let i = 0; i < 100; i++) {
    const ep = await raw.call('create', { type: 'WebRtcEndpoint', constructorParams: { mediaPipeline: pipeline } });
    await raw.call('invoke', { object: ep, operation: 'processOffer', operationParams: { offer } });
  }
  await sleep(500);
  const [rss1, thr1] = [rssKiB(pid), threads(pid)];
  console.log(`100 negotiated idle endpoints: RSS ${rss0} -> ${rss1} KiB, ` +
    `${((rss1 - rss0) / 100).toFixed(1)} KiB per endpoint; threads ${thr0} -> ${thr1} ` +
    `(${((thr1 - thr0) / 100).toFixed(2)} per endpoint)`);
  await raw.call('release', { object: pipeline });
  await raw.close();

  // 3. CPU of one 720p loopback call, next to the idle server.
  const idle0 = cpuSeconds(pid);
  await sleep(CALL_SECONDS * 1000);
  const idle = cpuSeconds(pid) - idle0;
  const peer = await browser.newPeer();
  const call = await negotiate(client, peer);
  await peer.waitFor((s) => s.video?.framesDecoded > 30);
  const c0 = cpuSeconds(pid);
  const s0 = await peer.stats();
  await sleep(CALL_SECONDS * 1000);
  const busy = cpuSeconds(pid) - c0;
  const s1 = await peer.stats();
  const fps = (s1.video.framesDecoded - s0.video.framesDecoded) / CALL_SECONDS;
  console.log(`720p loopback call: ${s1.video.frameWidth}x${s1.video.frameHeight} at ${fps.toFixed(1)} fps ` +
    `decoded back; server CPU ${(100 * busy / CALL_SECONDS).toFixed(2)}% of one core ` +
    `(idle server in the same run: ${(100 * idle / CALL_SECONDS).toFixed(2)}%)`);
  await call.pipeline.release();
} finally {
  client.close();
  await browser.close();
  await server.stop();
}
