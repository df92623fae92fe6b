// Shared by the media load-test end-to-end tests: runs `rkms loadtest` and checks that its
// JSON report is complete and that every subscriber really received media.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

export const run = promisify(execFile);

/** Runs `cmd args... --json FILE --plot FILE.svg`; resolves with the parsed report and the SVG. */
export async function runLoadtest(cmd, args) {
  const dir = mkdtempSync(join(tmpdir(), 'rkms-lt-'));
  const json = join(dir, 'report.json');
  const svg = join(dir, 'plot.svg');
  await run(cmd, [...args, '--json', json, '--plot', svg], {
    env: { ...process.env, RUST_LOG: 'error' },
    timeout: 120_000,
    maxBuffer: 16 << 20,
  });
  return { report: JSON.parse(readFileSync(json, 'utf8')), svg: readFileSync(svg, 'utf8') };
}

/** Every field operators read is there, and media reached every subscriber. */
export function assertMediaReport(report, { scenario, subscribers }) {
  assert.equal(report.scenario, scenario);
  assert.equal(report.subscribers, subscribers);
  for (const key of ['duration_s', 'packets_sent', 'packets_received', 'loss_ratio',
    'server_cpu_s', 'server_rss_bytes', 'server_cpu_us_per_forwarded_packet', 'client_cpu_s']) {
    assert.equal(typeof report[key], 'number', `${key} in ${JSON.stringify(report)}`);
  }
  for (const q of ['p50', 'p95', 'p99']) assert.equal(typeof report.latency_ms[q], 'number');
  for (const q of ['p50', 'p99']) assert.equal(typeof report.setup_ms[q], 'number');
  assert.equal(report.sessions_failed, 0, JSON.stringify(report));
  assert.equal(report.subscribers_with_media, subscribers);
  assert.ok(report.packets_sent > 0);
  // Every subscriber received packets in the window, and a sample of them was decrypted.
  assert.ok(report.subscriber_packets_min > 0, JSON.stringify(report));
  assert.ok(report.packets_received >= report.subscriber_packets_min * subscribers);
  assert.ok(report.packets_verified > 0);
  assert.equal(report.srtp_errors, 0);
  assert.ok(report.latency_ms.p99 >= report.latency_ms.p50);
  assert.ok(report.loss_ratio >= 0 && report.loss_ratio <= 1);
  assert.ok(report.timeline.length >= 1);
  // The client's own sockets' drop counters: one UDP socket per peer at least.
  assert.equal(typeof report.client_socket_drops, 'number');
  assert.ok(report.client_udp_sockets >= 1);
}
