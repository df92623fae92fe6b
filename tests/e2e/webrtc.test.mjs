// Kurento's hello-world against rkms with a real browser: headless
// Chromium sends its fake camera and microphone to a WebRtcEndpoint
// connected to itself and must decode its own stream back.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { startRkms, RawClient, sleep } from './helpers.mjs';
import { launchBrowser } from './browser.mjs';

const require = createRequire(import.meta.url);
const kurento = require('kurento-client');

let server;
let browser;
before(async () => {
  server = await startRkms({ env: { KMS_NETWORK_INTERFACES: 'lo' } });
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
  await server?.stop();
});

/** Sends the browser's candidates to the endpoint until it is connected. */
async function trickle(peer, endpoint, until) {
  const IceCandidate = kurento.getComplexType('IceCandidate');
  while (!until.done) {
    for (const c of await peer.takeCandidates()) {
      await endpoint.addIceCandidate(IceCandidate(c));
    }
    await sleep(100);
  }
}

/** Waits for decoded video that keeps growing, and audio packets. */
async function assertMediaFlows(peer, { width, height } = {}) {
  const first = await peer.waitFor((s) => s.video?.framesDecoded > 30 && s.audio?.packetsReceived > 25);
  await sleep(1000);
  const later = await peer.stats();
  assert.ok(later.video.framesDecoded > first.video.framesDecoded,
    `framesDecoded stalled: ${JSON.stringify([first, later])}`);
  assert.ok(later.audio.packetsReceived > first.audio.packetsReceived, 'audio stalled');
  if (width) {
    assert.equal(later.video.frameWidth, width);
    assert.equal(later.video.frameHeight, height);
  }
  return later;
}

async function helloWorld({ codec } = {}) {
  const client = await kurento(server.url, { failAfter: 3 });
  const pipeline = await client.create('MediaPipeline');
  const endpoint = await pipeline.create('WebRtcEndpoint');
  const peer = await browser.newPeer({ codec });
  endpoint.on('IceCandidateFound', (ev) => {
    peer.addCandidate({ candidate: ev.candidate.candidate, sdpMid: ev.candidate.sdpMid,
      sdpMLineIndex: ev.candidate.sdpMLineIndex }).catch(() => {});
  });
  const events = [];
  for (const name of ['MediaStateChanged', 'ConnectionStateChanged', 'MediaFlowInStateChanged',
    'NewCandidatePairSelected', 'IceCandidateFound']) {
    endpoint.on(name, (e) => events.push(e));
  }
  // hello-world sends candidates early: before processOffer.
  const offer = await peer.createOffer();
  const state = { done: false };
  const trickling = trickle(peer, endpoint, state);
  const answer = await endpoint.processOffer(offer);
  assert.match(answer, /^v=0/);
  await endpoint.gatherCandidates();
  await endpoint.connect(endpoint);
  await peer.acceptAnswer(answer);
  try {
    return { client, pipeline, endpoint, peer, events, answer };
  } finally {
    setTimeout(() => { state.done = true; }, 5000);
    trickling.catch(() => {});
  }
}

