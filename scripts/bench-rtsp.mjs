// CPU per RTSP camera: one GStreamer camera process serves N live H264 streams on loopback
// (tests/e2e/rtsp_camera.py), and rkms has N pipelines, each a PlayerEndpoint on one of them
// connected to a WebRtcEndpoint with a headless Chromium viewer. The server's CPU is measured
// first with the viewers connected and the players stopped, then with every player playing,
// in the same run. The difference divided by N is what one camera costs (RTSP over TCP,
// depacketizing, packetizing, routing, SRTP to one viewer).
// Usage: node scripts/bench-rtsp.mjs [CAMERAS] [SECONDS] [tcp|udp]
// Needs the e2e peers (Chromium, python3-gi with GStreamer's RTSP server, tests/e2e/node_modules)
// and a built rkms (RKMS_BIN, default target/release/rkms).

import { startRkms, sleep } from '../tests/e2e/helpers.mjs';
import { launchBrowser } from '../tests/e2e/browser.mjs';
import { connectPage, flowingIn, kurento } from '../tests/e2e/media-peers.mjs';
import { startCamera } from '../tests/e2e/rtsp-camera.mjs';
import { cpuSeconds } from './proc-usage.mjs';

const CAMERAS = Number(process.argv[2] || 10);
const SECONDS = Number(process.argv[3] || 10);
const TRANSPORT = process.argv[4] || 'tcp';

async function measure(pid) {
  const c0 = cpuSeconds(pid);
  await sleep(SECONDS * 1000);
  return cpuSeconds(pid) - c0;
}

const camera = await startCamera({ port: 0, mounts: CAMERAS });
const server = await startRkms({ env: { KMS_NETWORK_INTERFACES: 'lo' } });
const browser = await launchBrowser();
const client = await kurento(server.url, { failAfter: 3 });
try {
  const legs = [];
  for (let i = 0; i < CAMERAS; i++) {
    const pipeline = await client.create('MediaPipeline');
    const player = await pipeline.create('PlayerEndpoint',
      { uri: `${camera.url}/cam${i}?transport=${TRANSPORT}`, useEncodedMedia: true });
    const { endpoint, peer } = await connectPage(browser, pipeline, { codec: 'H264' });
    await flowingIn(endpoint);
    await player.connect(endpoint);
    legs.push({ pipeline, player, peer });
  }
  await sleep(2000);
  const idle = await measure(server.proc.pid);

  await Promise.all(legs.map((l) => l.player.play()));
  await Promise.all(legs.map((l) => l.peer.waitFor((s) => s.video?.framesDecoded > 10, 30000)));
  const before = await Promise.all(legs.map((l) => l.peer.stats()));
  const playing = await measure(server.proc.pid);
  const after = await Promise.all(legs.map((l) => l.peer.stats()));

  const frames = after.reduce((n, s, i) => n + s.video.framesDecoded - before[i].video.framesDecoded, 0);
  const packets = after.reduce((n, s, i) => n + s.video.packetsReceived - before[i].video.packetsReceived, 0);
  const pct = (s) => (100 * s / SECONDS).toFixed(2);
  const perCamera = (playing - idle) / CAMERAS;
  console.log(`${CAMERAS} WebRtcEndpoints with viewers, players stopped: server CPU ${pct(idle)}% of one core`);
  console.log(`the same with ${CAMERAS} RTSP cameras (${TRANSPORT}, 320x240 H264 15 fps) playing: ${pct(playing)}% of one core`);
  console.log(`one camera to one viewer: ${pct(perCamera)}% of one core ` +
    `(${(playing / Math.max(idle, 0.01)).toFixed(2)}x the idle endpoints); ` +
    `${(packets / CAMERAS / SECONDS).toFixed(0)} video packets/s and ` +
    `${(frames / CAMERAS / SECONDS).toFixed(1)} frames/s decoded per viewer`);
  await Promise.all(legs.map((l) => l.pipeline.release()));
} finally {
  client.close();
  await browser.close();
  await server.stop();
  camera.kill();
}
