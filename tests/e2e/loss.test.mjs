// Forwarding under loss: a UDP proxy of the test sits between each Chromium
// peer connection and rkms and drops 5% of the datagrams in each direction.
// The same one-to-one forward (a publisher page, a viewer page) runs twice:
// with NACK negotiated, and with NACK taken out of the offers. Retransmission
// must be what makes the difference: the viewer's unrepaired loss and frozen
// time fall, the publisher is asked for and resends packets, the viewer's
// NACKs are sent and answered by rkms as RTX (the viewer negotiated rtx).
// Then the source is an RtpEndpoint fed by ffmpeg, which rkms cannot ask for
// anything: the viewer's NACKs are answered from rkms's history alone.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { startRkms, sleep } from './helpers.mjs';
import { launchBrowser } from './browser.mjs';
import { connectEndpoint, mainPc, rtpStats } from './kurento-peers.mjs';
import { ffmpegSendsTo, killFfmpegs } from './ffmpeg-rtp.mjs';
import { udpProxy, throughProxy, withoutLines, withoutCandidates } from './udp-proxy.mjs';

const require = createRequire(import.meta.url);
const kurento = require('kurento-client');

const LOSS = 0.05;
const LOSSY_SECONDS = 15;

let server;
let browser;
let client;
const proxies = [];
before(async () => {
  server = await startRkms({ env: { KMS_NETWORK_INTERFACES: 'lo' } });
  browser = await launchBrowser();
  client = await kurento(server.url, { failAfter: 3 });
});
after(async () => {
  killFfmpegs();
  for (const p of proxies) p.close();
  client?.close();
  await browser?.close();
  await server?.stop();
});

/** A proxy for one peer connection, closed after the tests. */
async function lossyProxy(seed) {
  const proxy = await udpProxy(seed);
  proxies.push(proxy);
  return proxy;
}

const NACK_LINE = '^a=rtcp-fb:\\S+ nack$';
const withoutNack = (sdp) => withoutLines(withoutCandidates(sdp), NACK_LINE);

/** The page's offer, set as its local description without the lines matching `strip`. */
function offerWithout(page, strip) {
  return page.evaluate(async (re) => {
    const pc = window.peer.pc;
    let { sdp } = await pc.createOffer();
    if (re) sdp = sdp.split('\r\n').filter((l) => !new RegExp(re).test(l)).join('\r\n');
    await pc.setLocalDescription({ type: 'offer', sdp });
    return pc.localDescription.sdp;
  }, strip);
}

/**
 * A new WebRtcEndpoint of `pipeline` and a browser page connected to it
 * through a lossy proxy (not dropping yet); without `nack`, NACK is taken out
 * of both descriptions. Keeps rkms's answer.
 */
async function lossySide(pipeline, { nack, seed }) {
  const endpoint = await pipeline.create('WebRtcEndpoint');
  const peer = await browser.newPeer();
  const proxy = await lossyProxy(seed);
  // Without NACK, the browser's own description leaves it out too (munged before
  // setLocalDescription), so neither side asks for retransmissions.
  const side = { ...mainPc(peer), createOffer: () => offerWithout(peer.page, nack ? null : NACK_LINE) };
  const result = { endpoint, peer, proxy, answer: '' };
  try {
    await connectEndpoint(endpoint, side, {
      ...throughProxy(proxy),
      offer: withoutCandidates,
      answer: (sdp) => { result.answer = sdp; return nack ? withoutCandidates(sdp) : withoutNack(sdp); },
      timeoutMs: 20000,
    });
  } catch (err) {
    // What the proxy saw tells a connectivity failure of the test's own relay
    // from one of rkms or the browser.
    const { dropped, passed, foreign, server: to, browser: from } = proxy;
    const state = await peer.stats().catch(() => null);
    err.message += `; proxy ${JSON.stringify({ dropped, passed, foreign, to, from })}`
      + `; browser ${JSON.stringify(state && { connection: state.connection, ice: state.ice })}`;
    throw err;
  }
  return result;
}

/** Whether rkms's answer pairs its video stream with an RTX one: an rtx
 * payload type and an `a=ssrc-group:FID` in the video section. */
function answersRtx(sdp) {
  const video = sdp.split(/\r\nm=/).find((m) => m.startsWith('video')) || '';
  return /\r\na=rtpmap:\d+ rtx\/90000/.test(video) && /\r\na=ssrc-group:FID \d+ \d+/.test(video);
}

/** The viewer's figures over the lossy period, from stats taken before and after. */
function delta(start, end) {
  const d = (k) => end.video[k] - start.video[k];
  const expected = d('packetsReceived') + d('packetsLost');
  // RTX packets repair losses without counting as received on the media
  // stream: what stays lost is what no retransmission made up for.
  const unrepaired = Math.max(0, d('packetsLost') - d('retransmittedPacketsReceived'));
  return {
    lossRatio: unrepaired / Math.max(1, expected),
    packetsReceived: d('packetsReceived'),
    retransmitted: d('retransmittedPacketsReceived'),
    framesDecoded: d('framesDecoded'),
    framesDropped: d('framesDropped'),
    freezes: d('freezeCount'),
    frozenSeconds: d('totalFreezesDuration'),
    plis: d('pliCount'),
    viewerNacks: d('nackCount'),
  };
}

