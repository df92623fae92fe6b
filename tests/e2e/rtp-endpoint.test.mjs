// RtpEndpoint against ffmpeg, the way SIP gateways and GStreamer/ffmpeg
// pipelines use Kurento: plain RTP (and SDES-SRTP) offer/answer, ffmpeg
// sending a test pattern that headless Chromium must decode through a
// WebRtcEndpoint, Chromium's camera received by ffmpeg into a file that
// ffprobe reads, and bad SDP refused with Kurento's error codes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRkms, RawClient, sleep } from './helpers.mjs';
import { launchBrowser } from './browser.mjs';
import { connectPage, flowingIn, nextEvent, kurento } from './media-peers.mjs';
import { ffmpegSendsTo, killFfmpegs, mediaLine, freePortPair, runFfmpeg, peerSdp } from './ffmpeg-rtp.mjs';

const dir = mkdtempSync(join(tmpdir(), 'rkms-rtp-'));
const SDES_KEY = Buffer.from('rkms-rtp-endpoint-test-key-30b').subarray(0, 30).toString('base64');

let server;
let browser;
before(async () => {
  server = await startRkms({ env: { KMS_NETWORK_INTERFACES: 'lo' } });
  browser = await launchBrowser();
});
after(async () => {
  killFfmpegs();
  await browser?.close();
  await server?.stop();
});

/** Resolves once someone has bound UDP `port` on loopback (ffmpeg listening). */
async function boundByOther(port, timeoutMs = 20000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const taken = await new Promise((resolve) => {
      const s = createSocket('udp4');
      s.once('error', () => resolve(true));
      s.bind(port, '127.0.0.1', () => s.close(() => resolve(false)));
    });
    if (taken) return;
    await sleep(100);
  }
  throw new Error(`nothing bound UDP port ${port}`);
}

/** ffmpeg sends a test pattern to rkms's offer; the RtpEndpoint feeds a
 * Chromium page, which must decode it. */
async function ffmpegToPage(codec, { crypto } = {}) {
  const client = await kurento(server.url, { failAfter: 3 });
  const pipeline = await client.create('MediaPipeline');
  const rtp = await pipeline.create('RtpEndpoint', crypto
    ? { crypto: kurento.getComplexType('SDES')({ crypto: 'AES_128_CM_HMAC_SHA1_80' }) } : {});
  const { endpoint, peer } = await connectPage(browser, pipeline, { codec });
  await rtp.connect(endpoint);
  const connected = nextEvent(rtp, 'ConnectionStateChanged', (e) => e.newState === 'CONNECTED');
  const { ff, video } = await ffmpegSendsTo(rtp, codec, { crypto });
  assert.equal(video.proto, crypto ? 'RTP/SAVPF' : 'RTP/AVPF');
  assert.equal(video.section.some((l) => l.startsWith('a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:')), !!crypto);
  await connected;
  await flowingIn(rtp);
  const stats = await peer.waitFor((s) => s.video?.framesDecoded > 30);
  const rtpStats = await rtp.getStats('VIDEO');
  ff.child.kill('SIGTERM');
  await ff.exited;
  const remote = await rtp.getRemoteSessionDescriptor();
  await pipeline.release();
  await peer.page.close();
  client.close();
  return { stats, remote, rtpStats };
}

/** The entries of a Kurento stats report of one `type` (inboundrtp, outboundrtp, ...). */
function statsOf(report, type) {
  return Object.values(report).filter((s) => s.type === type);
}

/** Chromium's camera goes through rkms to ffmpeg, which records 40 frames to a
 * WebM file (a count, not a duration: a loaded machine slows Chromium's
 * camera); returns ffprobe's view of the file. */
