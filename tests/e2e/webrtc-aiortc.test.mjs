// aiortc (Python) as a second, independent WebRTC stack against rkms:
// Kurento's hello-world loopback with VP8 and with H264, the peer counting
// the frames it decodes from what rkms sends back. The peer is
// tests/e2e/aiortc_peer.py; scripts/test.sh installs aiortc from PyPI.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createInterface } from 'node:readline';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { startRkms } from './helpers.mjs';

const require = createRequire(import.meta.url);
const kurento = require('kurento-client');
const PEER = join(dirname(fileURLToPath(import.meta.url)), 'aiortc_peer.py');
const PYTHON = process.env.PYTHON || 'python3';

let server;
before(async () => {
  const check = spawnSync(PYTHON, ['-c', 'import aiortc']);
  if (check.status !== 0) {
    throw new Error(`aiortc is missing (scripts/test.sh installs it with pip): ${check.stderr}`);
  }
  server = await startRkms({ env: { KMS_NETWORK_INTERFACES: 'lo' } });
});
after(async () => {
  await server?.stop();
});

/** Starts the aiortc peer; returns { next(): the next JSON line, send(obj), proc }. */
function startPeer(codec) {
  const proc = spawn(PYTHON, [PEER, '--codec', codec, '--frames', '30', '--timeout', '30'],
    { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr += d; });
  const lines = createInterface({ input: proc.stdout })[Symbol.asyncIterator]();
  return {
    proc,
    async next() {
      const { value, done } = await lines.next();
      if (done) throw new Error(`aiortc peer exited: ${stderr}`);
      const message = JSON.parse(value);
      if (message.error) throw new Error(`aiortc peer: ${message.error}\n${stderr}`);
      return message;
    },
    send(obj) { proc.stdin.write(`${JSON.stringify(obj)}\n`); },
  };
}

/** rkms's answer with its candidates written in (aiortc does not trickle). */
function withCandidates(answer, candidates) {
  const lines = candidates.map((c) => `a=${c.candidate}`).concat('a=end-of-candidates');
  return answer.replace(/(m=[^\r\n]*\r\n(?:[^m][^\r\n]*\r\n)*)/g, (section) => section + lines.join('\r\n') + '\r\n');
}

for (const codec of ['VP8', 'H264']) {
  test(`aiortc hello-world loopback with ${codec}: frames decoded`, async () => {
    const client = await kurento(server.url, { failAfter: 3 });
    const pipeline = await client.create('MediaPipeline');
    const endpoint = await pipeline.create('WebRtcEndpoint');
    const candidates = [];
    const gathered = new Promise((resolve) => endpoint.on('IceGatheringDone', resolve));
    endpoint.on('IceCandidateFound', (e) => candidates.push(e.candidate));
    const peer = startPeer(codec);
    try {
      const { offer } = await peer.next();
      const answer = await endpoint.processOffer(offer);
      const videoCodecs = [...answer.split(/m=video/)[1].matchAll(/a=rtpmap:\d+ ([\w-]+)\//g)]
        .map((m) => m[1]).filter((name) => name !== 'rtx');
      assert.deepEqual([...new Set(videoCodecs)], [codec], answer);
      await endpoint.connect(endpoint);
      await endpoint.gatherCandidates();
      await gathered;
      peer.send({ answer: withCandidates(answer, candidates) });
      const result = await peer.next();
      assert.ok(result.frames >= 30, `aiortc decoded ${JSON.stringify(result)}`);
      assert.deepEqual([result.width, result.height], [320, 240]);
    } finally {
      peer.proc.kill();
      await pipeline.release();
      client.close();
    }
  });
}
