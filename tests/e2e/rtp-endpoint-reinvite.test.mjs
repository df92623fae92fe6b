// RtpEndpoint renegotiation, as a SIP gateway bridging calls into rkms does it
// with re-INVITEs: the gateway moves its media, puts the call on hold and
// resumes it, and rkms re-offers; SDES keys are renewed and their lifetime
// honoured (OnKeySoftLimit). ffmpeg plays the gateway's sending side and a
// UDP socket of this test its receiving side, counting the packets rkms sends
// it; headless Chromium decodes what ffmpeg sends through a WebRtcEndpoint
// and publishes its camera to the gateway.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { startRkms } from './helpers.mjs';
import { launchBrowser } from './browser.mjs';
import { connectPage, flowingIn, nextEvent, kurento } from './media-peers.mjs';
import { ENCODERS, ffmpegSends, ffmpegSendsTo, killFfmpegs, mediaLine, peerSdp } from './ffmpeg-rtp.mjs';

const key = (text) => Buffer.from(text).subarray(0, 30).toString('base64');
const FIRST_KEY = key('rkms-reinvite-first-key-30-bytes');
const SECOND_KEY = key('rkms-reinvite-second-key-30-byte');

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

/** The gateway's receiving socket: counts the RTP packets rkms sends it. */
async function gatewaySocket() {
  const socket = createSocket('udp4');
  let count = 0;
  socket.on('message', (m) => {
    // RTCP (packet types 200-206) would go to the next port; counted are RTP packets only.
    if (m.length >= 12 && !(m[1] >= 200 && m[1] <= 206)) count += 1;
  });
  await new Promise((resolve) => socket.bind(0, '127.0.0.1', resolve));
  return {
    port: socket.address().port,
    count: () => count,
    close: () => socket.close(),
  };
}

