// rkms's leg to a TURN server over TCP against the same leg over UDP, in one run, through coturn
// on loopback: the hello-world call (the browser's camera looped back through a WebRtcEndpoint)
// where rkms announces only its relay candidate (its endpoint's turnUrl ends in
// `?transport=udp` or `?transport=tcp`, alternating) and the browser is relay-only on the same
// coturn over UDP, so only rkms's leg changes. Per call: the time from creating the pipeline to
// 30 decoded frames, and rkms's CPU while the call runs for CALL_SECONDS. Each call has an rkms
// of its own, so every setup includes a first allocation from a fresh socket.
// Usage: node scripts/bench-turn-tcp.mjs [ROUNDS] [CALL_SECONDS]
// 2026-12-02, 2 shared vCPUs, Chromium's fake 640x480 camera, `3 8`: medians UDP 3663 ms and
// 1.4% of a core, TCP 3293 ms and 1.4%: TCP/UDP 0.90 for setup, 1.00 for CPU.
// Needs `scripts/test.sh` installs and a built rkms (RKMS_BIN, default target/release/rkms).

import { startRkms, startCoturn, turnRestCredentials } from '../tests/e2e/helpers.mjs';
import { launchBrowser } from '../tests/e2e/browser.mjs';
import { helloWorld, typeOf } from '../tests/e2e/ice-call.mjs';
import { transportResults, measureCall, printSummary } from './call-figures.mjs';

const ROUNDS = Number(process.argv[2] || 5);
const CALL_SECONDS = Number(process.argv[3] || 10);
const SECRET = 'bench-turn-tcp';

const browser = await launchBrowser();
const coturn = await startCoturn({ secret: SECRET });
const results = transportResults();
try {
  for (let round = 0; round < ROUNDS; round++) {
    for (const transport of round % 2 ? ['tcp', 'udp'] : ['udp', 'tcp']) {
      const { username, credential } = turnRestCredentials(SECRET, 'rkms', 3600);
      // rkms's media socket is on 127.0.0.2: the browser reaches it only through the allocation.
      const server = await startRkms({ env: { KMS_NETWORK_INTERFACES: '127.0.0.2' } });
      const start = performance.now();
      await helloWorld(browser, server, {
        properties: { turnUrl: `${username}:${credential}@${coturn.address}?transport=${transport}` },
        keep: (c) => typeOf(c) === 'relay',
        peerOptions: {
          iceServers: [{ urls: [`turn:${coturn.address}?transport=udp`], ...turnRestCredentials(SECRET, 'browser') }],
          iceTransportPolicy: 'relay',
        },
        inspect: measureCall(results[transport], server, start, CALL_SECONDS),
      }).finally(() => server.stop());
    }
  }
} finally {
  await coturn.stop();
  await browser.close();
}
printSummary(results);