test('hello-world: the browser decodes its own camera through rkms', async () => {
  const { client, pipeline, peer, events, endpoint } = await helloWorld();
  const stats = await assertMediaFlows(peer, { width: 640, height: 480 });
  assert.match(stats.video.codec, /VP8|VP9|H264|AV1/i);
  assert.ok(events.some((e) => e.type === 'ConnectionStateChanged' || e.newState === 'CONNECTED'),
    `events ${JSON.stringify(events)}`);
  // Kurento's IceCandidatePair: both candidates as SDP attribute text, the one bundled stream.
  const pair = events.find((e) => e.type === 'NewCandidatePairSelected')?.candidatePair;
  const detail = JSON.stringify(pair);
  assert.equal(pair?.streamId, '1', detail);
  assert.equal(pair.componentId, 1, detail);
  assert.match(pair.localCandidate, /^candidate:\S+ 1 udp \d+ 127\.0\.0\.1 \d+ typ host/i, detail);
  // The browser may also check from its other interfaces' addresses (peer-reflexive here).
  assert.match(pair.remoteCandidate, /^candidate:\S+ 1 udp \d+ \S+ \d+ typ (host|prflx)/i, detail);
  // rkms's side of the pair: a candidate it announced, and one of the browser's own (Chrome
  // may keep several loopback candidates and send from another pair than rkms's selected one).
  const announced = events.filter((e) => e.type === 'IceCandidateFound').map((e) => e.candidate.candidate);
  assert.ok(announced.includes(pair.localCandidate), `${detail} announced: ${announced.join(' | ')}`);
  const browserPorts = await peer.page.evaluate(async () => {
    const ports = [];
    (await window.peer.pc.getStats()).forEach((s) => { if (s.type === 'local-candidate') ports.push(s.port); });
    return ports;
  });
  assert.ok(browserPorts.includes(Number(pair.remoteCandidate.split(' ')[5])),
    `${detail} browser's ports: ${browserPorts}`);
  assert.match(await endpoint.getLocalSessionDescriptor(), /^v=0/);
  assert.match(await endpoint.getRemoteSessionDescriptor(), /^v=0/);
  await pipeline.release();
  client.close();
});

test('a browser that offers H264 only gets H264 back', async () => {
  const { client, pipeline, peer, answer } = await helloWorld({ codec: 'H264' });
  assert.match(answer, /H264/);
  assert.doesNotMatch(answer, /VP8\/90000/);
  const stats = await assertMediaFlows(peer);
  assert.match(stats.video.codec, /H264/i);
  await pipeline.release();
  client.close();
});

for (const codec of ['VP9', 'AV1']) {
  test(`a browser that offers ${codec} only gets ${codec} back, forwarded untouched`, async () => {
    const { client, pipeline, peer, answer } = await helloWorld({ codec });
    assert.match(answer, new RegExp(`${codec}/90000`));
    assert.doesNotMatch(answer, /VP8\/90000|H264\/90000/);
    const stats = await assertMediaFlows(peer, { width: 640, height: 480 });
    assert.match(stats.video.codec, new RegExp(codec, 'i'));
    await pipeline.release();
    client.close();
  });
}

test('rkms offers, the browser answers, and media flows', async () => {
  const client = await kurento(server.url, { failAfter: 3 });
  const pipeline = await client.create('MediaPipeline');
  const endpoint = await pipeline.create('WebRtcEndpoint');
  const peer = await browser.newPeer();
  endpoint.on('IceCandidateFound', (ev) => {
    peer.addCandidate({ candidate: ev.candidate.candidate, sdpMid: ev.candidate.sdpMid,
      sdpMLineIndex: ev.candidate.sdpMLineIndex }).catch(() => {});
  });
  await endpoint.connect(endpoint);
  const offer = await endpoint.generateOffer();
  const answer = await peer.acceptOffer(offer);
  await endpoint.processAnswer(answer);
  await endpoint.gatherCandidates();
  const state = { done: false };
  const trickling = trickle(peer, endpoint, state);
  await assertMediaFlows(peer);
  state.done = true;
  await trickling;
  await pipeline.release();
  client.close();
});

