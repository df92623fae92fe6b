// PlayerEndpoint with real files and a real viewer: ffmpeg-made WebM and
// MP4 files played to headless Chromium through a WebRtcEndpoint, which
// must decode them; broken inputs raise Error and the server carries on.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, createReadStream, existsSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRkms } from './helpers.mjs';
import { launchBrowser } from './browser.mjs';
import { connectPage, flowingIn, nextEvent, probe, decodeErrors, kurento } from './media-peers.mjs';

const dir = mkdtempSync(join(tmpdir(), 'rkms-play-'));
const SECONDS = 4;

/** An ffmpeg test pattern with a tone, `SECONDS` long, a keyframe a second. */
function makeFile(name, videoArgs, audioArgs) {
  const file = join(dir, name);
  execFileSync('ffmpeg', ['-nostdin', '-v', 'error', '-y',
    '-f', 'lavfi', '-i', 'testsrc=size=320x240:rate=30',
    '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000',
    '-t', String(SECONDS), '-g', '30', ...videoArgs, ...audioArgs, file]);
  return file;
}

let server;
let browser;
let webm;
let mp4;
let http;
before(async () => {
  webm = makeFile('vp8-opus.webm', ['-c:v', 'libvpx', '-b:v', '500k', '-deadline', 'realtime', '-cpu-used', '8'],
    ['-c:a', 'libopus', '-b:a', '64k']);
  mp4 = makeFile('h264-aac.mp4', ['-c:v', 'libx264', '-preset', 'veryfast', '-profile:v', 'baseline', '-pix_fmt', 'yuv420p'],
    ['-c:a', 'aac', '-b:a', '96k']);
  server = await startRkms({ config: { rkms: { recording: { roots: [dir] } } }, env: { KMS_NETWORK_INTERFACES: 'lo' } });
  browser = await launchBrowser();
  // Serves the test files on loopback.
  http = createServer((req, res) => {
    const file = join(dir, decodeURIComponent(req.url.slice(1)));
    if (!existsSync(file)) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'video/webm' });
    createReadStream(file).pipe(res);
  });
  await new Promise((r) => http.listen(0, '127.0.0.1', r));
});
after(async () => {
  http?.close();
  await browser?.close();
  await server?.stop();
});

/** Plays `uri` to a new page `runs` times (each play opens it again: another SSRC, sequence
 * and timestamps); returns what the page decoded and the events. */
async function playToPage(uri, codec, runs = 1) {
  const client = await kurento(server.url, { failAfter: 3 });
  const pipeline = await client.create('MediaPipeline');
  const player = await pipeline.create('PlayerEndpoint', { uri });
  const errors = [];
  player.on('Error', (e) => errors.push(e));
  const { endpoint, peer } = await connectPage(browser, pipeline, { codec });
  await flowingIn(endpoint); // the page is connected
  await player.connect(endpoint);
  const info = await player.getVideoInfo();
  let stats;
  for (let run = 0; run < runs; run++) {
    const frames = stats?.video?.framesDecoded ?? 0;
    const ended = nextEvent(player, 'EndOfStream', () => true, (SECONDS + 10) * 1000);
    await player.play();
    stats = await peer.waitFor((s) => s.video?.framesDecoded > frames + 30);
    await ended;
  }
  const position = await player.getPosition();
  await pipeline.release();
  await peer.page.close();
  client.close();
  return { stats, errors, info, position };
}

test('a VP8/opus WebM file plays to Chromium, which decodes it; EndOfStream fires', async () => {
  const { stats, errors, info, position } = await playToPage(`file://${webm}`, 'VP8');
  assert.ok(position >= (SECONDS - 1) * 1000, `position ${position} ms at the end`);
  assert.match(stats.video.codec, /VP8/i);
  assert.equal(stats.video.frameWidth, 320);
  assert.ok(stats.audio?.packetsReceived > 0, 'no audio reached the page');
  assert.deepEqual(errors, []);
  assert.equal(info.isSeekable, true);
  assert.ok(Math.abs(info.duration - SECONDS * 1000) < 200, `duration ${info.duration} ms`);
});