async function pageToFfmpeg({ crypto } = {}) {
  const client = await kurento(server.url, { failAfter: 3 });
  const pipeline = await client.create('MediaPipeline');
  const { endpoint } = await connectPage(browser, pipeline, { codec: 'VP8' });
  await flowingIn(endpoint);
  const rtp = await pipeline.create('RtpEndpoint', crypto ? {
    crypto: kurento.getComplexType('SDES')({ crypto: 'AES_128_CM_HMAC_SHA1_80', keyBase64: crypto }),
  } : {});
  await endpoint.connect(rtp);

  const port = await freePortPair();
  const sdpFile = join(dir, `offer-${port}.sdp`);
  const offer = peerSdp({ port, proto: crypto ? 'RTP/SAVP' : 'RTP/AVP', pt: 96, rtpmap: 'VP8/90000',
    direction: 'recvonly', crypto });
  writeFileSync(sdpFile, offer);
  const out = join(dir, `received-${port}.webm`);
  const ff = runFfmpeg(['-protocol_whitelist', 'file,udp,rtp,srtp', '-i', sdpFile,
    '-c', 'copy', '-frames:v', '40', '-y', out]);
  await boundByOther(port);
  const answer = await rtp.processOffer(offer);
  const video = mediaLine(answer, 'video');
  assert.equal(video.pt('VP8'), 96, 'the answer keeps the offerer\'s payload type');
  assert.equal(video.section.includes('a=sendonly'), true, answer);
  const { code, stderr } = await ff.exited;
  assert.equal(code, 0, stderr);
  const flowing = await rtp.isMediaFlowingOut('VIDEO');
  const rtpStats = await rtp.getStats('VIDEO');
  await pipeline.release();
  client.close();
  const probe = JSON.parse(execFileSync('ffprobe', ['-v', 'error', '-count_frames', '-show_entries',
    'stream=codec_type,codec_name,nb_read_frames', '-of', 'json', out]).toString());
  return { streams: probe.streams, flowing, rtpStats };
}

test('ffmpeg sends VP8 RTP to the offer of an RtpEndpoint; Chromium decodes it', async () => {
  const { stats, remote, rtpStats } = await ffmpegToPage('VP8');
  assert.match(stats.video.codec, /VP8/i);
  assert.equal(stats.video.frameWidth, 320);
  assert.match(remote, /a=sendonly/);
  // getStats counts what ffmpeg sent. Its snapshot is refreshed every 200 ms, so it may lag the
  // browser's count by a few frames: asked for more than half of what was decoded.
  const [inbound] = statsOf(rtpStats, 'inboundrtp');
  assert.ok(inbound?.packetsReceived > 15, JSON.stringify(rtpStats));
  assert.ok(inbound.bytesReceived > 1000);
  assert.match(rtpStats[inbound.codecId].codec, /VP8/);
  assert.ok(statsOf(rtpStats, 'transport')[0].bytesReceived > inbound.bytesReceived);
  assert.deepEqual(statsOf(rtpStats, 'outboundrtp'), [], 'a sendonly remote gets nothing');
});

test('ffmpeg sends H264 RTP (packetization-mode 1); Chromium decodes it', async () => {
  const { stats } = await ffmpegToPage('H264');
  assert.match(stats.video.codec, /H264/i);
  assert.equal(stats.video.frameHeight, 240);
});

test('SDES: ffmpeg sends SRTP with its own key from the answer; Chromium decodes it', async () => {
  const { stats } = await ffmpegToPage('VP8', { crypto: SDES_KEY });
  assert.match(stats.video.codec, /VP8/i);
});

test('Chromium publishes through an RtpEndpoint answering ffmpeg\'s offer; ffmpeg records it', async () => {
  const { streams, flowing, rtpStats } = await pageToFfmpeg();
  assert.equal(flowing, true);
  assert.equal(streams.length, 1);
  assert.equal(streams[0].codec_name, 'vp8');
  assert.ok(Number(streams[0].nb_read_frames) > 30, JSON.stringify(streams));
  // getStats counts what rkms sent ffmpeg: at least the frames in its file.
  const [outbound] = statsOf(rtpStats, 'outboundrtp');
  assert.ok(outbound?.packetsSent > Number(streams[0].nb_read_frames), JSON.stringify(rtpStats));
  assert.match(rtpStats[outbound.codecId].codec, /VP8/);
});

