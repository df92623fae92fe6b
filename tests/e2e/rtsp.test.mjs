// PlayerEndpoint on RTSP cameras: GStreamer's RTSP server on loopback
// (tests/e2e/rtsp_camera.py) played through rkms to headless Chromium, which
// must decode the camera's H264 (over TCP and UDP); the camera killed and
// restarted resumes the picture by itself; an unreachable camera raises Error.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRkms, sleep } from './helpers.mjs';
import { launchBrowser } from './browser.mjs';
import { connectPage, flowingIn, nextEvent, probe, kurento } from './media-peers.mjs';
import { startCamera, freePort } from './rtsp-camera.mjs';

const dir = mkdtempSync(join(tmpdir(), 'rkms-rtsp-'));

let server;
let browser;
let camera;
before(async () => {
  // The camera sends SPS/PPS only in its SDP: rkms must put them in front of each IDR.
  camera = await startCamera({ port: 0, mounts: 2, args: ['--audio', 'pcmu', '--sprop-only'] });
  server = await startRkms({ config: { rkms: { recording: { roots: [dir] } } }, env: { KMS_NETWORK_INTERFACES: 'lo' } });
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
  await server?.stop();
  camera?.kill();
});

/** A pipeline with a player of `uri` feeding a new Chromium page. */
async function playToPage(uri) {
  const client = await kurento(server.url, { failAfter: 3 });
  const pipeline = await client.create('MediaPipeline');
  const player = await pipeline.create('PlayerEndpoint', { uri, useEncodedMedia: true, networkCache: 0 });
  const events = [];
  for (const name of ['Error', 'EndOfStream']) player.on(name, (e) => events.push({ name, ...e }));
  const { endpoint, peer } = await connectPage(browser, pipeline, { codec: 'H264' });
  await flowingIn(endpoint);
  await player.connect(endpoint);
  await player.play();
  const done = async () => {
    await pipeline.release();
    await peer.page.close();
    client.close();
  };
  return { pipeline, player, peer, events, done };
}

test('an RTSP camera over TCP plays to Chromium, which decodes its H264', async () => {
  const { player, peer, events, done } = await playToPage(`${camera.url}/cam0`);
  const stats = await peer.waitFor((s) => s.video?.framesDecoded > 30);
  assert.match(stats.video.codec, /H264/i);
  assert.equal(stats.video.frameWidth, 320);
  const info = await player.getVideoInfo();
  assert.equal(info.isSeekable, false);
  assert.deepEqual(events, []);
  await done();
});

test('the same camera over UDP (?transport=udp) plays too', async () => {
  const { peer, events, done } = await playToPage(`${camera.url}/cam1?transport=udp`);
  const stats = await peer.waitFor((s) => s.video?.framesDecoded > 30);
  assert.equal(stats.video.frameHeight, 240);
  assert.deepEqual(events, []);
  await done();
});

test('a camera killed and restarted on its port resumes by itself, with no EndOfStream', async () => {
  const port = await freePort();
  let cam = await startCamera({ port, mounts: 1 });
  try {
    const { peer, events, done } = await playToPage(`${cam.url}/cam0`);
    await peer.waitFor((s) => s.video?.framesDecoded > 20);
    cam.kill();
    await cam.exited;
    await sleep(1500);
    const before = (await peer.stats()).video.framesDecoded;
    cam = await startCamera({ port, mounts: 1 });
    // The reconnection backs off to at most a few seconds at this point.
    await peer.waitFor((s) => s.video.framesDecoded > before + 30, 30000);
    assert.deepEqual(events.filter((e) => e.name === 'EndOfStream'), []);
    await done();
  } finally {
    cam.kill();
  }
});

test('an unreachable camera raises Error; bad rtsp URIs are refused; the server carries on', async () => {
  const client = await kurento(server.url, { failAfter: 3 });
  const pipeline = await client.create('MediaPipeline');
  const port = await freePort(); // nothing listens there
  const player = await pipeline.create('PlayerEndpoint', { uri: `rtsp://127.0.0.1:${port}/cam0` });
  const error = nextEvent(player, 'Error');
  await player.play();
  const e = await error;
  assert.equal(e.type, 'RESOURCE_ERROR_OPEN', JSON.stringify(e));
  assert.match(e.description, /127\.0\.0\.1/);
  for (const uri of ['rtsp://cam/x?transport=quic', 'rtsps://cam/x', 'rtsp://[::1/x']) {
    const refused = await pipeline.create('PlayerEndpoint', { uri }).then(() => null, (err) => err);
    assert.equal(refused?.code, 40107, `${uri}: ${refused}`);
  }
  // Still serving: the good camera plays into a recorder, whose file ffprobe reads.
  const good = await pipeline.create('PlayerEndpoint', { uri: `${camera.url}/cam0` });
  const out = join(dir, 'camera.mp4');
  const recorder = await pipeline.create('RecorderEndpoint', { uri: `file://${out}`, mediaProfile: 'MP4_VIDEO_ONLY' });
  await good.connect(recorder);
  await recorder.record();
  await good.play();
  await flowingIn(recorder, 'VIDEO');
  await sleep(2500);
  const stopped = nextEvent(recorder, 'Stopped');
  await recorder.stop();
  await stopped;
  const { streams, span } = probe(out);
  assert.deepEqual(streams.map((s) => s.codec_name), ['h264']);
  assert.ok(span > 1, `recorded ${span} s`);
  await pipeline.release();
  client.close();
});
