// permessage-deflate against the `ws` npm package (an independent client that compresses
// every message and fragment): the echo route gives back every message exactly at every size
// and fragmentation, with and without context takeover; subscribers get published messages
// exactly; a socket.io client (which offers permessage-deflate) gets large events.
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { freePort, startServer, stopServer, step, run, WAIT } from './lib.mjs';
import { io } from 'socket.io-client';

const SIZES = [0, 1, 125, 126, 255, 256, 257, 1000, 65535, 65536, 100000, 1 << 20];

// A message of `n` bytes: compressible JSON-ish text or incompressible bytes.
function payload(n, binary) {
  if (binary) {
    const b = Buffer.alloc(n);
    let x = 2463534242;
    for (let i = 0; i < n; i++) { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; b[i] = x & 0xff; }
    return b;
  }
  // Whole pieces only (a cut character would be invalid UTF-8), padded to exactly n bytes;
  // lengths counted as the pieces go (re-measuring the growing string is quadratic).
  const parts = [];
  let len = 0;
  for (let i = 0; ; i++) {
    const piece = Buffer.from(`{"seq":${i},"v":"ünï ${i % 97}"},`);
    if (len + piece.length > n) break;
    parts.push(piece);
    len += piece.length;
  }
  parts.push(Buffer.alloc(n - len, 'x'));
  return Buffer.concat(parts);
}

function open(url, perMessageDeflate) {
  const ws = new WebSocket(url, { perMessageDeflate, maxPayload: 64 << 20 });
  const inbox = [];
  const waiters = [];
  ws.on('close', (code, reason) => { if (code !== 1000 && code !== 1005) console.error(`closed ${code} ${reason}`); });
  ws.on('message', (data, isBinary) => {
    inbox.push({ data: Buffer.from(data), isBinary });
    while (waiters.length && inbox.length) waiters.shift()(inbox.shift());
  });
  const next = () => new Promise((resolve, reject) => {
    if (inbox.length) return resolve(inbox.shift());
    const t = setTimeout(() => reject(new Error('no message')), WAIT);
    waiters.push((m) => { clearTimeout(t); resolve(m); });
  });
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve({ ws, next }));
    ws.once('error', reject);
  });
}

// Sends `data` in `pieces` fragments, each compressed.
function sendFragmented(ws, data, pieces, binary) {
  const step = Math.max(1, Math.ceil(data.length / pieces));
  if (data.length === 0) return ws.send(data, { binary, compress: true, fin: true });
  for (let at = 0; at < data.length; at += step) {
    ws.send(data.subarray(at, at + step), { binary, compress: true, fin: at + step >= data.length });
  }
}

async function main() {
  const port = await freePort();
  const server = await startServer(port, ['--max-message', String(8 << 20)]);
  const base = `ws://127.0.0.1:${port}`;
  try {
    for (const [name, pmd] of [
      ['context takeover', { threshold: 0 }],
      ['no context takeover', { threshold: 0, clientNoContextTakeover: true, serverNoContextTakeover: true }],
    ]) {
      await step(`echo with ${name}: every size, text and binary, whole and in 1-byte to 7 fragments`, async () => {
        const { ws, next } = await open(`${base}/echo`, pmd);
        assert.match(ws.extensions, /permessage-deflate/, 'negotiated');
        let n = 0;
        for (const size of SIZES) {
          for (const binary of [false, true]) {
            for (const pieces of [1, 3, 7, ...(size <= 300 ? [size || 1] : [])]) {
              const data = payload(size, binary);
              sendFragmented(ws, data, pieces, binary);
              const m = await next();
              assert.equal(m.isBinary, binary, `${size} bytes`);
              assert.ok(m.data.equals(data), `${size} bytes ${binary ? 'binary' : 'text'} in ${pieces} fragments came back changed`);
              n++;
            }
          }
        }
        ws.close(1000);
        assert.ok(n > 80);
      });
    }

    await step('a subscriber offering permessage-deflate gets published messages exactly', async () => {
      const { ws, next } = await open(`${base}/channels/zipped`, {});
      for (const size of [10, 300, 5000, 200000]) {
        const data = payload(size, false).toString();
        const r = await fetch(`http://127.0.0.1:${port}/channels/zipped`, { method: 'POST', body: data });
        assert.equal(r.status, 202);
        const m = await next();
        assert.equal(m.data.toString(), data, `${size} bytes`);
      }
      ws.close(1000);
    });

    await step('socket.io-client over WebSocket (permessage-deflate offered) gets large events', async () => {
      const sock = io(`http://127.0.0.1:${port}`, { transports: ['websocket'], reconnection: false });
      await new Promise((ok, fail) => { sock.once('connect', ok); sock.once('connect_error', fail); });
      const big = payload(50000, false).toString();
      const got = new Promise((ok) => sock.once('news', ok));
      const r = await fetch(`http://127.0.0.1:${port}/socket.io-api/emit`, {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ namespace: '/', event: 'news', args: [big] }),
      });
      assert.ok(r.status < 300, `emit: ${r.status} ${await r.text()}`);
      assert.equal(await got, big);
      sock.close();
    });
  } finally {
    await stopServer(server);
  }
}

run(main, 120_000);
