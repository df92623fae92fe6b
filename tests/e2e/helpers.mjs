// Shared helpers of the end-to-end tests: start the real rkms binary on a
// free loopback port, and talk raw JSON-RPC to it.
import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';

const here = dirname(fileURLToPath(import.meta.url));
export const RKMS_BIN = process.env.RKMS_BIN || join(here, '../../target/release/rkms');

/** Starts rkms; resolves once it prints the address it listens on. The
 * embedded TURN relay gets a free port unless the config says otherwise. */
export function startRkms({ config = {}, args = [], env = {}, bin = RKMS_BIN } = {}) {
  const full = { ...config, rkms: { ...config.rkms, turn: { listening_port: 0, ...config.rkms?.turn } } };
  const file = join(mkdtempSync(join(tmpdir(), 'rkms-conf-')), 'kurento.conf.json');
  writeFileSync(file, JSON.stringify(full));
  const proc = spawn(bin, ['--bind', '127.0.0.1', '--port', '0', '--config', file, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'warn', ...env },
  });
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr += d; });
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`rkms did not start: ${stderr}`)), 15000);
    proc.on('exit', (code) => reject(new Error(`rkms exited with ${code}: ${stderr}`)));
    proc.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/listening on (ws:\/\/\S+)/);
      if (m) {
        clearTimeout(timer);
        const url = m[1];
        const turn = out.match(/TURN relay on (.*)/);
        resolve({
          url,
          turnUrls: turn ? turn[1].trim().split(' ') : [],
          httpBase: url.replace(/^ws:/, 'http:').replace(/\/[^/]*$/, ''),
          proc,
          stderr: () => stderr,
          stop: () => new Promise((r) => {
            if (proc.exitCode !== null) return r(proc.exitCode);
            proc.removeAllListeners('exit');
            proc.on('exit', (c) => r(c));
            proc.kill('SIGTERM');
          }),
        });
      }
    });
  });
}