test('bad SDP and candidates get Kurento error codes; the endpoint stays usable', async () => {
  const raw = await RawClient.open(server.url);
  const pipeline = await raw.call('create', { type: 'MediaPipeline' });
  const endpoint = await raw.call('create', { type: 'WebRtcEndpoint', constructorParams: { mediaPipeline: pipeline } });
  const invoke = (operation, operationParams) => raw.request('invoke', { object: endpoint, operation, operationParams });
  for (const garbage of ['garbage', 'v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n', '\u0000'.repeat(10)]) {
    const a = await invoke('processOffer', { offer: garbage });
    assert.ok([40201, 40205].includes(a.error?.code), JSON.stringify(a));
    assert.ok(a.error.message.length > 0);
  }
  const badCandidate = await invoke('addIceCandidate', {
    candidate: { __module__: 'kurento', __type__: 'IceCandidate', candidate: 'candidate:nonsense', sdpMid: '0', sdpMLineIndex: 0 },
  });
  assert.equal(badCandidate.error?.code, 40401, JSON.stringify(badCandidate));

  const peer = await browser.newPeer();
  const answer = await invoke('processOffer', { offer: await peer.createOffer() });
  assert.match(answer.result.value, /^v=0/);
  const twice = await invoke('processOffer', { offer: await peer.createOffer() });
  assert.equal(twice.error?.code, 40208);
  await raw.call('release', { object: pipeline });
  await raw.close();
});

test('a browser that vanishes is reported DISCONNECTED, and media stops flowing', async () => {
  const { client, pipeline, peer, events } = await helloWorld();
  await assertMediaFlows(peer);
  await peer.page.close();
  const deadline = Date.now() + 25000;
  const seen = () => ({
    disconnected: events.some((e) => e.type === 'ConnectionStateChanged' && e.newState === 'DISCONNECTED'),
    media: events.some((e) => e.type === 'MediaStateChanged' && e.newState === 'DISCONNECTED'),
    stopped: events.some((e) => e.type === 'MediaFlowInStateChanged' && e.state === 'NOT_FLOWING'),
  });
  while (Date.now() < deadline && !Object.values(seen()).every(Boolean)) await sleep(250);
  assert.deepEqual(seen(), { disconnected: true, media: true, stopped: true }, JSON.stringify(events));
  await pipeline.release();
  client.close();
});

test("getStats reports Kurento's RTC stats, and the counters grow", async () => {
  const { client, pipeline, peer, endpoint } = await helloWorld();
  await assertMediaFlows(peer);
  const byType = (report, type, kind) => Object.values(report)
    .filter((s) => s.type === type && (!kind || s.mediaTrackId === kind));
  const first = await endpoint.getStats();
  await sleep(1500);
  const later = await endpoint.getStats();
  for (const [type, typeName] of [['inboundrtp', 'RTCInboundRTPStreamStats'],
    ['outboundrtp', 'RTCOutboundRTPStreamStats'], ['candidatepair', 'RTCIceCandidatePairStats'],
    ['transport', 'RTCTransportStats'], ['endpoint', 'EndpointStats']]) {
    const entries = byType(later, type);
    assert.ok(entries.length > 0, `no ${type} in ${JSON.stringify(later)}`);
    assert.equal(entries[0].__type__, typeName);
    assert.ok(entries[0].timestampMillis > 0);
  }
  const [inFirst] = byType(first, 'inboundrtp', 'VIDEO');
  const [inLater] = byType(later, 'inboundrtp', 'VIDEO');
  assert.ok(inLater.packetsReceived > inFirst.packetsReceived,
    `packetsReceived grows: ${inFirst.packetsReceived} -> ${inLater.packetsReceived}`);
  assert.ok(inLater.bytesReceived > inFirst.bytesReceived);
  assert.match(later[inLater.codecId].codec, /VP8|VP9|H264|AV1/);
  const [outFirst] = byType(first, 'outboundrtp', 'VIDEO');
  const [outLater] = byType(later, 'outboundrtp', 'VIDEO');
  assert.ok(outLater.packetsSent > outFirst.packetsSent, 'packetsSent grows');
  // Loopback: what rkms sends back is what it received (within the packets in flight).
  assert.ok(outLater.packetsSent > inLater.packetsReceived * 0.8);
  const audio = await endpoint.getStats('AUDIO');
  assert.ok(byType(audio, 'inboundrtp').length > 0);
  assert.ok(byType(audio, 'inboundrtp').every((s) => s.mediaTrackId === 'AUDIO'));
  await pipeline.release();
  client.close();
});
