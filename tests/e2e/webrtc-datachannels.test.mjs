// Data channels through rkms with a real browser: a WebRtcEndpoint created
// with useDataChannels echoes a browser's messages in the loopback, opens
// and closes channels of its own (createDataChannel/closeDataChannel with
// DataChannelOpened/DataChannelClosed), and its DATA pads carry messages
// from one browser to another.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { startRkms, sleep } from './helpers.mjs';
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

/** A browser with a 'chat' data channel (and audio/video) negotiated with `endpoint`. */
async function connectPeer(endpoint) {
  const peer = await browser.newPeer();
  await peer.page.evaluate(() => {
    const dc = window.peer.pc.createDataChannel('chat');
    window.chat = dc;
    window.received = [];
    window.remoteChannels = [];
    dc.onmessage = (e) => window.received.push(e.data);
    window.peer.pc.ondatachannel = (e) => {
      const entry = { label: e.channel.label, id: e.channel.id, state: 'open' };
      window.remoteChannels.push(entry);
      e.channel.onclose = () => { entry.state = 'closed'; };
    };
  });
  endpoint.on('IceCandidateFound', (ev) => {
    peer.addCandidate({ candidate: ev.candidate.candidate, sdpMid: ev.candidate.sdpMid,
      sdpMLineIndex: ev.candidate.sdpMLineIndex }).catch(() => {});
  });
  const answer = await endpoint.processOffer(await peer.createOffer());
  assert.match(answer, /m=application/);
  await endpoint.gatherCandidates();
  await peer.acceptAnswer(answer);
  const IceCandidate = kurento.getComplexType('IceCandidate');
  for (let i = 0; i < 10; i++) {
    for (const c of await peer.takeCandidates()) await endpoint.addIceCandidate(IceCandidate(c));
    await sleep(100);
  }
  await until(peer, () => window.chat.readyState === 'open', 'the chat channel open');
  return peer;
}

async function until(peer, pred, what, timeoutMs = 15000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await peer.page.evaluate(pred)) return;
    await sleep(200);
  }
  throw new Error(`${what}: not reached`);
}

function eventsOf(endpoint, name) {
  const seen = [];
  endpoint.on(name, (e) => seen.push(e));
  return seen;
}

async function waitFor(pred, what, timeoutMs = 10000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (pred()) return;
    await sleep(100);
  }
  throw new Error(`${what}: not seen`);
}

test('loopback: the browser gets its messages back; rkms opens and closes its own channel', async () => {
  const client = await kurento(server.url, { failAfter: 3 });
  const pipeline = await client.create('MediaPipeline');
  const endpoint = await pipeline.create('WebRtcEndpoint', { useDataChannels: true });
  const opened = eventsOf(endpoint, 'DataChannelOpened');
  const closed = eventsOf(endpoint, 'DataChannelClosed');
  await endpoint.connect(endpoint);
  const peer = await connectPeer(endpoint);
  await waitFor(() => opened.length === 1, 'DataChannelOpened for the browser channel');
  const browserChannel = await peer.page.evaluate(() => window.chat.id);
  assert.equal(opened[0].channelId, browserChannel);

  await peer.page.evaluate(() => { window.chat.send('hello rkms'); window.chat.send('second'); });
  await until(peer, () => window.received.length >= 2, 'messages back');
  assert.deepEqual(await peer.page.evaluate(() => window.received), ['hello rkms', 'second']);

  await endpoint.createDataChannel('from-rkms', true, undefined, 3, 'proto');
  await until(peer, () => window.remoteChannels.some((c) => c.label === 'from-rkms'),
    "rkms's channel reaches the browser");
  await waitFor(() => opened.length === 2, "DataChannelOpened for rkms's channel");
  const ours = await peer.page.evaluate(() => window.remoteChannels[0].id);
  assert.equal(opened[1].channelId, ours);

  await endpoint.closeDataChannel(ours);
  await waitFor(() => closed.some((e) => e.channelId === ours), 'DataChannelClosed');
  await until(peer, () => window.remoteChannels[0].state === 'closed', 'the browser sees it close');
  const unknown = await new Promise((resolve) => endpoint.closeDataChannel(999, resolve));
  assert.match(String(unknown?.message), /channelId/);
  await pipeline.release();
  client.close();
});

test('DATA pads carry messages from one browser to another', async () => {
  const client = await kurento(server.url, { failAfter: 3 });
  const pipeline = await client.create('MediaPipeline');
  const a = await pipeline.create('WebRtcEndpoint', { useDataChannels: true });
  const b = await pipeline.create('WebRtcEndpoint', { useDataChannels: true });
  await a.connect(b, 'DATA');
  const peerA = await connectPeer(a);
  const peerB = await connectPeer(b);
  await peerA.page.evaluate(() => window.chat.send('from A'));
  await until(peerB, () => window.received.includes('from A'), 'A\'s message at B');
  // Only A feeds B: nothing goes the other way.
  await peerB.page.evaluate(() => window.chat.send('from B'));
  await sleep(1000);
  assert.deepEqual(await peerA.page.evaluate(() => window.received), []);
  await pipeline.release();
  client.close();
});