test('SDES with keyBase64: ffmpeg decrypts what rkms sends with the given key', async () => {
  const { streams } = await pageToFfmpeg({ crypto: SDES_KEY });
  assert.equal(streams[0].codec_name, 'vp8');
  assert.ok(Number(streams[0].nb_read_frames) > 30, JSON.stringify(streams));
});

test('bad SDP and bad keys get Kurento\'s error codes; the server stays usable', async () => {
  const c = await RawClient.open(server.url);
  const pipeline = await c.call('create', { type: 'MediaPipeline', constructorParams: {} });
  const create = (params) => c.request('create',
    { type: 'RtpEndpoint', constructorParams: { mediaPipeline: pipeline, ...params } });
  const ep = (await create({})).result.value;
  const invoke = (object, operation, operationParams = {}) =>
    c.request('invoke', { object, operation, operationParams });
  const cases = [
    [['processOffer', { offer: 'not sdp at all' }], 40201],
    [['processAnswer', { answer: 'v=0' }], 40209],
    [['processOffer', { offer: peerSdp({ port: 5004, proto: 'UDP/TLS/RTP/SAVPF', pt: 96,
      rtpmap: 'VP8/90000', direction: 'sendrecv' }) }], 40205],
    [['processOffer', { offer: peerSdp({ port: 5004, pt: 96, rtpmap: 'theora/90000', direction: 'sendrecv' }) }], 40205],
    [['processOffer', { offer: peerSdp({ port: 5004, proto: 'RTP/SAVP', pt: 96, rtpmap: 'VP8/90000',
      direction: 'sendrecv', crypto: SDES_KEY }) }], 40205],
    [['getLocalSessionDescriptor'], 40202],
    [['generateOffer', { options: { offerToReceiveAudio: false, offerToReceiveVideo: false } }], 40204],
  ];
  for (const [[operation, params], code] of cases) {
    const answer = await invoke(ep, operation, params);
    assert.equal(answer.error?.code, code, `${operation} -> ${JSON.stringify(answer)}`);
    assert.ok(answer.error.message.length > 0);
  }
  const badKey = await create({ crypto: { crypto: 'AES_128_CM_HMAC_SHA1_80', key: 'too short' } });
  assert.equal(badKey.error?.code, 40107, JSON.stringify(badKey));
  assert.match(badKey.error.message, /crypto/);
  // The same endpoint still negotiates.
  const offer = (await invoke(ep, 'generateOffer')).result.value;
  assert.match(offer, /m=audio \d+ RTP\/AVPF 111 0 8/);
  assert.match(offer, /m=video \d+ RTP\/AVPF 96 97 98 99/);
  const answer = peerSdp({ port: 5004, pt: 96, rtpmap: 'VP8/90000', direction: 'sendrecv', refuseAudio: true });
  assert.equal((await invoke(ep, 'processAnswer', { answer: 'garbage' })).error?.code, 40201);
  const done = await invoke(ep, 'processAnswer', { answer });
  assert.equal(done.error, undefined, JSON.stringify(done));
  assert.equal((await invoke(ep, 'processAnswer', { answer })).error?.code, 40210);
  // Negotiated, generateOffer re-offers (rtp-endpoint-reinvite.test.mjs); a remote offer while
  // it waits for its answer is refused.
  const reoffer = (await invoke(ep, 'generateOffer')).result?.value;
  assert.match(reoffer, /m=audio 0 /, 'the refused line stays refused');
  assert.equal((await invoke(ep, 'processOffer', { offer: answer })).error?.code, 40205);
  assert.match((await invoke(ep, 'getRemoteSessionDescriptor')).result.value, /m=video 5004/);
  await c.call('release', { object: pipeline });
  await c.close();
});