/** One publisher → rkms → viewer forward through lossy proxies; returns the figures. */
async function lossyForward({ nack, seed }) {
  const pipeline = await client.create('MediaPipeline');
  const publisher = await lossySide(pipeline, { nack, seed });
  const viewer = await lossySide(pipeline, { nack, seed: seed + 1 });
  const sides = [publisher, viewer];
  await publisher.endpoint.connect(viewer.endpoint);
  await viewer.peer.waitFor((s) => s.video?.framesDecoded > 20);
  const start = await rtpStats(viewer.peer.page);
  const startSent = (await rtpStats(publisher.peer.page)).sent;
  for (const s of sides) s.proxy.loss = LOSS;
  await sleep(LOSSY_SECONDS * 1000);
  for (const s of sides) s.proxy.loss = 0;
  const end = await rtpStats(viewer.peer.page);
  const endSent = (await rtpStats(publisher.peer.page)).sent;
  await pipeline.release();
  await Promise.all(sides.map((s) => s.peer.page.close()));
  return {
    nack,
    rtx: answersRtx(viewer.answer),
    ...delta(start, end),
    publisherNacksReceived: endSent.nackCount - startSent.nackCount,
    publisherResent: endSent.retransmittedPacketsSent - startSent.retransmittedPacketsSent,
    dropped: sides.reduce((n, s) => n + s.proxy.dropped, 0),
  };
}

test('NACK answered through 5% loss each way: less remaining loss and freezing than without', async (t) => {
  const withNack = await lossyForward({ nack: true, seed: 1 });
  const noNack = await lossyForward({ nack: false, seed: 1 });
  t.diagnostic(`with NACK:    ${JSON.stringify(withNack)}`);
  t.diagnostic(`without NACK: ${JSON.stringify(noNack)}`);
  // The proxies really dropped packets in both runs.
  assert.ok(withNack.dropped > 0 && noNack.dropped > 0);
  // Without NACK nobody asks for anything back.
  assert.equal(noNack.viewerNacks, 0, 'NACK was not taken out of the viewer\'s session');
  assert.equal(noNack.publisherNacksReceived, 0, 'rkms NACKed a publisher that did not negotiate it');
  // With NACK: the viewer asks rkms, rkms asks the publisher, which resends.
  assert.ok(withNack.viewerNacks > 0, 'the viewer sent no NACK');
  // rkms answers the viewer on its RTX stream, which the viewer counts.
  assert.ok(withNack.rtx, 'rkms\'s answer pairs no RTX stream with the video');
  assert.ok(withNack.retransmitted > 0, 'the viewer received no retransmission');
  assert.equal(noNack.retransmitted, 0);
  assert.ok(withNack.publisherNacksReceived > 0, 'rkms sent the publisher no NACK');
  assert.ok(withNack.publisherResent > 0, 'the publisher resent nothing');
  // Answered NACKs repair the stream: far less remaining loss, less frozen video.
  assert.ok(withNack.lossRatio < noNack.lossRatio / 2,
    `remaining loss with NACK ${withNack.lossRatio} vs without ${noNack.lossRatio}`);
  assert.ok(withNack.frozenSeconds < noNack.frozenSeconds,
    `frozen ${withNack.frozenSeconds} s with NACK vs ${noNack.frozenSeconds} s without`);
  // Frames kept being decoded through the loss (5 a second at least), and the
  // picture stayed live: random loss is no congestion, so neither the
  // publisher's nor rkms's congestion control may starve the viewer.
  assert.ok(withNack.framesDecoded > LOSSY_SECONDS * 5, `${withNack.framesDecoded} frames decoded`);
  assert.ok(withNack.frozenSeconds < 2, `frozen ${withNack.frozenSeconds} s of ${LOSSY_SECONDS} with NACK`);
});

test('RtpEndpoint source (ffmpeg): NACKs through 5% loss toward the viewer answered as RTX from the history', async (t) => {
  const pipeline = await client.create('MediaPipeline');
  const rtp = await pipeline.create('RtpEndpoint');
  const viewer = await lossySide(pipeline, { nack: true, seed: 7 });
  await rtp.connect(viewer.endpoint);
  const { ff } = await ffmpegSendsTo(rtp, 'VP8');
  await viewer.peer.waitFor((s) => s.video?.framesDecoded > 20, 20000);
  const start = await rtpStats(viewer.peer.page);
  viewer.proxy.loss = LOSS;
  await sleep(LOSSY_SECONDS * 1000);
  viewer.proxy.loss = 0;
  const end = await rtpStats(viewer.peer.page);
  ff.child.kill('SIGTERM');
  await ff.exited;
  await pipeline.release();
  await viewer.peer.page.close();
  const figures = { rtx: answersRtx(viewer.answer), ...delta(start, end), dropped: viewer.proxy.dropped };
  t.diagnostic(`RtpEndpoint source: ${JSON.stringify(figures)}`);
  assert.ok(figures.dropped > 0);
  assert.ok(figures.rtx, 'rkms\'s answer pairs no RTX stream with the video');
  assert.ok(figures.viewerNacks > 0, 'the viewer sent no NACK');
  assert.ok(figures.retransmitted > 0, 'no NACK of the viewer was answered');
  assert.ok(figures.framesDecoded > LOSSY_SECONDS * 5, `${figures.framesDecoded} frames decoded`);
});
