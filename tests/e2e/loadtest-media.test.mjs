// `rkms loadtest one2many` and `group` against rkms itself: real WebRTC peers set up over the
// Kurento protocol; every subscriber must receive media and the JSON report must be complete.
// Until rkms has a WebRtcEndpoint (`create` answers 40006) these tests are skipped.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startRkms, RawClient, RKMS_BIN } from './helpers.mjs';
import { runLoadtest, assertMediaReport } from './loadtest-report.mjs';

async function webRtcEndpointAvailable() {
  const server = await startRkms();
  try {
    const c = await RawClient.open(server.url);
    const pipeline = await c.call('create', { type: 'MediaPipeline' });
    const answer = await c.request('create', {
      type: 'WebRtcEndpoint', constructorParams: { mediaPipeline: pipeline } });
    await c.close();
    return answer.error?.code !== 40006;
  } finally {
    await server.stop();
  }
}

const skip = (await webRtcEndpointAvailable()) ? false : 'WebRtcEndpoint not in main yet';

// one2many reads the server from /proc (`--server-pid`, with its sockets' drop counters), group
// through the ServerManager.
for (const [scenario, args, subscribers, byPid] of [
  ['one2many', ['--publishers', '1', '--subscribers', '3'], 3, true],
  ['group', ['--participants', '3'], 6, false],
]) {
  test(`loadtest ${scenario} against rkms: media reaches every subscriber`, { skip }, async () => {
    // Loopback candidates only: the client peers live on 127.0.0.1.
    const server = await startRkms({ env: { KMS_NETWORK_INTERFACES: 'lo' } });
    try {
      const { report, svg } = await runLoadtest(RKMS_BIN, ['loadtest', scenario, ...args,
        '--url', server.url, '--duration', '2', '--warmup', '0.5', '--setup-timeout', '20',
        '--video-bitrate', '300000', ...(byPid ? ['--server-pid', String(server.proc.pid)] : [])]);
      assertMediaReport(report, { scenario, subscribers });
      // The server's UDP sockets are found (or, without its pid, not claimed).
      if (byPid) {
        assert.equal(typeof report.server_socket_drops, 'number');
        assert.ok(report.server_udp_sockets >= 1, JSON.stringify(report));
      } else {
        assert.equal(report.server_socket_drops, null);
      }
      assert.equal(report.target, 'kurento');
      assert.ok(svg.includes('<polyline'));
    } finally {
      await server.stop();
    }
  });
}
