// Figures of hello-world calls compared by transport in one run, shared by the benchmark scripts
// that alternate UDP and TCP (bench-ice-tcp.mjs, bench-turn-tcp.mjs).
import { sleep } from '../tests/e2e/helpers.mjs';
import { cpuSeconds } from './proc-usage.mjs';

const median = (xs) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Per transport: setup times, server CPU and frames decoded of each call. */
export function transportResults() {
  return { udp: { setupMs: [], cpuPct: [], frames: [] }, tcp: { setupMs: [], cpuPct: [], frames: [] } };
}

/** A helloWorld `inspect` for a call started at `start`: records its setup time, then rkms's
 * CPU and the frames decoded while it runs for `seconds`. */
export function measureCall(into, server, start, seconds) {
  return async ({ peer }) => {
    into.setupMs.push(performance.now() - start);
    const before = (await peer.stats()).video.framesDecoded;
    const cpu = cpuSeconds(server.proc.pid);
    await sleep(seconds * 1000);
    into.cpuPct.push((100 * (cpuSeconds(server.proc.pid) - cpu)) / seconds);
    into.frames.push((await peer.stats()).video.framesDecoded - before);
  };
}

/** Medians per transport and the TCP/UDP ratios, printed as JSON. */
export function printSummary(results) {
  const summary = {};
  for (const [t, r] of Object.entries(results)) {
    summary[t] = { setupMs: Math.round(median(r.setupMs)), cpuPct: +median(r.cpuPct).toFixed(1),
      framesDecoded: median(r.frames), calls: r.setupMs.length };
  }
  summary.ratio_tcp_over_udp = {
    setup: +(summary.tcp.setupMs / summary.udp.setupMs).toFixed(2),
    cpu: +(summary.tcp.cpuPct / summary.udp.cpuPct).toFixed(2),
  };
  console.log(JSON.stringify(summary, null, 2));
}
