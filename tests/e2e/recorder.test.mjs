// RecorderEndpoint with real media: headless Chromium publishes to a
// WebRtcEndpoint, recorders of every profile write it, and ffprobe/ffmpeg
// judge the files.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, existsSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRkms, RawClient, sleep } from './helpers.mjs';
import { launchBrowser } from './browser.mjs';
import { connectPage, flowingIn, nextEvent, probe, decodeErrors, kurento } from './media-peers.mjs';

const dir = mkdtempSync(join(tmpdir(), 'rkms-rec-'));
const config = { rkms: { recording: { roots: [dir] } } };
let server;
let browser;
before(async () => {
  server = await startRkms({ config, env: { KMS_NETWORK_INTERFACES: 'lo' } });
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
  await server?.stop();
});

/** A page publishing to a new pipeline; resolves once video flows in. */
async function publisher(client, codec) {
  const pipeline = await client.create('MediaPipeline');
  const { endpoint, peer } = await connectPage(browser, pipeline, { codec });
  await flowingIn(endpoint);
  return { pipeline, endpoint, peer };
}

/** Records `source` with each profile at once for `seconds`; returns
 * { profile: { file, seconds } } with the time each one recorded. */
async function recordAll(pipeline, source, profiles, seconds) {
  const recorders = [];
  for (const profile of profiles) {
    const ext = profile.startsWith('MP4') ? 'mp4' : profile.startsWith('MKV') ? 'mkv' : 'webm';
    const file = join(dir, `${profile.toLowerCase()}-${Date.now()}.${ext}`);
    const recorder = await pipeline.create('RecorderEndpoint', { uri: `file://${file}`, mediaProfile: profile });
    const errors = [];
    recorder.on('Error', (e) => errors.push(e));
    await source.connect(recorder);
    recorders.push({ profile, file, recorder, errors });
  }
  for (const r of recorders) {
    r.recording = nextEvent(r.recorder, 'Recording').then(() => { r.started = Date.now(); });
    await r.recorder.record();
  }
  await Promise.all(recorders.map((r) => r.recording));
  await sleep(seconds * 1000);
  await Promise.all(recorders.map(async (r) => {
    const stopped = nextEvent(r.recorder, 'Stopped');
    await r.recorder.stopAndWait();
    r.seconds = (Date.now() - r.started) / 1000;
    await stopped;
  }));
  return recorders;
}

function checkFile(r, expected) {
  assert.deepEqual(r.errors, [], `${r.profile}: Error events`);
  assert.ok(existsSync(r.file) && statSync(r.file).size > 0, `${r.profile}: no file`);
  const { streams, duration, span } = probe(r.file);
  const found = streams.map((s) => `${s.codec_type}:${s.codec_name}`).sort();
  assert.deepEqual(found, [...expected].sort(), `${r.profile}: streams`);
  // ffprobe adds a fragmented MP4 track's start offset to its duration
  // (video starts at its first keyframe, after audio): judge MP4 by the
  // media actually in the file.
  const measured = r.profile.startsWith('MP4') ? span : duration;
  assert.ok(Math.abs(measured - r.seconds) <= 0.1 * r.seconds,
    `${r.profile}: ${measured} s in the file (container says ${duration} s) for ${r.seconds} s recorded`);
  console.log(`${r.profile}: ${measured} s in the file (container says ${duration} s) for ${r.seconds} s recorded`);
  assert.equal(decodeErrors(r.file), '', `${r.profile}: ffmpeg decode errors`);
}

test('VP8 + opus from Chromium recorded with every WebM and MKV profile', async () => {
  const client = await kurento(server.url, { failAfter: 3 });
  const { pipeline, endpoint, peer } = await publisher(client, 'VP8');
  const recorders = await recordAll(pipeline, endpoint,
    ['WEBM', 'WEBM_AUDIO_ONLY', 'WEBM_VIDEO_ONLY', 'MKV', 'MKV_AUDIO_ONLY', 'MKV_VIDEO_ONLY'], 5);
  const expected = {
    WEBM: ['video:vp8', 'audio:opus'],
    WEBM_AUDIO_ONLY: ['audio:opus'],
    WEBM_VIDEO_ONLY: ['video:vp8'],
    MKV: ['video:vp8', 'audio:opus'],
    MKV_AUDIO_ONLY: ['audio:opus'],
    MKV_VIDEO_ONLY: ['video:vp8'],
  };
  for (const r of recorders) checkFile(r, expected[r.profile]);
  await pipeline.release();
  await peer.page.close();
  client.close();
});

test('H264 + opus from Chromium recorded with every MP4 profile and MKV', async () => {
  const client = await kurento(server.url, { failAfter: 3 });
  const { pipeline, endpoint, peer } = await publisher(client, 'H264');
  const recorders = await recordAll(pipeline, endpoint,
    ['MP4', 'MP4_AUDIO_ONLY', 'MP4_VIDEO_ONLY', 'MKV'], 5);
  const expected = {
    MP4: ['video:h264', 'audio:opus'],
    MP4_AUDIO_ONLY: ['audio:opus'],
    MP4_VIDEO_ONLY: ['video:h264'],
    MKV: ['video:h264', 'audio:opus'],
  };
  for (const r of recorders) checkFile(r, expected[r.profile]);
  await pipeline.release();
  await peer.page.close();
  client.close();
});

