// How a 720p camera ramps up in the hello-world loopback: headless Chromium
// plays a 1280x720 clip as its camera into a WebRtcEndpoint connected to
// itself; every second this prints the size Chromium sends and receives back,
// its encoder's target bitrate, what its congestion control allows
// (availableOutgoingBitrate) and the rate it really sends.
// Runs each binary (and maxVideoSendBandwidth setting) in turn, in one run:
//   node scripts/bench-webrtc-ramp.mjs SECONDS BIN[:maxVideoSendKbps] ...
// e.g. node scripts/bench-webrtc-ramp.mjs 40 /tmp/rkms-before target/debug/rkms target/debug/rkms:2000
import { mkdtempSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { startRkms, sleep } from '../tests/e2e/helpers.mjs';
import { launchBrowser } from '../tests/e2e/browser.mjs';

const require = createRequire(new URL('../tests/e2e/package.json', import.meta.url));
const kurento = require('kurento-client');
const SECONDS = Number(process.argv[2] || 40);
const runs = process.argv.slice(3);

const clip = join(mkdtempSync(join(tmpdir(), 'rkms-720p-')), 'camera.mjpeg');
execFileSync('ffmpeg', ['-v', 'error', '-f', 'lavfi', '-i', 'testsrc=size=1280x720:rate=30',
  '-t', '5', '-q:v', '6', clip]);
const browser = await launchBrowser({ extraArgs: [`--use-file-for-fake-video-capture=${clip}`] });

async function sample(peer) {
  return peer.page.evaluate(async () => {
    const o = {};
    (await window.peer.pc.getStats()).forEach((s) => {
      if (s.type === 'outbound-rtp' && s.kind === 'video') {
        Object.assign(o, { sent: `${s.frameWidth}x${s.frameHeight}`, bytes: s.bytesSent,
          at: s.timestamp, target: s.targetBitrate, limit: s.qualityLimitationReason });
      }
      if (s.type === 'inbound-rtp' && s.kind === 'video') o.back = s.frameWidth;
      if (s.type === 'candidate-pair' && s.nominated) o.avail = s.availableOutgoingBitrate;
    });
    return o;
  });
}

for (const run of runs) {
  const [bin, maxSend] = run.split(':');
  const server = await startRkms({ bin, env: { KMS_NETWORK_INTERFACES: 'lo' } });
  const client = await kurento(server.url, { failAfter: 3 });
  const pipeline = await client.create('MediaPipeline');
  const endpoint = await pipeline.create('WebRtcEndpoint');
  if (maxSend) await endpoint.setMaxVideoSendBandwidth(Number(maxSend));
  const peer = await browser.newPeer();
  endpoint.on('IceCandidateFound', (ev) => peer.addCandidate({ candidate: ev.candidate.candidate,
    sdpMid: ev.candidate.sdpMid, sdpMLineIndex: ev.candidate.sdpMLineIndex }).catch(() => {}));
  const answer = await endpoint.processOffer(await peer.createOffer());
  await endpoint.gatherCandidates();
  await endpoint.connect(endpoint);
  await peer.acceptAnswer(answer);
  const IceCandidate = kurento.getComplexType('IceCandidate');
  for (let i = 0; i < 10; i++) {
    for (const c of await peer.takeCandidates()) await endpoint.addIceCandidate(IceCandidate(c));
    await sleep(100);
  }
  console.log(`== ${run}`);
  let last = await sample(peer);
  let full = null;
  for (let t = 1; t <= SECONDS; t++) {
    await sleep(1000);
    const s = await sample(peer);
    const kbps = ((s.bytes - last.bytes) * 8) / (s.at - last.at);
    last = s;
    if (full === null && s.back === 1280) full = t;
    console.log(`${t}s sent ${s.sent} back ${s.back} target ${(s.target / 1000) | 0} kbps ` +
      `available ${(s.avail / 1000) | 0} kbps sending ${kbps.toFixed(0)} kbps (${s.limit})`);
  }
  console.log(`== ${run}: 1280 wide back after ${full ?? `more than ${SECONDS}`} s`);
  await pipeline.release();
  client.close();
  await peer.page.close();
  await server.stop();
}
await browser.close();
