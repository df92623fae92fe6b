// `rkms loadtest --target janus`: the same peers through Janus's VideoRoom, in a network
// namespace (scripts/janus-netns.sh). Needs root and Debian's janus, as CI has.
import { test } from 'node:test';
import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RKMS_BIN } from './helpers.mjs';
import { runLoadtest, assertMediaReport } from './loadtest-report.mjs';

const script = join(dirname(fileURLToPath(import.meta.url)), '../../scripts/janus-netns.sh');

function janusUsable() {
  if (process.getuid?.() !== 0) return 'needs root for a network namespace';
  try {
    execFileSync('sh', ['-c', 'command -v janus && command -v ip'], { stdio: 'ignore' });
    return false;
  } catch {
    return 'janus or ip is not installed';
  }
}

test('loadtest one2many and group through Janus: media reaches every subscriber',
  { skip: janusUsable() }, async () => {
    // One namespace and one Janus for both runs; the wrapper tears them down on exit.
    const wrapper = `source "${script}" && janus_netns_up && trap janus_netns_down EXIT && ` +
      'ip netns exec "$JANUS_NS" "$0" loadtest "$@" --target janus --janus-url "$JANUS_WS_URL" ' +
      '--local-ip "$JANUS_IP" --server-pid "$JANUS_PID"';
    const common = ['--duration', '2', '--warmup', '0.5', '--setup-timeout', '20',
      '--video-bitrate', '300000'];
    const one2many = await runLoadtest('bash', ['-c', wrapper, RKMS_BIN,
      'one2many', '--subscribers', '3', ...common]);
    assertMediaReport(one2many.report, { scenario: 'one2many', subscribers: 3 });
    const group = await runLoadtest('bash', ['-c', wrapper, RKMS_BIN,
      'group', '--participants', '3', ...common]);
    assertMediaReport(group.report, { scenario: 'group', subscribers: 6 });
  });
