// ICE-TCP against UDP in one run, with a real browser on loopback: the same hello-world call
// (the browser's camera looped back through a WebRtcEndpoint) where only UDP or only TCP
// candidates are exchanged, alternating transports. Per call: the time from creating the
// pipeline to 30 decoded frames, and rkms's CPU while the call runs for CALL_SECONDS.
// Usage: node scripts/bench-ice-tcp.mjs [ROUNDS] [CALL_SECONDS]
// 2026-12-02, 2 shared vCPUs, Chromium's fake 640x480 camera, `3 8`: medians UDP 3585 ms and
// 1.6% of a core, TCP 3420 ms and 1.7%: TCP/UDP 0.95 for setup, 1.06 for CPU.
// Needs `scripts/test.sh` installs and a built rkms (RKMS_BIN, default target/release/rkms).

import { startRkms, sleep } from '../tests/e2e/helpers.mjs';
import { launchBrowser } from '../tests/e2e/browser.mjs';
import { helloWorld, transportOf } from '../tests/e2e/ice-call.mjs';
import { cpuSeconds } from './proc-cpu.mjs';

const ROUNDS = Number(process.argv[2] || 5);
const CALL_SECONDS = Number(process.argv[3] || 10);

const median = (xs) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const browser = await launchBrowser();
const server = await startRkms({ env: { KMS_NETWORK_INTERFACES: 'lo' } });
const results = { udp: { setupMs: [], cpuPct: [], frames: [] }, tcp: { setupMs: [], cpuPct: [], frames: [] } };
try {
  for (let round = 0; round < ROUNDS; round++) {
    for (const transport of round % 2 ? ['tcp', 'udp'] : ['udp', 'tcp']) {
      const only = (c) => transportOf(c) === transport;
      const start = performance.now();
      await helloWorld(browser, server, {
        keep: only,
        keepRemote: only,
        inspect: async ({ peer }) => {
          results[transport].setupMs.push(performance.now() - start);
          const before = (await peer.stats()).video.framesDecoded;
          const cpu = cpuSeconds(server.proc.pid);
          await sleep(CALL_SECONDS * 1000);
          results[transport].cpuPct.push((100 * (cpuSeconds(server.proc.pid) - cpu)) / CALL_SECONDS);
          results[transport].frames.push((await peer.stats()).video.framesDecoded - before);
        },
      });
    }
  }
} finally {
  await server.stop();
  await browser.close();
}
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
