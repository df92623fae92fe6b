// Transport-wide congestion control toward a subscriber: a Chromium
// publisher sends its camera through rkms to a Chromium subscriber whose
// session negotiates transport-cc and no goog-remb (taken out of its offer),
// so the only estimate of its downlink is the one rkms makes from its
// transport-cc feedback. The subscriber's link runs through a UDP proxy of
// the test; the same forward runs twice, with the link open and narrowed to
// a rate. Narrowed, what rkms asks of the publisher (its REMB, which the
// publisher's own congestion control takes as a ceiling) must fall well
// below the open run's level while the subscriber keeps decoding.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join as joinPath } from 'node:path';
import { createRequire } from 'node:module';
import { startRkms, sleep } from './helpers.mjs';
import { launchBrowser } from './browser.mjs';
import { connectEndpoint, join, recvOnlyPc, rtpStats } from './kurento-peers.mjs';
import { udpProxy, throughProxy, withoutLines, withoutCandidates } from './udp-proxy.mjs';

const require = createRequire(import.meta.url);
const kurento = require('kurento-client');

// The subscriber's narrowed downlink, and how long each run lasts once it decodes.
const LINK_KBPS = 300;
const RUN_SECONDS = 25;

let server;
let browser;
let client;
const proxies = [];
before(async () => {
  server = await startRkms({ env: { KMS_NETWORK_INTERFACES: 'lo' } });
  // A noisy camera, so that the publisher's encoder uses all it is allowed, far more than the
  // narrowed link takes (Chromium's own fake camera, or a test pattern, encodes to far less).
  const clip = joinPath(mkdtempSync(joinPath(tmpdir(), 'rkms-noise-')), 'camera.mjpeg');
  execFileSync('ffmpeg', ['-v', 'error', '-f', 'lavfi', '-i', 'testsrc2=size=640x480:rate=30',
    '-vf', 'noise=alls=40:allf=t', '-t', '5', '-q:v', '6', clip]);
  browser = await launchBrowser({ extraArgs: [`--use-file-for-fake-video-capture=${clip}`] });
  client = await kurento(server.url, { failAfter: 3 });
});
after(async () => {
  for (const p of proxies) p.close();
  client?.close();
  await browser?.close();
  await server?.stop();
});

const GOOG_REMB = '^a=rtcp-fb:\\S+ goog-remb$';

/** What the publisher's congestion control allows it to send (bps) and the video bytes it
 * sent, from its getStats. */
function publisherStats(page) {
  return page.evaluate(async () => {
    const out = { allowed: 0, bytesSent: 0 };
    (await window.peer.pc.getStats()).forEach((s) => {
      if (s.type === 'candidate-pair' && s.nominated && s.availableOutgoingBitrate) {
        out.allowed = s.availableOutgoingBitrate;
      }
      if (s.type === 'outbound-rtp' && s.kind === 'video') out.bytesSent = s.bytesSent;
    });
    return out;
  });
}