/** Resolves once `counter()` has grown by `n`. */
async function grows(counter, n, what, timeoutMs = 20000) {
  const from = counter();
  const deadline = Date.now() + timeoutMs;
  while (counter() < from + n) {
    if (Date.now() > deadline) throw new Error(`${what}: ${counter() - from} of ${n} in ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The `o=` session id and version of an SDP. */
function origin(sdp) {
  const [, id, version] = sdp.split(/\r?\n/).find((l) => l.startsWith('o=')).split(' ');
  return { id, version: Number(version) };
}

/** A pipeline with an RtpEndpoint feeding a Chromium page and fed by its camera. */
async function gatewayCall(rtpParams = {}) {
  const client = await kurento(server.url, { failAfter: 3 });
  const pipeline = await client.create('MediaPipeline');
  const rtp = await pipeline.create('RtpEndpoint', rtpParams);
  const { endpoint, peer } = await connectPage(browser, pipeline, { codec: 'VP8' });
  await rtp.connect(endpoint);
  await endpoint.connect(rtp);
  const decoded = async () => (await peer.stats()).video?.framesDecoded ?? 0;
  const release = async () => {
    await pipeline.release();
    await peer.page.close();
    client.close();
  };
  return { rtp, peer, decoded, release };
}

test('a gateway\'s re-INVITEs move the media, hold and resume; the browser keeps decoding', async () => {
  const { rtp, peer, decoded, release } = await gatewayCall();
  const vp8 = { pt: 96, rtpmap: ENCODERS.VP8.rtpmap };
  const first = await gatewaySocket();
  const answer = await rtp.processOffer(peerSdp({ port: first.port, ...vp8, direction: 'sendrecv' }));
  const video = mediaLine(answer, 'video');
  const session = origin(answer);
  let { ff } = await ffmpegSends({ port: video.port, pt: 96, codec: 'VP8' });
  await flowingIn(rtp);
  await peer.waitFor((s) => s.video?.framesDecoded > 30);
  await grows(first.count, 30, 'the camera at the gateway\'s first address');

  // The gateway moved its media: a new address in the re-offer, and a new ffmpeg (new SSRC and
  // sequence) sending to the same rkms port.
  const moved = await gatewaySocket();
  const reanswer = await rtp.processOffer(peerSdp({ port: moved.port, ...vp8, direction: 'sendrecv', version: 1 }));
  assert.equal(mediaLine(reanswer, 'video').port, video.port, 'rkms keeps its port');
  assert.deepEqual(origin(reanswer), { id: session.id, version: session.version + 1 });
  ff.child.kill('SIGKILL');
  ({ ff } = await ffmpegSends({ port: video.port, pt: 96, codec: 'VP8' }));
  let frames = await decoded();
  await peer.waitFor((s) => s.video?.framesDecoded > frames + 30);
  await grows(moved.count, 30, 'the camera at the gateway\'s new address');
  const left = first.count();
  await grows(moved.count, 30, 'more of the camera at the new address');
  assert.equal(first.count(), left, 'nothing more goes to the old address');

  // Hold: the gateway only sends. Chromium still decodes ffmpeg; the gateway gets nothing.
  const hold = await rtp.processOffer(peerSdp({ port: moved.port, ...vp8, direction: 'sendonly', version: 2 }));
  assert.ok(mediaLine(hold, 'video').section.includes('a=recvonly'), hold);
  const held = moved.count();
  frames = await decoded();
  await peer.waitFor((s) => s.video?.framesDecoded > frames + 30);
  assert.ok(moved.count() - held <= 3, `${moved.count() - held} packets sent on hold`);

  // Resume.
  const resume = await rtp.processOffer(peerSdp({ port: moved.port, ...vp8, direction: 'sendrecv', version: 3 }));
  assert.ok(mediaLine(resume, 'video').section.includes('a=sendrecv'), resume);
  assert.equal(origin(resume).version, session.version + 3);
  await grows(moved.count, 30, 'the camera after the hold');
  frames = await decoded();
  await peer.waitFor((s) => s.video?.framesDecoded > frames + 30);
  ff.child.kill('SIGKILL');
  first.close();
  moved.close();
  await release();
});

test('rkms re-offers with its ports; an SDES re-key in the answer keeps the browser decoding', async () => {
  const crypto = kurento.getComplexType('SDES')({ crypto: 'AES_128_CM_HMAC_SHA1_80' });
  const { rtp, peer, decoded, release } = await gatewayCall({ crypto });
  const sent = await ffmpegSendsTo(rtp, 'VP8', { crypto: FIRST_KEY });
  const { offer, video } = sent;
  let { ff } = sent;
  await peer.waitFor((s) => s.video?.framesDecoded > 30);

  const reoffer = await rtp.generateOffer();
  const again = mediaLine(reoffer, 'video');
  assert.equal(again.port, video.port);
  assert.equal(again.pt('VP8'), video.pt('VP8'));
  assert.deepEqual(origin(reoffer), { id: origin(offer).id, version: origin(offer).version + 1 });
  const rkmsKey = (sdp) => mediaLine(sdp, 'video').section.find((l) => l.startsWith('a=crypto:'));
  assert.equal(rkmsKey(reoffer), rkmsKey(offer), 'rkms keeps a key that has not worn out');
  assert.equal(mediaLine(reoffer, 'audio').port, 0, 'the refused line stays refused');

  // The gateway answers with a new key of its own, and sends with it.
  ff.child.kill('SIGKILL');
  const pt = video.pt('VP8');
  const sender = await ffmpegSends({ port: video.port, pt, codec: 'VP8', crypto: SECOND_KEY });
  ff = sender.ff;
  const frames = await decoded();
  await rtp.processAnswer(peerSdp({ port: sender.local, proto: 'RTP/SAVP', pt, rtpmap: ENCODERS.VP8.rtpmap,
    direction: 'sendonly', crypto: SECOND_KEY, refuseAudio: true, version: 1 }));
  await peer.waitFor((s) => s.video?.framesDecoded > frames + 30);
  assert.match(await rtp.getRemoteSessionDescriptor(), new RegExp(`inline:${SECOND_KEY.replace(/[+/]/g, '\\$&')}`));
  ff.child.kill('SIGKILL');
  await release();
});

test('OnKeySoftLimit reaches the client before a key\'s lifetime ends; later packets are dropped', async () => {
  const crypto = kurento.getComplexType('SDES')({ crypto: 'AES_128_CM_HMAC_SHA1_80' });
  const { rtp, release } = await gatewayCall({ crypto });
  const softLimit = nextEvent(rtp, 'OnKeySoftLimit');
  const stopped = nextEvent(rtp, 'MediaFlowInStateChanged',
    (e) => e.mediaType === 'VIDEO' && e.state === 'NOT_FLOWING', 40000);
  // 2^10 packets: small RTP packets make ffmpeg reach it in a few seconds.
  const { ff } = await ffmpegSendsTo(rtp, 'VP8', { crypto: FIRST_KEY, lifetime: '2^10', pktSize: 200, noise: true });
  const event = await softLimit;
  assert.equal(event.type, 'OnKeySoftLimit');
  assert.equal(event.mediaType, 'VIDEO');
  assert.equal(typeof event.source === 'string' ? event.source : event.source.id, rtp.id);
  assert.ok(Number(event.timestamp) > 0, JSON.stringify(event));
  // The key then expires: nothing more is accepted though ffmpeg keeps sending.
  await stopped;
  const stats = await rtp.getStats('VIDEO');
  const [inbound] = Object.values(stats).filter((s) => s.type === 'inboundrtp');
  assert.equal(inbound?.packetsReceived, 1023, JSON.stringify(stats));
  assert.equal(ff.child.exitCode, null, 'ffmpeg was still sending');
  ff.child.kill('SIGKILL');
  await release();
});