test('pause leaves the paused time out of the file', async () => {
  const client = await kurento(server.url, { failAfter: 3 });
  const { pipeline, endpoint, peer } = await publisher(client, 'VP8');
  const file = join(dir, `paused-${Date.now()}.webm`);
  const recorder = await pipeline.create('RecorderEndpoint', { uri: `file://${file}`, mediaProfile: 'WEBM' });
  await endpoint.connect(recorder);
  const recording = nextEvent(recorder, 'Recording');
  await recorder.record();
  await recording;
  let t = Date.now();
  await sleep(2500);
  const paused = nextEvent(recorder, 'Paused');
  await recorder.pause();
  await paused;
  let recorded = Date.now() - t;
  assert.equal(await recorder.getState(), 'PAUSE');
  await sleep(3000);
  const resumed = nextEvent(recorder, 'Recording');
  await recorder.record();
  await resumed;
  t = Date.now();
  await sleep(2500);
  await recorder.stopAndWait();
  recorded = (recorded + Date.now() - t) / 1000;
  assert.equal(await recorder.getState(), 'STOP');
  assert.equal(await recorder.getUri(), `file://${file}`);
  const { duration } = probe(file);
  assert.ok(Math.abs(duration - recorded) <= 0.15 * recorded,
    `duration ${duration} s for ${recorded} s recorded around a 3 s pause`);
  assert.equal(decodeErrors(file), '');
  await pipeline.release();
  await peer.page.close();
  client.close();
});

/** Follows `recorder`'s Recording, Paused and Stopped events, reading getState()
 * from inside each handler; `next()` resolves with the next [event, state read]. */
function stateReads(recorder) {
  const ready = [];
  const waiting = [];
  for (const event of ['Recording', 'Paused', 'Stopped']) {
    recorder.on(event, () => {
      const read = recorder.getState().then((state) => [event, state]);
      if (waiting.length) waiting.shift()(read);
      else ready.push(read);
    });
  }
  return () => (ready.length ? ready.shift() : new Promise((r) => waiting.push(r)));
}

test('getState() inside a recorder event handler reads that event\'s state, on the calling and on another connection', async () => {
  const client = await kurento(server.url, { failAfter: 3 });
  const other = await kurento(server.url, { failAfter: 3 });
  const { pipeline, endpoint, peer } = await publisher(client, 'VP8');
  const file = join(dir, `cycles-${Date.now()}.webm`);
  const recorder = await pipeline.create('RecorderEndpoint', { uri: `file://${file}`, mediaProfile: 'WEBM' });
  await endpoint.connect(recorder);
  const watched = await other.getMediaobjectById(recorder.id);
  const reads = { caller: stateReads(recorder), watcher: stateReads(watched) };
  // Answered after the subscriptions made on that connection: they are in place.
  await watched.getState();
  const steps = [['record', 'Recording', 'START'], ['pause', 'Paused', 'PAUSE'],
    ['record', 'Recording', 'START'], ['stop', 'Stopped', 'STOP']];
  for (let cycle = 0; cycle < 30; cycle++) {
    for (const [operation, event, state] of steps) {
      await recorder[operation]();
      for (const [who, next] of Object.entries(reads)) {
        assert.deepEqual(await next(), [event, state], `cycle ${cycle}, ${operation}, ${who}`);
      }
    }
  }
  await pipeline.release();
  await peer.page.close();
  other.close();
  client.close();
});

test('a recording survives SIGKILL of rkms', async () => {
  const own = await startRkms({ config, env: { KMS_NETWORK_INTERFACES: 'lo' } });
  const client = await kurento(own.url, { failAfter: 1 });
  const pipeline = await client.create('MediaPipeline');
  const { endpoint, peer } = await connectPage(browser, pipeline, { codec: 'VP8' });
  await flowingIn(endpoint);
  const files = [];
  // The page sends VP8, which MP4 does not hold: the MP4 recording is audio only.
  for (const [mediaProfile, ext] of [['WEBM', 'webm'], ['MP4_AUDIO_ONLY', 'mp4']]) {
    const file = join(dir, `killed-${Date.now()}.${ext}`);
    const recorder = await pipeline.create('RecorderEndpoint', { uri: `file://${file}`, mediaProfile });
    await endpoint.connect(recorder);
    const recording = nextEvent(recorder, 'Recording');
    await recorder.record();
    await recording;
    files.push(file);
  }
  await sleep(4000);
  own.proc.kill('SIGKILL');
  await new Promise((r) => own.proc.once('exit', r));
  await peer.page.close();
  client.close();
  for (const file of files) {
    const { streams, duration } = probe(file);
    assert.ok(streams.length >= 1, `${file}: no stream`);
    assert.ok(duration >= 2, `${file}: only ${duration} s after ~4 s of recording`);
  }
});

test('a uri outside the recording roots is refused', async () => {
  const raw = await RawClient.open(server.url);
  const pipeline = await raw.call('create', { type: 'MediaPipeline' });
  for (const uri of ['file:///etc/rkms-test.webm', `file://${dir}/../escape.webm`, 'http://example.invalid/x.webm']) {
    const a = await raw.request('create', { type: 'RecorderEndpoint',
      constructorParams: { mediaPipeline: pipeline, uri } });
    assert.equal(a.error?.code, 40107, `${uri}: ${JSON.stringify(a)}`);
    assert.match(a.error.message, /uri/);
  }
  const ok = await raw.request('create', { type: 'RecorderEndpoint',
    constructorParams: { mediaPipeline: pipeline, uri: `file://${dir}/fine.webm` } });
  assert.ok(ok.result?.value, JSON.stringify(ok));
  await raw.call('release', { object: pipeline });
  await raw.close();
});
