// Kurento's hello-world through rkms's embedded TURN relay: the browser may
// use relay candidates only (iceTransportPolicy 'relay'), with rkms's own
// relay as its only ICE server, and must still decode its own camera.
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
  server = await startRkms({
    env: { KMS_NETWORK_INTERFACES: 'lo' },
    config: {
      rkms: {
        turn: {
          listening_ips: ['127.0.0.1'], relay_ips: ['127.0.0.1'], realm: 'e2e',
          users: ['e2e:relay-secret'],
          // rkms's media sockets are on loopback in this test.
          allow_loopback_peers: true,
        },
      },
    },
  });
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
  await server?.stop();
});

for (const transport of ['udp', 'tcp']) {
  test(`hello-world with relay-only ICE through the embedded TURN relay (${transport})`, async () => {
    const url = server.turnUrls.find((u) => u.endsWith(`transport=${transport}`));
    assert.ok(url, `the relay announces a ${transport} URL: ${server.turnUrls}`);
    const client = await kurento(server.url, { failAfter: 3 });
    const pipeline = await client.create('MediaPipeline');
    const endpoint = await pipeline.create('WebRtcEndpoint');
    const peer = await browser.newPeer({
      iceServers: [{ urls: [url], username: 'e2e', credential: 'relay-secret' }],
      iceTransportPolicy: 'relay',
    });
    endpoint.on('IceCandidateFound', (ev) => {
      peer.addCandidate({ candidate: ev.candidate.candidate, sdpMid: ev.candidate.sdpMid,
        sdpMLineIndex: ev.candidate.sdpMLineIndex }).catch(() => {});
    });
    const answer = await endpoint.processOffer(await peer.createOffer());
    await endpoint.gatherCandidates();
    await endpoint.connect(endpoint);
    await peer.acceptAnswer(answer);
    const IceCandidate = kurento.getComplexType('IceCandidate');
    const types = new Set();
    const deadline = Date.now() + 10000;
    while (Date.now() < deadline && (await peer.stats()).connection !== 'connected') {
      for (const c of await peer.takeCandidates()) {
        types.add(/ typ (\w+)/.exec(c.candidate)?.[1]);
        await endpoint.addIceCandidate(IceCandidate(c));
      }
      await sleep(100);
    }
    assert.deepEqual([...types], ['relay'], 'the browser offered relay candidates only');
    const first = await peer.waitFor((s) => s.video?.framesDecoded > 30 && s.audio?.packetsReceived > 20);
    await sleep(700);
    const later = await peer.stats();
    assert.ok(later.video.framesDecoded > first.video.framesDecoded, 'video keeps flowing');
    await pipeline.release();
    client.close();
  });
}
