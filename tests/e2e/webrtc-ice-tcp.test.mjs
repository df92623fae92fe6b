// ICE-TCP (RFC 6544, RFC 4571 framing): rkms offers a passive TCP host candidate next to each UDP
// one unless iceTcp is off. The application server here forwards only TCP candidates between
// rkms and a headless Chromium, so the one possible pair is the browser's active TCP candidate to rkms's
// passive one: the browser must decode its own camera looped back over that connection. A
// connection that sends garbage is dropped without harming anyone, and a connection the browser
// closes is closed on rkms's side too (no CLOSE_WAIT left behind).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { startRkms, sleep } from './helpers.mjs';
import { launchBrowser } from './browser.mjs';
import { helloWorld, selectedPair, transportOf } from './ice-call.mjs';

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { await browser?.close(); });

const portOf = (candidate) => Number(candidate.split(' ')[5]);

const [ESTABLISHED, CLOSE_WAIT] = ['01', '08'];

/** The kernel states of this machine's TCP sockets whose local port is `port`, from
 * /proc/net/tcp. */
function tcpSocketsOn(port) {
  return readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)
    .map((line) => line.trim().split(/\s+/))
    .filter((f) => f.length > 3 && parseInt(f[1].split(':')[1], 16) === port)
    .map((f) => f[3]);
}

/** Opens a TCP connection to `port`, writes `bytes`, resolves once the server closes it. */
function sendGarbage(port, bytes) {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(bytes));
    socket.on('error', reject);
    socket.on('close', resolve);
    socket.resume();
  });
}

test('a browser given only the passive TCP candidate decodes its camera over ICE-TCP', async () => {
  const server = await startRkms({ env: { KMS_NETWORK_INTERFACES: 'lo' } });
  try {
    let browserSide;
    let leftOnPort;
    const result = await helloWorld(browser, server, {
      // Nor does rkms learn the browser's UDP candidates, which its own checks would reach.
      keep: (c) => transportOf(c) === 'tcp',
      keepRemote: (c) => transportOf(c) === 'tcp',
      inspect: async ({ peer, announced }) => {
        browserSide = await selectedPair(peer);
        const tcpPort = portOf(announced.find((c) => transportOf(c) === 'tcp'));
        // Garbage on other connections while the call runs: rkms drops them (their first
        // frame names no endpoint) and the call goes on.
        await sendGarbage(tcpPort, Buffer.from('GET / HTTP/1.1\r\nHost: rkms\r\n\r\n'));
        await sendGarbage(tcpPort, Buffer.from([0x00, 0x05, 0x01]));
        const before = (await peer.stats()).video.framesDecoded;
        await peer.waitFor((s) => s.video.framesDecoded > before + 15);
        // The browser hangs up while the endpoint lives: rkms closes its side of the
        // connection (a leaked one would stay ESTABLISHED or sit in CLOSE_WAIT).
        await peer.page.evaluate(() => window.peer.pc.close());
        const deadline = Date.now() + 10000;
        const open = () => tcpSocketsOn(tcpPort).filter((s) => s === ESTABLISHED || s === CLOSE_WAIT);
        leftOnPort = open();
        while (leftOnPort.length > 0 && Date.now() < deadline) {
          await sleep(100);
          leftOnPort = open();
        }
      },
    });
    const tcp = result.announced.filter((c) => transportOf(c) === 'tcp');
    assert.equal(tcp.length, 1, `announced: ${result.announced.join(' | ')}`);
    assert.match(tcp[0], / tcp \d+ 127\.0\.0\.1 \d+ typ host tcptype passive/);
    const tcpPort = portOf(tcp[0]);
    const udp = result.announced.find((c) => transportOf(c) === 'udp' && / typ host/.test(c));
    assert.notEqual(portOf(udp), tcpPort, 'the listener has a port of its own');
    const detail = JSON.stringify({ browserSide, pairs: result.pairs });
    assert.equal(browserSide.local.protocol, 'tcp', detail);
    assert.equal(browserSide.remote.protocol, 'tcp', detail);
    assert.equal(browserSide.remote.port, tcpPort, detail);
    // rkms's side of the pair: its passive candidate, and the browser's connection as the
    // peer-reflexive active candidate it is (its signalled one says port 9).
    assert.equal(result.pairs.at(-1)?.localCandidate, tcp[0], detail);
    assert.match(result.pairs.at(-1).remoteCandidate,
      / tcp \d+ 127\.0\.0\.1 \d+ typ prflx tcptype active$/, detail);
    assert.deepEqual(leftOnPort, [], 'no connection left open');
  } finally {
    await server.stop();
  }
});

