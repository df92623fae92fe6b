// ICE-TCP against UDP in one run, with a real browser on loopback: the same hello-world call
// (the browser's camera looped back through a WebRtcEndpoint) where only UDP or only TCP
// candidates are exchanged, alternating transports. Per call: the time from creating the
// pipeline to 30 decoded frames, and rkms's CPU while the call runs for CALL_SECONDS.
// Usage: node scripts/bench-ice-tcp.mjs [ROUNDS] [CALL_SECONDS]
// 2026-12-02, 2 shared vCPUs, Chromium's fake 640x480 camera, `3 8`: medians UDP 3585 ms and
// 1.6% of a core, TCP 3420 ms and 1.7%: TCP/UDP 0.95 for setup, 1.06 for CPU.
// Needs `scripts/test.sh` installs and a built rkms (RKMS_BIN, default target/release/rkms).

import { startRkms } from '../tests/e2e/helpers.mjs';
import { launchBrowser } from '../tests/e2e/browser.mjs';
import { helloWorld, transportOf } from '../tests/e2e/ice-call.mjs';
import { transportResults, measureCall, printSummary } from './call-figures.mjs';

const ROUNDS = Number(process.argv[2] || 5);
const CALL_SECONDS = Number(process.argv[3] || 10);

const browser = await launchBrowser();
const server = await startRkms({ env: { KMS_NETWORK_INTERFACES: 'lo' } });
const results = transportResults();
try {
  for (let round = 0; round < ROUNDS; round++) {
    for (const transport of round % 2 ? ['tcp', 'udp'] : ['udp', 'tcp']) {
      const only = (c) => transportOf(c) === transport;
      const start = performance.now();
      await helloWorld(browser, server, {
        keep: only,
        keepRemote: only,
        inspect: measureCall(results[transport], server, start, CALL_SECONDS),
      });
    }
  }
} finally {
  await server.stop();
  await browser.close();
}
printSummary(results);