/** An rkms endpoint's selected pair, from its Kurento getStats. */
async function rkmsPair(endpoint) {
  const report = await endpoint.getStats('VIDEO');
  return Object.values(report).find((s) => s.type === 'candidatepair') || {};
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/**
 * A publisher page → rkms → a receive-only subscriber page behind a proxy
 * (its downlink narrowed to `linkKbps` once it decodes, unless 0). Returns
 * the figures of the run's second half.
 */
async function forward(linkKbps, seed) {
  const pipeline = await client.create('MediaPipeline');
  const publisher = await join(browser, pipeline);
  const subscriberPage = (await browser.newPeer()).page;
  const subscriber = await recvOnlyPc(subscriberPage, 'sub');
  const endpoint = await pipeline.create('WebRtcEndpoint');
  const proxy = await udpProxy(seed);
  proxies.push(proxy);
  let answer = '';
  await connectEndpoint(endpoint, subscriber, {
    ...throughProxy(proxy),
    offer: (sdp) => withoutLines(withoutCandidates(sdp), GOOG_REMB),
    answer: (sdp) => { answer = sdp; return withoutCandidates(sdp); },
    timeoutMs: 20000,
  });
  await publisher.endpoint.connect(endpoint);
  const decoding = async () => (await rtpStats(subscriberPage, 'sub')).video?.framesDecoded || 0;
  const deadline = Date.now() + 20000;
  while (await decoding() <= 20) {
    assert.ok(Date.now() < deadline, 'the subscriber decodes no video');
    await sleep(250);
  }
  proxy.downKbps = linkKbps;
  // The first half lets both ends settle; the second is sampled each second.
  await sleep((RUN_SECONDS / 2) * 1000);
  const framesBefore = await decoding();
  const sentBefore = (await publisherStats(publisher.peer.page)).bytesSent;
  const allowed = [];
  const bounds = [];
  const estimates = [];
  for (let i = 0; i < RUN_SECONDS / 2; i++) {
    await sleep(1000);
    allowed.push((await publisherStats(publisher.peer.page)).allowed);
    bounds.push((await rkmsPair(publisher.endpoint)).availableIncomingBitrate || 0);
    estimates.push((await rkmsPair(endpoint)).availableOutgoingBitrate || 0);
  }
  const sent = (await publisherStats(publisher.peer.page)).bytesSent - sentBefore;
  const figures = {
    linkKbps,
    publisherSentKbps: Math.round((sent * 8) / (RUN_SECONDS / 2) / 1000),
    publisherAllowedKbps: Math.round(median(allowed) / 1000),
    rkmsBoundKbps: Math.round(median(bounds) / 1000),
    subscriberEstimateKbps: Math.round(median(estimates) / 1000),
    framesDecoded: (await decoding()) - framesBefore,
    answerTransportCc: /a=rtcp-fb:\d+ transport-cc/.test(answer),
    answerRemb: /goog-remb/.test(answer),
    queueDropped: proxy.queueDropped,
  };
  await pipeline.release();
  await Promise.all([publisher.peer.page.close(), subscriberPage.close()]);
  return figures;
}

test('a subscriber negotiating only transport-cc bounds its publisher when its link narrows', async (t) => {
  const open = await forward(0, 1);
  const narrow = await forward(LINK_KBPS, 2);
  t.diagnostic(`open link:     ${JSON.stringify(open)}`);
  t.diagnostic(`narrowed link: ${JSON.stringify(narrow)}`);
  for (const run of [open, narrow]) {
    // rkms answered transport-cc and no REMB: its estimate can only come from transport-cc.
    assert.ok(run.answerTransportCc && !run.answerRemb, 'the subscriber negotiated transport-cc only');
    assert.ok(run.subscriberEstimateKbps > 0, 'rkms made no estimate of the subscriber\'s downlink');
  }
  // The narrowed link really held packets back, and rkms saw it.
  assert.ok(narrow.queueDropped > 0 || narrow.subscriberEstimateKbps < LINK_KBPS * 2,
    'the narrowed link was never the bottleneck');
  assert.ok(narrow.subscriberEstimateKbps < open.subscriberEstimateKbps / 2,
    `subscriber estimate ${narrow.subscriberEstimateKbps} kbps narrowed vs ${open.subscriberEstimateKbps} open`);
  // What the publisher is asked for (rkms's bound, and so its own allowance) falls well below
  // what it was allowed with the link open, to around the link's rate (the estimate climbs past
  // it until the queue shows, then drops below).
  assert.ok(narrow.rkmsBoundKbps > 0 && narrow.rkmsBoundKbps <= LINK_KBPS * 2,
    `rkms asked the publisher for ${narrow.rkmsBoundKbps} kbps through a ${LINK_KBPS} kbps link`);
  assert.ok(narrow.publisherAllowedKbps < open.publisherAllowedKbps / 3,
    `publisher allowed ${narrow.publisherAllowedKbps} kbps narrowed vs ${open.publisherAllowedKbps} open`);
  assert.ok(narrow.publisherAllowedKbps <= LINK_KBPS * 2,
    `publisher allowed ${narrow.publisherAllowedKbps} kbps through a ${LINK_KBPS} kbps link`);
  // The publisher really sends less.
  assert.ok(narrow.publisherSentKbps < open.publisherSentKbps / 3,
    `publisher sent ${narrow.publisherSentKbps} kbps narrowed vs ${open.publisherSentKbps} open`);
  // And the subscriber kept decoding through it (5 frames a second at least).
  assert.ok(narrow.framesDecoded > (RUN_SECONDS / 2) * 5, `${narrow.framesDecoded} frames decoded`);
});