test('with iceTcp off there is no TCP candidate', async () => {
  const server = await startRkms({ env: { KMS_NETWORK_INTERFACES: 'lo', KMS_ICE_TCP: '0' } });
  try {
    const { announced } = await helloWorld(browser, server);
    assert.ok(announced.length > 0);
    assert.deepEqual(announced.filter((c) => transportOf(c) !== 'udp'), [],
      `announced: ${announced.join(' | ')}`);
  } finally {
    await server.stop();
  }
});

// Kurento's per-endpoint iceTcp property on a server whose loops listen on TCP: set to 0 before
// negotiation, that endpoint announces no TCP candidate (nor does its SDP carry one) and its
// call runs over UDP, while a neighbour in the same run still offers its passive candidate.
test('an endpoint with iceTcp 0 offers no TCP candidate; its neighbour does', async () => {
  const server = await startRkms({ env: { KMS_NETWORK_INTERFACES: 'lo' } });
  try {
    let answer;
    const off = await helloWorld(browser, server, {
      properties: { iceTcp: false },
      inspect: async ({ endpoint }) => { answer = await endpoint.getLocalSessionDescriptor(); },
    });
    assert.deepEqual(off.announced.filter((c) => transportOf(c) === 'tcp'), [],
      `announced: ${off.announced.join(' | ')}`);
    assert.ok(off.announced.some((c) => transportOf(c) === 'udp'));
    assert.doesNotMatch(answer, /a=candidate:\S+ \d+ tcp /i);
    const on = await helloWorld(browser, server);
    assert.equal(on.announced.filter((c) => transportOf(c) === 'tcp').length, 1,
      `announced: ${on.announced.join(' | ')}`);
  } finally {
    await server.stop();
  }
});

// The browser's page goes away mid-call over ICE-TCP: its connection closes, and rkms reports
// the endpoint disconnected when it sees the close (not ~30 s later when ICE consent would
// expire on a silent pair).
test('a page that closes over ICE-TCP: the endpoint reports DISCONNECTED when the connection drops', async () => {
  const server = await startRkms({ env: { KMS_NETWORK_INTERFACES: 'lo' } });
  try {
    const events = [];
    await helloWorld(browser, server, {
      keep: (c) => transportOf(c) === 'tcp',
      keepRemote: (c) => transportOf(c) === 'tcp',
      inspect: async ({ peer, endpoint }) => {
        for (const name of ['ConnectionStateChanged', 'MediaStateChanged', 'IceComponentStateChanged']) {
          endpoint.on(name, (e) => events.push(e));
        }
        assert.equal((await selectedPair(peer)).local.protocol, 'tcp');
        await peer.page.close();
        const seen = () => ({
          connection: events.some((e) => e.type === 'ConnectionStateChanged' && e.newState === 'DISCONNECTED'),
          media: events.some((e) => e.type === 'MediaStateChanged' && e.newState === 'DISCONNECTED'),
          ice: events.some((e) => e.type === 'IceComponentStateChanged' && e.state === 'DISCONNECTED'),
        });
        // Well inside ICE consent's ~30 s: only the connection's close can have told rkms.
        const deadline = Date.now() + 15000;
        while (Date.now() < deadline && !Object.values(seen()).every(Boolean)) await sleep(100);
        assert.deepEqual(seen(), { connection: true, media: true, ice: true }, JSON.stringify(events));
      },
    });
  } finally {
    await server.stop();
  }
});
