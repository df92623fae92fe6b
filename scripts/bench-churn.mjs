// Memory over churn, Kurento's best-known complaint: the same one-to-many room (1 publisher,
// N subscribers of real WebRTC peers from `rkms loadtest`) is set up, run for a few seconds and
// released, ROUNDS times against one rkms. Prints rkms's RSS when idle at the start, while the
// room is live in each round, and idle again after each release, with the ratio of the last
// idle RSS to the second round's: a server that leaks grows by the same amount every round.
// Usage: node scripts/bench-churn.mjs [ROUNDS] [SUBSCRIBERS] [SECONDS] [GC_SECONDS]
// Needs a built rkms (RKMS_BIN, default target/release/rkms).
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startRkms, RKMS_BIN, sleep } from '../tests/e2e/helpers.mjs';
import { rssKiB } from './proc-usage.mjs';

const ROUNDS = Number(process.argv[2] || 10);
const SUBSCRIBERS = Number(process.argv[3] || 100);
const SECONDS = Number(process.argv[4] || 3);

const run = promisify(execFile);

// Closed sessions are kept for reconnection for the garbage collector's period (240 s by
// default) with what they keep of their answers cache: the short default here lets each round's
// sessions expire before the next round, so what stays is what release left behind. With
// GC_SECONDS 240 every round's closed session is still kept at the end: the growth a round then
// includes what a departed client costs for those 4 minutes.
const GC_SECONDS = Number(process.argv[5] || 2);
const server = await startRkms({
  config: { mediaServer: { resources: { garbageCollectorPeriod: GC_SECONDS } } },
  env: { KMS_NETWORK_INTERFACES: 'lo', RUST_LOG: 'error' },
});
const pid = server.proc.pid;
const json = join(mkdtempSync(join(tmpdir(), 'rkms-churn-')), 'round.json');
const idle = [rssKiB(pid)];
const live = [];
try {
  for (let round = 1; round <= ROUNDS; round++) {
    // The loadtest samples rkms's RSS over its steady window, while the room is live.
    await run(RKMS_BIN, ['loadtest', 'one2many', '--url', server.url,
      '--subscribers', String(SUBSCRIBERS), '--duration', String(SECONDS), '--warmup', '1',
      '--server-pid', String(pid), '--json', json],
      { env: { ...process.env, RUST_LOG: 'error' }, maxBuffer: 1 << 24 });
    const report = JSON.parse(readFileSync(json, 'utf8'));
    if (report.packets_received === 0) throw new Error(`round ${round}: no media arrived`);
    live.push(Math.round(report.server_rss_bytes / 1024));
    // Closed sessions expire (with the short period), released peers' last timers run.
    await sleep(Math.min(GC_SECONDS, 2) * 1500);
    idle.push(rssKiB(pid));
    console.log(`round ${round}: live ${live.at(-1)} KiB, idle after release ${idle.at(-1)} KiB`);
  }
} finally {
  await server.stop();
}
// Rooms land on the socket loops by pipeline id, and each loop thread's allocations come from
// its own malloc arena: the first rounds grow the arenas once, so the trend starts at round 2.
const from = Math.min(2, ROUNDS);
const perRound = (idle.at(-1) - idle[from]) / Math.max(1, ROUNDS - from);
console.log(`idle RSS: ${idle[0]} KiB at start, ${idle[from]} after round ${from}, ${idle.at(-1)} after round ${ROUNDS}`);
console.log(`last/round-${from} idle after release: ${(idle.at(-1) / idle[from]).toFixed(3)}; `
  + `growth ${perRound.toFixed(0)} KiB a round (${(perRound * 1024 / (SUBSCRIBERS + 1)).toFixed(0)} bytes a peer)`);
