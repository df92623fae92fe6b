// `rkms loadtest rpc` measures a live server and writes a complete report.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startRkms, RKMS_BIN } from './helpers.mjs';

const run = promisify(execFile);

test('loadtest rpc reports rates, latencies and memory per element', async () => {
  const server = await startRkms();
  try {
    const out = join(mkdtempSync(join(tmpdir(), 'rkms-lt-')), 'rpc.json');
    await run(RKMS_BIN, ['loadtest', 'rpc', '--url', server.url, '--clients', '1,3',
      '--seconds', '0.3', '--elements', '500', '--json', out]);
    const report = JSON.parse(readFileSync(out, 'utf8'));
    assert.equal(report.scenario, 'rpc');
    assert.equal(report.measurements.length, 6);
    for (const m of report.measurements) {
      assert.ok(m.requests_per_second > 0, JSON.stringify(m));
      assert.ok(m.latency_ms.p99 >= m.latency_ms.p50, JSON.stringify(m));
    }
    assert.equal(report.memory.elements, 500);
    assert.ok(report.memory.rss_with_elements_kib >= report.memory.rss_before_kib);
  } finally {
    await server.stop();
  }
});
