// Starts tests/e2e/rtsp_camera.py (GStreamer's RTSP server, Debian's python3-gi) for the
// RTSP tests and bench.
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
// Debian's interpreter: python3-gi is installed for it, not for a pyenv or venv python3.
const PYTHON = process.env.RTSP_PYTHON || '/usr/bin/python3';

/** A loopback TCP port nothing listens on (bound to 0, then closed). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Starts a camera serving `mounts` streams at rtsp://127.0.0.1:PORT/cam0.. (`port` 0: any);
 * resolves once it listens with { url, port, kill(), exited }. */
export function startCamera({ port = 0, mounts = 1, args = [] } = {}) {
  const proc = spawn(PYTHON, [join(here, 'rtsp_camera.py'), String(port), String(mounts), ...args],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr += d; });
  const exited = new Promise((r) => proc.once('exit', r));
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`camera did not start: ${stderr}`)), 15000);
    proc.once('exit', (code) => reject(new Error(`camera exited with ${code}: ${stderr}`)));
    proc.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/ready (\d+)/);
      if (m) {
        clearTimeout(timer);
        const bound = Number(m[1]);
        resolve({
          url: `rtsp://127.0.0.1:${bound}`,
          port: bound,
          exited,
          kill: () => { if (proc.exitCode === null) proc.kill('SIGKILL'); },
        });
      }
    });
  });
}
