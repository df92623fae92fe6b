// CPU per recorded stream: N PlayerEndpoints play a 720p VP8/opus file (about 1.5 Mbps) in
// real time inside rkms; the server's CPU is measured first with the players alone, then with
// each player also feeding a RecorderEndpoint (WEBM), in the same run. The difference divided
// by N is what recording one stream costs (loop hand-off, depacketizing, muxing, file writes).
// No browser: the sources are rkms's own players, so 20 streams fit on a small machine.
// Usage: node scripts/bench-recorder.mjs [STREAMS] [SECONDS]
// Needs ffmpeg, tests/e2e/node_modules and a built rkms (RKMS_BIN, default target/release/rkms).
import { mkdtempSync, statSync, rmSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { startRkms, sleep } from '../tests/e2e/helpers.mjs';
import { cpuSeconds } from './proc-usage.mjs';

const require = createRequire(new URL('../tests/e2e/package.json', import.meta.url));
const kurento = require('kurento-client');
const STREAMS = Number(process.argv[2] || 20);
const SECONDS = Number(process.argv[3] || 10);

const dir = mkdtempSync(join(tmpdir(), 'rkms-bench-rec-'));
const input = join(dir, 'in-720p.webm');
const length = 2 * SECONDS + 15;
execFileSync('ffmpeg', ['-nostdin', '-v', 'error', '-f', 'lavfi', '-i', 'testsrc2=size=1280x720:rate=30',
  '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000', '-t', String(length),
  '-c:v', 'libvpx', '-b:v', '1500k', '-g', '60', '-deadline', 'realtime', '-cpu-used', '8',
  '-c:a', 'libopus', '-b:a', '64k', input]);

const server = await startRkms({ config: { rkms: { recording: { roots: [dir] } } } });
const pid = server.proc.pid;
const client = await kurento(server.url, { failAfter: 3 });
try {
  const pipelines = [];
  const players = [];
  for (let i = 0; i < STREAMS; i++) {
    const pipeline = await client.create('MediaPipeline');
    const player = await pipeline.create('PlayerEndpoint', { uri: `file://${input}` });
    pipelines.push(pipeline);
    players.push(player);
  }
  await Promise.all(players.map((p) => p.play()));
  await sleep(2000);
  const a0 = cpuSeconds(pid);
  await sleep(SECONDS * 1000);
  const alone = cpuSeconds(pid) - a0;

  const recorders = [];
  for (let i = 0; i < STREAMS; i++) {
    const recorder = await pipelines[i].create('RecorderEndpoint',
      { uri: `file://${join(dir, `out-${i}.webm`)}`, mediaProfile: 'WEBM' });
    const recording = new Promise((r) => recorder.on('Recording', r));
    await players[i].connect(recorder);
    await recorder.record();
    recorders.push({ recorder, recording });
  }
  await Promise.all(recorders.map((r) => r.recording));
  await sleep(2000);
  const b0 = cpuSeconds(pid);
  await sleep(SECONDS * 1000);
  const recording = cpuSeconds(pid) - b0;
  await Promise.all(recorders.map((r) => r.recorder.stopAndWait()));
  const bytes = recorders.reduce((sum, _, i) => sum + statSync(join(dir, `out-${i}.webm`)).size, 0);

  const pct = (s) => (100 * s / SECONDS).toFixed(2);
  const perStream = (recording - alone) / STREAMS;
  console.log(`${STREAMS} players of a 720p VP8/opus file: server CPU ${pct(alone)}% of one core`);
  console.log(`the same players, each recorded (WEBM): ${pct(recording)}% of one core`);
  console.log(`recording one stream: ${pct(perStream)}% of one core ` +
    `(${(recording / alone).toFixed(2)}x the players alone); ` +
    `${(bytes / STREAMS / 1024).toFixed(0)} KiB written per stream`);
  await Promise.all(pipelines.map((p) => p.release()));
} finally {
  client.close();
  await server.stop();
  rmSync(dir, { recursive: true, force: true });
}
