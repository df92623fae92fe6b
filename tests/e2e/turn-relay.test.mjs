// The embedded TURN relay with a real browser: two headless-Chromium peers,
// both with iceTransportPolicy 'relay' and `rkms turn` as their only ICE
// server, connect through it; the receiving side decodes video, and the
// relay's own counters show the media crossed it. Then TCP relay
// allocations (RFC 6062) with coturn's turnutils_uclient.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { startTurnServer, turnRestCredentials } from './helpers.mjs';
import { launchBrowser } from './browser.mjs';

const SECRET = 'e2e-turn-secret';

const startTurn = (options = {}) => startTurnServer({ secret: SECRET, ...options });
const restCredentials = (user) => turnRestCredentials(SECRET, user);

async function connectThroughRelay(browser, urls) {
  const iceServers = [{ urls, ...restCredentials('chromium') }];
  const a = await browser.newPeer({ iceServers, iceTransportPolicy: 'relay', audio: false });
  const b = await browser.newPeer({ iceServers, iceTransportPolicy: 'relay', audio: false });
  const offer = await a.createOffer();
  const answer = await b.acceptOffer(offer);
  await a.acceptAnswer(answer);
  // Trickle both ways until both sides are connected.
  const deadline = Date.now() + 20000;
  const relayTypes = new Set();
  for (;;) {
    for (const [from, to] of [[a, b], [b, a]]) {
      for (const c of await from.takeCandidates()) {
        relayTypes.add(/ typ (\w+)/.exec(c.candidate)?.[1]);
        await to.addCandidate(c);
      }
    }
    const [sa, sb] = [await a.stats(), await b.stats()];
    if (sa.connection === 'connected' && sb.connection === 'connected') break;
    if (Date.now() > deadline) throw new Error(`no connection: ${JSON.stringify({ sa, sb })}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.deepEqual([...relayTypes].filter(Boolean), ['relay'], 'only relay candidates are offered');
  return { a, b };
}

test('two relay-only Chromium peers exchange video through rkms turn (UDP)', async () => {
  const turn = await startTurn();
  const browser = await launchBrowser();
  let later;
  try {
    const { b } = await connectThroughRelay(browser, [`turn:${turn.udp}?transport=udp`]);
    const first = await b.waitFor((s) => s.video && s.video.framesDecoded > 10);
    later = await b.waitFor((s) => s.video.framesDecoded > first.video.framesDecoded + 30);
    assert.ok(later.video.frameWidth > 0, JSON.stringify(later));
  } finally {
    await browser.close();
  }
  const metrics = await turn.stop();
  const detail = JSON.stringify({ metrics, receiver: later.video });
  assert.ok(metrics.allocations_total >= 2, detail);
  // Every video packet the receiver got crossed the relay twice: into the
  // sender's allocation (to its peer) and out of the receiver's (to its client).
  assert.ok(metrics.packets_to_peer >= later.video.packetsReceived, detail);
  assert.ok(metrics.packets_to_client >= later.video.packetsReceived, detail);
  assert.equal(metrics.auth_failures, 0, detail);
});

test('relay-only Chromium peers also connect over TURN/TCP', async () => {
  const turn = await startTurn();
  const browser = await launchBrowser();
  let received;
  try {
    const { b } = await connectThroughRelay(browser, [`turn:${turn.tcp}?transport=tcp`]);
    received = (await b.waitFor((s) => s.video && s.video.framesDecoded > 30)).video.packetsReceived;
  } finally {
    await browser.close();
  }
  const metrics = await turn.stop();
  assert.ok(metrics.packets_to_client >= received, JSON.stringify({ metrics, received }));
});

/**
 * turnutils_uclient in TCP-relay mode (-T): pairs of TCP allocations, one of
 * each pair Connects to the other's relayed address, both bind data
 * connections and send each other `messages` messages of 100 bytes.
 */
function uclientTcpRelay(tcpAddr, { username, credential }, messages = 10) {
  const [host, port] = tcpAddr.split(':');
  const args = ['-T', '-X', '-n', String(messages), '-m', '2', '-u', username, '-w', credential,
    '-p', port, host];
  return new Promise((resolve) => {
    execFile('turnutils_uclient', args, { timeout: 60000 }, (err, stdout, stderr) => {
      const out = stdout + stderr;
      const totals = [...out.matchAll(/start_mclient: tot_send_msgs=(\d+), tot_recv_msgs=(\d+)/g)].pop();
      resolve({
        ok: !err,
        out,
        sent: totals ? Number(totals[1]) : 0,
        received: totals ? Number(totals[2]) : 0,
      });
    });
  });
}

test('TCP relay allocations carry every uclient message with REST credentials', async () => {
  const turn = await startTurn();
  const run = await uclientTcpRelay(turn.tcp, restCredentials('uclient'));
  const metrics = await turn.stop();
  const detail = `${JSON.stringify(metrics)}\n${run.out}`;
  assert.ok(run.ok, detail);
  assert.equal(run.sent, 20, detail);
  assert.equal(run.received, 20, detail);
  // Every message crossed the relay: out of one data connection, into the other.
  assert.ok(metrics.bytes_to_peer >= 20 * 100 && metrics.bytes_to_client >= 20 * 100, detail);
  assert.equal(metrics.auth_failures, 0, detail);
});

test('TCP relay to a loopback peer is refused by default, a wrong password fails', async () => {
  const turn = await startTurn({ allowLoopback: false });
  const refused = await uclientTcpRelay(turn.tcp, restCredentials('uclient'), 2);
  const wrong = await uclientTcpRelay(turn.tcp, { ...restCredentials('uclient'), credential: 'wrong' }, 2);
  const metrics = await turn.stop();
  assert.ok(!refused.ok && /403/.test(refused.out), refused.out);
  assert.ok(metrics.peers_denied > 0, JSON.stringify(metrics));
  assert.equal(metrics.bytes_to_peer + metrics.bytes_to_client, 0, JSON.stringify(metrics));
  assert.ok(!wrong.ok && wrong.received === 0, wrong.out);
  assert.ok(metrics.auth_failures > 0, JSON.stringify(metrics));
});