/** A raw JSON-RPC client: send requests, await answers, collect events. */
export class RawClient {
  static open(url) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url);
      ws.once('open', () => resolve(new RawClient(ws)));
      ws.once('error', reject);
    });
  }

  constructor(ws) {
    this.ws = ws;
    this.nextId = 0;
    this.pending = new Map();
    this.events = [];
    this.sessionId = undefined;
    ws.on('message', (data) => {
      const msg = JSON.parse(data.toString());
      if (msg.method === 'onEvent') {
        this.events.push(msg.params.value);
        return;
      }
      const waiter = this.pending.get(msg.id);
      if (waiter) {
        this.pending.delete(msg.id);
        waiter(msg);
      } else {
        this.unmatched = msg;
      }
    });
  }

  /** Sends a frame as is and resolves with the answer carrying `id`. */
  sendRaw(text, id) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no answer to ${text}`)), 10000);
      this.pending.set(id, (m) => { clearTimeout(timer); resolve(m); });
      this.ws.send(text);
    });
  }

  /** Sends a request; resolves with the whole answer frame. */
  async request(method, params = {}, { id } = {}) {
    const reqId = id ?? this.nextId++;
    const withSession = this.sessionId && params.sessionId === undefined
      ? { ...params, sessionId: this.sessionId } : params;
    const answer = await this.sendRaw(
      JSON.stringify({ jsonrpc: '2.0', id: reqId, method, params: withSession }), reqId);
    if (answer.result?.sessionId) this.sessionId = answer.result.sessionId;
    return answer;
  }

  /** Sends a request; resolves with `result.value` or throws the error. */
  async call(method, params = {}) {
    const answer = await this.request(method, params);
    if (answer.error) {
      const e = new Error(`${method}: ${answer.error.message}`);
      e.rpc = answer.error;
      throw e;
    }
    return answer.result.value;
  }

  waitForEvent(pred, timeoutMs = 5000) {
    const deadline = Date.now() + timeoutMs;
    return new Promise((resolve, reject) => {
      const tick = () => {
        const found = this.events.find(pred);
        if (found) return resolve(found);
        if (Date.now() > deadline) return reject(new Error('event did not arrive'));
        setTimeout(tick, 20);
      };
      tick();
    });
  }

  close() {
    return new Promise((resolve) => {
      if (this.ws.readyState === WebSocket.CLOSED) return resolve();
      this.ws.once('close', resolve);
      this.ws.close();
    });
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** TURN REST API credentials for `secret`, minted the way app servers do for coturn. */
export function turnRestCredentials(secret, user, ttlSeconds = 600) {
  const username = `${Math.floor(Date.now() / 1000) + ttlSeconds}:${user}`;
  return { username, credential: createHmac('sha1', secret).update(username).digest('base64') };
}

/** Starts `rkms turn` (STUN and TURN) on a free loopback port with REST credentials signed by
 * `secret` (loopback peers allowed unless `allowLoopback` is false); resolves with its UDP/TCP
 * addresses and `stop()`, which returns its metrics. */
export function startTurnServer({ secret, allowLoopback = true, extraArgs = [], bin = RKMS_BIN }) {
  const args = ['turn', '-n', '-L', '127.0.0.1', '-p', '0', '--relay-ip', '127.0.0.1',
    '--use-auth-secret', '--static-auth-secret', secret, '--realm', 'e2e', '--no-tls',
    ...(allowLoopback ? ['--allow-loopback-peers'] : []), ...extraArgs];
  const proc = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr += d; });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`rkms turn did not start: ${stderr}`)), 15000);
    proc.on('exit', (code) => reject(new Error(`rkms turn exited with ${code}: ${stderr}`)));
    let started = false;
    proc.stdout.on('data', (d) => {
      out += d;
      const m = !started && out.match(/rkms turn listening: udp=(\S+) tcp=(\S*)/);
      if (!m) return;
      started = true;
      clearTimeout(timer);
      proc.removeAllListeners('exit');
      resolve({
        udp: m[1],
        tcp: m[2],
        /** Stops the relay (SIGTERM) and returns the metrics it prints on the way out. */
        stop: () => new Promise((done, fail) => {
          proc.on('exit', () => {
            const mm = out.match(/rkms turn metrics: (\{.*\})/);
            if (mm) done(JSON.parse(mm[1]));
            else fail(new Error(`no metrics line; stdout: ${out}\nstderr: ${stderr}`));
          });
          proc.kill('SIGTERM');
        }),
      });
    });
  });
}

/** A free loopback TCP port (bound, then closed). */
async function freeTcpPort() {
  const { createServer } = await import('node:net');
  const s = createServer();
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

/** Starts coturn's `turnserver` on a free loopback port with REST credentials signed by
 * `secret`, relaying on 127.0.0.1 to loopback peers; with `tcpOnly` its clients can reach it
 * over TCP only (no UDP listener). Resolves with `address` (`127.0.0.1:PORT`) and `stop()`,
 * which resolves with its verbose log. */
export async function startCoturn({ secret, tcpOnly = false }) {
  const port = await freeTcpPort();
  const dir = mkdtempSync(join(tmpdir(), 'coturn-'));
  const args = ['-n', '--listening-ip=127.0.0.1', `--listening-port=${port}`,
    '--relay-ip=127.0.0.1', '--no-tls', '--no-dtls', '--no-cli', '--use-auth-secret',
    `--static-auth-secret=${secret}`, '--realm=e2e', '--allow-loopback-peers',
    `--pidfile=${join(dir, 'pid')}`, `--userdb=${join(dir, 'db')}`, '--log-file=stdout',
    '--simple-log', '-v', ...(tcpOnly ? ['--no-udp'] : [])];
  const proc = spawn('turnserver', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  proc.stdout.on('data', (d) => { log += d; });
  proc.stderr.on('data', (d) => { log += d; });
  const deadline = Date.now() + 10000;
  while (!/TCP listener opened on : 127\.0\.0\.1:\d+/.test(log)) {
    if (proc.exitCode !== null || Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`turnserver did not start: ${log}`);
    }
    await sleep(50);
  }
  return {
    address: `127.0.0.1:${port}`,
    stop: () => new Promise((done) => {
      if (proc.exitCode !== null) return done(log);
      proc.on('exit', () => done(log));
      proc.kill('SIGTERM');
    }),
  };
}
