// A group call wired as Kurento's group-call tutorial wires it: each of four
// participants publishes on one WebRtcEndpoint and receives every other
// participant on a WebRtcEndpoint of its own, fed by that participant's
// publishing endpoint. Each participant is a Chromium page: its main peer
// connection sends camera and microphone, and one receive-only peer
// connection per other participant must decode video and receive audio.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { startRkms, sleep } from './helpers.mjs';
import { launchBrowser } from './browser.mjs';
import { connectEndpoint, mainPc, recvOnlyPc, rtpStats } from './kurento-peers.mjs';

const require = createRequire(import.meta.url);
const kurento = require('kurento-client');

const PARTICIPANTS = 4;

let server;
let browser;
let client;
before(async () => {
  server = await startRkms({ env: { KMS_NETWORK_INTERFACES: 'lo' } });
  browser = await launchBrowser();
  client = await kurento(server.url, { failAfter: 3 });
});
after(async () => {
  client?.close();
  await browser?.close();
  await server?.stop();
});

/** Polls `name`'s receiver in `page` until it decoded and heard something. */
async function receiving(page, name, timeoutMs = 20000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    last = await rtpStats(page, name);
    if (last.video?.framesDecoded > 20 && last.audio?.packetsReceived > 10) return last;
    await sleep(250);
  }
  throw new Error(`${name}: no media; last stats ${JSON.stringify(last)}`);
}

test('group call: four participants each decode the three others', async () => {
  const pipeline = await client.create('MediaPipeline');
  const people = [];
  for (let i = 0; i < PARTICIPANTS; i++) {
    const peer = await browser.newPeer();
    await peer.page.evaluate(() => {
      for (const t of window.peer.pc.getTransceivers()) t.direction = 'sendonly';
    });
    const outgoing = await pipeline.create('WebRtcEndpoint');
    await connectEndpoint(outgoing, mainPc(peer));
    people.push({ name: `p${i}`, page: peer.page, outgoing });
  }
  // Every participant receives every other one on an endpoint of its own.
  for (const viewer of people) {
    for (const sender of people) {
      if (sender === viewer) continue;
      const incoming = await pipeline.create('WebRtcEndpoint');
      await sender.outgoing.connect(incoming);
      await connectEndpoint(incoming, await recvOnlyPc(viewer.page, `from-${sender.name}`));
    }
  }
  const first = new Map();
  for (const viewer of people) {
    for (const sender of people) {
      if (sender === viewer) continue;
      const name = `from-${sender.name}`;
      first.set(`${viewer.name}/${name}`, await receiving(viewer.page, name));
    }
  }
  await sleep(1000);
  for (const viewer of people) {
    for (const sender of people) {
      if (sender === viewer) continue;
      const name = `from-${sender.name}`;
      const before = first.get(`${viewer.name}/${name}`);
      const later = await rtpStats(viewer.page, name);
      const label = `${viewer.name} receiving ${sender.name}`;
      assert.ok(later.video.framesDecoded > before.video.framesDecoded, `${label}: video stalled`);
      assert.ok(later.audio.packetsReceived > before.audio.packetsReceived, `${label}: audio stalled`);
    }
  }
  await pipeline.release();
});
