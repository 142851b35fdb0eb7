// Shared by the end-to-end scripts: start and stop the real pushwire binary on a free port,
// and name each check as it passes.
import { spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { io } from 'socket.io-client';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const BIN = process.argv[2] || process.env.PUSHWIRE_BIN || path.join(ROOT, 'target/debug/pushwire');
export const WAIT = 15_000;               // longest any single condition may take

export const freePort = () => new Promise((resolve, reject) => {
  const s = net.createServer();
  s.once('error', reject);
  s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
});

// Starts the server on `port`; resolves once it logs its URL.
export function startServer(port, extra = []) {
  // A 2 s SSE retry: a page that lost the server waits long enough for the test to publish
  // "while it was away", and short enough to keep the run quick.
  const child = spawn(BIN, ['--listen', `127.0.0.1:${port}`, '--sse-retry', '2000', '--stats-interval', '0', ...extra],
                      { env: { ...process.env, RUST_LOG: 'info' }, stdio: ['ignore', 'ignore', 'pipe'] });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('server did not start')), WAIT);
    let log = '';
    child.stderr.on('data', (d) => {
      log += d;
      if (/listening on https?:\/\//.test(log)) { clearTimeout(timer); resolve(child); }
    });
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`server exited (${code}): ${log}`)); });
  });
}

export function stopServer(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null) return resolve(child.exitCode);
    child.once('exit', (code) => resolve(code));
    child.kill('SIGTERM');
  });
}

export const steps = [];
export async function step(name, fn) {
  const t0 = Date.now();
  await fn();
  steps.push(`ok   ${name} (${Date.now() - t0} ms)`);
  console.log(`ok   ${name}`);
}

// Runs `main` within `limit` ms; exits 0 when it resolves, 1 when it throws or runs over.
export function run(main, limit) {
  const timer = setTimeout(() => { console.error(`${path.basename(process.argv[1])}: run took longer than its limit`); process.exit(1); }, limit);
  main().then(() => { clearTimeout(timer); process.exit(0); },
              (e) => { console.error('FAIL', e); process.exit(1); });
}

// ---- socket.io-client helpers (sio.mjs, cluster.mjs) ----

// Resolves with the event's arguments, or fails after WAIT.
export function once(emitter, event, what = event) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), WAIT);
    emitter.once(event, (...args) => { clearTimeout(t); resolve(args); });
  });
}

export async function connected(url, opts = {}) {
  const s = io(url, { forceNew: true, reconnection: false, ...opts });
  const [err] = await Promise.race([once(s, 'connect').then(() => [null]), once(s, 'connect_error')]);
  if (err) throw err;
  return s;
}

// Collects `event` on socket `s`; `got` is the list of argument arrays.
export function collect(s, event) {
  const got = [];
  s.on(event, (...args) => got.push(args));
  return got;
}

export async function until(what, cond) {
  const t0 = Date.now();
  while (!(await cond())) {
    if (Date.now() - t0 > WAIT) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
