// rkms's own server candidates, configured as Kurento's are (KMS_STUN_IP/PORT, KMS_TURN_URL, or
// an endpoint's own stunServerAddress/stunServerPort/turnUrl properties), with `rkms turn` on
// loopback as the STUN and TURN server: a WebRtcEndpoint announces a srflx candidate, and a
// relay candidate that a headless Chromium reaches when nothing else works (media crosses the
// server-side allocation); with no turnURL the embedded relay gives it. A dead server delays
// gathering a little but never stops it: IceGatheringDone comes and media flows over host
// candidates.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { startRkms, startTurnServer, startCoturn, turnRestCredentials } from './helpers.mjs';
import { launchBrowser } from './browser.mjs';
import { helloWorld as call, typeOf } from './ice-call.mjs';

const SECRET = 'ice-servers-e2e';

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { await browser?.close(); });
const helloWorld = (server, options) => call(browser, server, options);

/** A loopback UDP port nobody answers on (bound, then closed). */
async function deadUdpPort() {
  const s = createSocket('udp4');
  await new Promise((r) => s.bind(0, '127.0.0.1', r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

test('KMS_STUN_IP/PORT: the endpoint announces a srflx candidate and hello-world plays', async () => {
  const turn = await startTurnServer({ secret: SECRET });
  const [host, port] = turn.udp.split(':');
  const server = await startRkms({
    env: { KMS_NETWORK_INTERFACES: 'lo', KMS_STUN_IP: host, KMS_STUN_PORT: port },
  });
  try {
    const { announced, gatheringDone } = await helloWorld(server);
    const types = announced.map(typeOf);
    assert.ok(types.includes('srflx'), `announced: ${announced.join(' | ')}`);
    assert.equal(gatheringDone, announced.length, 'every candidate comes before IceGatheringDone');
    const srflx = announced.find((c) => typeOf(c) === 'srflx');
    assert.match(srflx, / 127\.0\.0\.1 \d+ typ srflx raddr 127\.0\.0\.1 rport \d+/);
  } finally {
    await server.stop();
    await turn.stop();
  }
});

/** Stops `turn` and checks that the call in `result` went through it: allocations made with
 * good credentials, and every packet the browser decoded relayed through rkms's allocation to
 * its peer. Returns the metrics and a detail string for further checks. */
async function relayedThrough(turn, result) {
  const metrics = await turn.stop();
  const detail = JSON.stringify({ metrics, video: result?.video });
  assert.equal(metrics.auth_failures, 0, detail);
  assert.ok(metrics.allocations_total >= 2, detail);
  assert.ok(metrics.packets_to_peer >= result.video.packetsReceived, detail);
  return { metrics, detail };
}

// rkms's media socket is on 127.0.0.2 and the browser is relay-only with its own allocation on
// the same server, which only ever permits 127.0.0.1 (rkms's relay candidate): the one path
// that works is the browser's allocation to rkms's allocation to rkms.
async function relayOnly(server, browserTurnUrl, properties = {}) {
  const result = await helloWorld(server, {
    properties,
    keep: (c) => typeOf(c) === 'relay',
    peerOptions: {
      iceServers: [{ urls: [browserTurnUrl], ...turnRestCredentials(SECRET, 'browser') }],
      iceTransportPolicy: 'relay',
    },
  });
  const relay = result.announced.filter((c) => typeOf(c) === 'relay');
  assert.ok(relay.length > 0, `announced: ${result.announced.join(' | ')}`);
  for (const c of relay) assert.match(c, / 127\.0\.0\.1 \d+ typ relay raddr 127\.0\.0\.2 rport \d+/);
  assert.equal(result.gatheringDone, result.announced.length);
  return result;
}

test('KMS_TURN_URL: a browser given only the relay candidate decodes through the allocation', async () => {
  const turn = await startTurnServer({ secret: SECRET });
  const { username, credential } = turnRestCredentials(SECRET, 'rkms', 3600);
  const server = await startRkms({
    env: {
      KMS_NETWORK_INTERFACES: '127.0.0.2',
      KMS_TURN_URL: `${username}:${credential}@${turn.udp}?transport=udp`,
    },
  });
  let result;
  try {
    result = await relayOnly(server, `turn:${turn.udp}?transport=udp`);
  } catch (err) {
    await turn.stop(); // relayedThrough stops it when the call went through
    throw err;
  } finally {
    await server.stop();
  }
  const { metrics, detail } = await relayedThrough(turn, result);
  // It also crossed the browser's allocation, to its client.
  assert.ok(metrics.packets_to_client >= result.video.packetsReceived, detail);
});

// The same through the endpoint's own turnUrl property, on a server whose configuration names
// no TURN server (the embedded relay would be its default): the allocation is on the server
// the endpoint named.
test('an endpoint\'s turnUrl property: its relay candidate is on that server', async () => {
  const turn = await startTurnServer({ secret: SECRET });
  const { username, credential } = turnRestCredentials(SECRET, 'rkms', 3600);
  const server = await startRkms({ env: { KMS_NETWORK_INTERFACES: '127.0.0.2' } });
  let result;
  try {
    result = await relayOnly(server, `turn:${turn.udp}?transport=udp`,
      { turnUrl: `${username}:${credential}@${turn.udp}` });
  } catch (err) {
    await turn.stop(); // relayedThrough stops it when the call went through
    throw err;
  } finally {
    await server.stop();
  }
  await relayedThrough(turn, result);
});

// `?transport=tcp`: coturn has no UDP listener at all, so rkms's allocation can only be made on
// its TCP connection to coturn; its relay candidate is still a UDP one. The browser (relay-only
// too, over TCP as well) must decode its own camera through rkms's allocation.
async function relayedOverTcp(configure) {
  const coturn = await startCoturn({ secret: SECRET, tcpOnly: true });
  const { username, credential } = turnRestCredentials(SECRET, 'rkms', 3600);
  const turnUrl = `${username}:${credential}@${coturn.address}?transport=tcp`;
  const { env, properties } = configure(turnUrl);
  let server;
  let result;
  try {
    server = await startRkms({ env: { KMS_NETWORK_INTERFACES: '127.0.0.2', ...env } });
    result = await relayOnly(server, `turn:${coturn.address}?transport=tcp`, properties);
  } finally {
    await server?.stop();
    const log = await coturn.stop();
    if (result) {
      // coturn names each allocation's user and the client's transport: rkms's is TCP.
      const rkms = log.split('\n').filter((l) => l.includes(`<${username}>`));
      const detail = rkms.join('\n') || log.slice(-4000);
      assert.ok(rkms.some((l) => /ALLOCATE processed, success/.test(l)), detail);
      assert.ok(rkms.some((l) => /CHANNEL_BIND processed, success|CREATE_PERMISSION processed, success/.test(l)),
        detail);
      assert.ok(rkms.some((l) => /closed \(2nd stage\).*reason: TCP/.test(l)), detail);
      // Every video packet the browser decoded left rkms's allocation toward its peer (each
      // socket loop has an allocation; the call used one).
      const toPeer = rkms.map((l) => Number(/peer usage: .* sp=(\d+)/.exec(l)?.[1] ?? 0));
      assert.ok(Math.max(...toPeer) >= result.video.packetsReceived, detail);
    }
  }
  return result;
}

test('an endpoint\'s turnUrl ?transport=tcp: allocated on a TCP connection, the browser decodes through it',
  async () => {
    await relayedOverTcp((turnUrl) => ({ env: {}, properties: { turnUrl } }));
  });

test('KMS_TURN_URL ?transport=tcp: the default relay candidate comes over TCP too', async () => {
  await relayedOverTcp((turnUrl) => ({ env: { KMS_TURN_URL: turnUrl }, properties: {} }));
});

// Endpoints naming the same TURN server one after another on one server: each one's
// allocation is given back when it is released, so the next one from the same socket is not
// refused (a TURN server keeps one allocation per client address). Three calls in a row: with
// pipelines spread over the socket loops, two of them share a loop and its socket.
test('an endpoint\'s turnUrl, one call after another: each gets its relay candidate', async () => {
  const turn = await startTurnServer({ secret: SECRET });
  const { username, credential } = turnRestCredentials(SECRET, 'rkms', 3600);
  const server = await startRkms({ env: { KMS_NETWORK_INTERFACES: '127.0.0.2' } });
  try {
    for (let call = 0; call < 3; call++) {
      await relayOnly(server, `turn:${turn.udp}?transport=udp`,
        { turnUrl: `${username}:${credential}@${turn.udp}` });
    }
  } finally {
    await server.stop();
    await turn.stop();
  }
});

test('an endpoint\'s stunServerAddress/Port: it gets a srflx candidate, its neighbour does not', async () => {
  const turn = await startTurnServer({ secret: SECRET });
  const [host, port] = turn.udp.split(':');
  const server = await startRkms({ env: { KMS_NETWORK_INTERFACES: 'lo' } });
  try {
    const own = await helloWorld(server, {
      properties: { stunServerAddress: host, stunServerPort: Number(port) },
    });
    const srflx = own.announced.filter((c) => typeOf(c) === 'srflx');
    assert.equal(srflx.length, 1, `announced: ${own.announced.join(' | ')}`);
    assert.match(srflx[0], / 127\.0\.0\.1 \d+ typ srflx raddr 127\.0\.0\.1 rport \d+/);
    assert.equal(own.gatheringDone, own.announced.length);
    const neighbour = await helloWorld(server);
    assert.ok(!neighbour.announced.some((c) => typeOf(c) === 'srflx'),
      `announced: ${neighbour.announced.join(' | ')}`);
  } finally {
    await server.stop();
    await turn.stop();
  }
});

test('with no turnURL, endpoints get a relay candidate from the embedded relay', async () => {
  const server = await startRkms({
    env: { KMS_NETWORK_INTERFACES: '127.0.0.2' },
    config: {
      rkms: {
        turn: {
          listening_ips: ['127.0.0.1'], relay_ips: ['127.0.0.1'], realm: 'e2e',
          static_auth_secrets: [SECRET], allow_loopback_peers: true,
        },
      },
    },
  });
  try {
    await relayOnly(server, server.turnUrls.find((u) => u.endsWith('transport=udp')));
  } finally {
    await server.stop();
  }
});

test('dead STUN and TURN servers: gathering completes and media flows over host candidates', async () => {
  const [stunPort, turnPort] = [await deadUdpPort(), await deadUdpPort()];
  const server = await startRkms({
    env: {
      KMS_NETWORK_INTERFACES: 'lo', KMS_STUN_IP: '127.0.0.1', KMS_STUN_PORT: String(stunPort),
      KMS_TURN_URL: `user:pass@127.0.0.1:${turnPort}`,
    },
  });
  try {
    const { announced, gatheringDone } = await helloWorld(server);
    assert.deepEqual([...new Set(announced.map(typeOf))], ['host']);
    assert.equal(gatheringDone, announced.length, 'IceGatheringDone arrived');
  } finally {
    await server.stop();
  }
});
