// Kurento's hello-world through rkms's embedded TURN relay, configured as an
// app would: only a TURN REST API secret, no peer policy. The browser may use
// relay candidates only (iceTransportPolicy 'relay'), with rkms's own relay
// as its only ICE server and credentials minted the way app servers mint
// them for coturn, and must still decode its own camera. rkms's media
// sockets are on loopback here, which the relay refuses by default: the
// relay must let clients reach exactly those sockets, and no other loopback
// peer.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { createRequire } from 'node:module';
import { startRkms, sleep, turnRestCredentials } from './helpers.mjs';
import { launchBrowser } from './browser.mjs';

const require = createRequire(import.meta.url);
const kurento = require('kurento-client');

const SECRET = 'app-server-shared-secret';

const restCredentials = (user) => turnRestCredentials(SECRET, user);

let server;
let browser;
before(async () => {
  server = await startRkms({
    env: { KMS_NETWORK_INTERFACES: 'lo' },
    config: {
      rkms: {
        turn: {
          listening_ips: ['127.0.0.1'], relay_ips: ['127.0.0.1'], realm: 'e2e',
          static_auth_secrets: [SECRET],
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
      iceServers: [{ urls: [url], ...restCredentials('hello-world') }],
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

/** A free UDP port on loopback. */
async function freeUdpPort() {
  const s = createSocket('udp4');
  await new Promise((r) => s.bind(0, '127.0.0.1', r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

test('the embedded relay still refuses any other loopback peer', async (t) => {
  for (const p of ['turnutils_peer', 'turnutils_uclient']) {
    assert.equal(spawnSync('sh', ['-c', `command -v ${p}`]).status, 0,
      `${p} is missing: install the Debian package coturn (scripts/test.sh does)`);
  }
  const peerPort = await freeUdpPort();
  const peer = spawn('turnutils_peer', ['-L', '127.0.0.1', '-p', String(peerPort)], { stdio: 'ignore' });
  t.after(() => peer.kill());
  await sleep(300);
  const [host, port] = server.turnUrls.find((u) => u.endsWith('transport=udp'))
    .replace(/^turn:/, '').replace(/\?.*$/, '').split(':');
  // -W: coturn's client mints REST credentials from the shared secret itself.
  const run = spawnSync('turnutils_uclient', ['-W', SECRET, '-u', 'probe', '-n', '5', '-m', '1',
    '-p', port, '-e', '127.0.0.1', '-r', String(peerPort), '-X', host],
  { encoding: 'utf8', timeout: 30000 });
  const output = `${run.stdout}${run.stderr}`;
  assert.match(output, /403/, `the relay answers 403 Forbidden:\n${output}`);
  assert.doesNotMatch(output, /tot_recv_msgs=[1-9]/, `nothing was echoed:\n${output}`);
});