test('a file played again continues the page\'s stream: Chromium decodes the second run too', async () => {
  const { stats, errors } = await playToPage(`file://${webm}`, 'VP8', 2);
  assert.equal(stats.video.frameWidth, 320);
  assert.deepEqual(errors, []);
});

test('an H264/AAC MP4 file plays its video to Chromium (AAC cannot travel over WebRTC)', async () => {
  const { stats, errors } = await playToPage(mp4, 'H264');
  assert.match(stats.video.codec, /H264/i);
  assert.equal(stats.video.frameHeight, 240);
  assert.deepEqual(errors, []);
});

test('a missing or garbage file raises Error, and the server carries on', async () => {
  const garbage = join(dir, 'garbage.webm');
  writeFileSync(garbage, Buffer.alloc(4096, 7));
  const truncated = join(dir, 'truncated.webm');
  writeFileSync(truncated, execFileSync('head', ['-c', '200', webm]));
  const client = await kurento(server.url, { failAfter: 3 });
  const pipeline = await client.create('MediaPipeline');
  for (const [file, type] of [[join(dir, 'absent.webm'), 'RESOURCE_ERROR_OPEN'],
    [garbage, 'STREAM_ERROR_DEMUX'], [truncated, 'STREAM_ERROR_DEMUX']]) {
    const player = await pipeline.create('PlayerEndpoint', { uri: `file://${file}` });
    const error = nextEvent(player, 'Error');
    await player.play();
    const e = await error;
    assert.equal(e.type, type, JSON.stringify(e));
    assert.ok(e.description.length > 0);
  }
  const refused = await pipeline.create('PlayerEndpoint', { uri: 'gopher://x/y' }).then(() => null, (e) => e);
  assert.ok(refused, 'an unsupported scheme is refused');
  // Still serving: a player of a good file works after the bad ones.
  const good = await pipeline.create('PlayerEndpoint', { uri: `file://${webm}` });
  assert.equal((await good.getVideoInfo()).isSeekable, true);
  await pipeline.release();
  client.close();
});

test('a file served over HTTP plays; a missing URL raises Error', async () => {
  const base = `http://127.0.0.1:${http.address().port}`;
  const { stats, errors } = await playToPage(`${base}/vp8-opus.webm`, 'VP8');
  assert.match(stats.video.codec, /VP8/i);
  assert.deepEqual(errors, []);

  const client = await kurento(server.url, { failAfter: 3 });
  const pipeline = await client.create('MediaPipeline');
  const player = await pipeline.create('PlayerEndpoint', { uri: `${base}/absent.webm` });
  const error = nextEvent(player, 'Error');
  await player.play();
  const e = await error;
  assert.equal(e.type, 'RESOURCE_ERROR_OPEN', JSON.stringify(e));
  assert.match(e.description, /404/);
  await pipeline.release();
  client.close();
});

test('a player feeding a recorder with stopOnEndOfStream: the recording stops at the end', async () => {
  const client = await kurento(server.url, { failAfter: 3 });
  const pipeline = await client.create('MediaPipeline');
  const player = await pipeline.create('PlayerEndpoint', { uri: `file://${webm}` });
  const out = join(dir, 'replayed.mkv');
  const recorder = await pipeline.create('RecorderEndpoint',
    { uri: `file://${out}`, mediaProfile: 'MKV', stopOnEndOfStream: true });
  await player.connect(recorder);
  await recorder.record();
  const stopped = nextEvent(recorder, 'Stopped', () => true, (SECONDS + 10) * 1000);
  await player.play();
  await stopped;
  assert.equal(await recorder.getState(), 'STOP');
  const { streams, duration } = probe(out);
  assert.deepEqual(streams.map((s) => s.codec_name).sort(), ['opus', 'vp8']);
  assert.ok(Math.abs(duration - SECONDS) < 0.5, `duration ${duration} s of a ${SECONDS} s file`);
  assert.equal(decodeErrors(out), '');
  await pipeline.release();
  client.close();
});
