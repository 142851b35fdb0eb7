// Socket.IO: the official socket.io-client npm package, unchanged, against the real pushwire
// binary. Run by scripts/test.sh after `cargo test`:
//   node tests/e2e/sio.mjs [path/to/pushwire]
// Every wait is bounded by a condition with a timeout; the whole run has a limit.
import assert from 'node:assert/strict';
import http from 'node:http';
import { io } from 'socket.io-client';
import { WAIT, freePort, startServer, stopServer, step, steps, run, once, connected, collect, until } from './lib.mjs';

const RUN_LIMIT = 120_000;

// An SSE stream read with node:http; `events` fills as events arrive.
function sse(url) {
  const events = [];
  const req = http.get(url, { headers: { Accept: 'text/event-stream' } }, (res) => {
    let buf = '';
    res.setEncoding('utf8');
    res.on('data', (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const ev = { event: 'message', data: [] };
        for (const line of block.split('\n')) {
          if (line.startsWith('event:')) ev.event = line.slice(6).trim();
          else if (line.startsWith('data:')) ev.data.push(line.slice(5).replace(/^ /, ''));
          else if (line.startsWith('id:')) ev.id = line.slice(3).trim();
        }
        if (ev.id) events.push({ ...ev, data: ev.data.join('\n') });
      }
    });
  });
  return { events, close: () => req.destroy(), ready: once(req, 'response', 'the SSE response') };
}

const post = (url, body, headers = {}) => fetch(url, { method: 'POST', body, headers });

async function main() {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  let server = await startServer(port, ['--sio-namespace', '/', '--sio-namespace', '/custom', '--sio-namespace', '/chat']);
  const stats = async () => (await fetch(base + '/stats')).json();
  const all = [];
  const client = async (path = '', opts = {}) => { const s = await connected(base + path, opts); all.push(s); return s; };
  try {
    for (const [name, transports] of [['polling only', ['polling']], ['WebSocket only', ['websocket']]]) {
      await step(`${name}: connect, join, relay to the room without the sender, acks`, async () => {
        const [a, b, c] = [await client('', { transports }), await client('', { transports }), await client('', { transports })];
        assert.equal(a.io.engine.transport.name, transports[0]);
        assert.equal(await a.emitWithAck('join', 'lobby'), 1);
        assert.equal(await b.emitWithAck('join', 'lobby'), 2);
        const [atA, atB, atC] = [collect(a, 'chat'), collect(b, 'chat'), collect(c, 'chat')];
        assert.equal(await a.emitWithAck('chat', 'hi', { n: 1, list: [1, 2] }), 1, 'reached one other socket');
        await until('B got the relay', () => atB.length === 1);
        assert.deepEqual(atB[0], ['hi', { n: 1, list: [1, 2] }]);
        // Something that reaches everyone, so "A and C got nothing" is checked after it.
        await post(`${base}/channels/sio:?event=chat`, 'end');
        await until('everyone got the namespace event', () => atA.length === 1 && atC.length === 1 && atB.length === 2);
        assert.deepEqual(atA[0], ['end'], 'the sender did not get its own relay');
        assert.deepEqual(atC[0], ['end'], 'C, outside the room, did not get the relay');
        assert.equal(await b.emitWithAck('leave', 'lobby'), 1);
        for (const s of [a, b, c]) s.close();
      });
    }

    await step('polling then upgrade: nothing lost or repeated across the upgrade', async () => {
      // A WebSocket client emits numbered events into the namespace without pause; a new
      // client starts on polling and upgrades while they stream in. From the first number it
      // sees, it must see every one, once, in order.
      const pub = await client('', { transports: ['websocket'] });
      let n = 0;
      let stop = false;
      const pumping = (async () => {
        while (!stop && n < 200_000) {
          pub.emit('n', n++);
          if (n % 20 === 0) await new Promise((r) => setTimeout(r, 1));
        }
      })();
      const s = io(base, { forceNew: true, reconnection: false, autoConnect: false });
      all.push(s);
      const got = [];
      let beforeUpgrade = -1;
      s.on('n', (v) => got.push(v));
      s.io.on('open', () => s.io.engine.once('upgrade', () => { beforeUpgrade = got.length; }));
      s.connect();
      await once(s, 'connect');
      await until('upgraded', () => beforeUpgrade >= 0);
      await until('500 more after the upgrade', () => got.length >= beforeUpgrade + 500);
      stop = true;
      await pumping;
      const last = n - 1;
      await until('the last one', () => got.length > 0 && got[got.length - 1] === last);
      assert.equal(s.io.engine.transport.name, 'websocket');
      const first = got[0];
      assert.deepEqual(got, Array.from({ length: last - first + 1 }, (_, i) => first + i), 'contiguous: none lost or repeated');
      // (Whether any came over polling depends on whether the probe overtook the CONNECT:
      // either way they were queued in the session while it upgraded. tests/sio_protocol.rs
      // checks both sides of the upgrade packet by packet.)
      console.log(`     (${beforeUpgrade} events over polling, ${got.length - beforeUpgrade} after the upgrade)`);
      s.close(); pub.close();
    });

    await step('binary events: attachments relayed as they were sent', async () => {
      const [a, b] = [await client('', { transports: ['websocket'] }), await client('', { transports: ['polling'] })];
      const atB = collect(b, 'file');
      const bytes = Buffer.from([0, 1, 2, 250, 255]);
      assert.equal(await a.emitWithAck('file', 'name.bin', bytes, { meta: true }), 1);
      await until('B got the file', () => atB.length === 1);
      assert.equal(atB[0][0], 'name.bin');
      assert.deepEqual(Buffer.from(atB[0][1]), bytes, 'the attachment, over polling (base64)');
      assert.deepEqual(atB[0][2], { meta: true });
      // And the other way, over the WebSocket (raw binary frames).
      const atA = collect(a, 'file');
      await b.emitWithAck('file', Buffer.from('back'));
      await until('A got it', () => atA.length === 1);
      assert.equal(Buffer.from(atA[0][0]).toString(), 'back');
      a.close(); b.close();
    });

    await step('namespaces: /custom works beside /, a namespace not allowed gets Invalid namespace', async () => {
      const main = await client('');
      const custom = io(base + '/custom', { forceNew: false, reconnection: false });
      all.push(custom);
      await once(custom, 'connect');
      assert.notEqual(custom.id, main.id);
      const nope = io(base + '/nope', { forceNew: true, reconnection: false });
      all.push(nope);
      const [err] = await once(nope, 'connect_error');
      assert.equal(err.message, 'Invalid namespace');
      // An event in /custom reaches /custom only.
      const other = await client('/custom');
      const atOther = collect(other, 'ping2');
      const atMain = collect(main, 'ping2');
      assert.equal(await custom.emitWithAck('ping2', 1), 1);
      await until('/custom got it', () => atOther.length === 1);
      await post(`${base}/channels/sio:?event=ping2`, '"main"');
      await until('main got its own', () => atMain.length === 1);
      assert.deepEqual(atMain[0], ['main'], 'the /custom event did not reach /');
      // Leaving one namespace keeps the other (same Engine.IO session).
      custom.disconnect();
      await post(`${base}/channels/sio:?event=ping2`, '"still"');
      await until('main still connected', () => atMain.length === 2);
      main.close(); other.close();
    });

    await step('HTTP emit API: a room, one socket, a user, the whole namespace', async () => {
      const a = await client('/chat', { auth: { user: 'alice' } });
      const b = await client('/chat');
      await b.emitWithAck('join', 'room1');
      const [atA, atB] = [collect(a, 'news'), collect(b, 'news')];
      const emit = (body) => post(`${base}/socket.io-api/emit`, JSON.stringify(body), { 'Content-Type': 'application/json' });
      let r = await emit({ namespace: '/chat', room: 'room1', event: 'news', args: [{ z: 1, a: 2 }, 'x'] });
      assert.equal(r.status, 202);
      await until('B (in room1) got it', () => atB.length === 1);
      assert.deepEqual(atB[0], [{ z: 1, a: 2 }, 'x']);
      assert.deepEqual(Object.keys(atB[0][0]), ['z', 'a'], 'key order kept');
      r = await emit({ namespace: '/chat', to: a.id, event: 'news', args: ['just you'] });
      assert.equal(r.status, 202);
      await until('A got its own', () => atA.length === 1);
      assert.deepEqual(atA[0], ['just you']);
      assert.equal((await emit({ namespace: '/chat', to: 'no-such-socket-id-xx', event: 'news' })).status, 404);
      const atMsg = collect(a, 'message');
      const rest = await post(`${base}/rest/message`, JSON.stringify({ from: 'bob', to: 'alice', content: 'hello alice' }));
      assert.deepEqual(await rest.json(), { succeed: true });
      await until('alice got /rest/message', () => atMsg.length === 1);
      assert.deepEqual(atMsg[0], [{ from: 'bob', content: 'hello alice' }]);
      assert.equal((await post(`${base}/users/alice`, 'direct')).status, 202);
      await until('alice got POST /users/alice', () => atMsg.length === 2);
      assert.deepEqual(atMsg[1], ['direct']);
      await emit({ namespace: '/chat', event: 'news', args: ['everyone'] });
      await until('both got the namespace emit', () => atA.length === 2 && atB.length === 2);
      assert.equal((await emit({ namespace: '/chat', event: 'news', room: 'a', to: 'b' })).status, 400);
      a.close(); b.close();
      await until('alice offline', async () => (await post(`${base}/users/alice`, 'x')).status === 404);
    });

    await step('bridge: socket.io emits reach SSE subscribers of the room, HTTP publishes reach socket.io', async () => {
      const stream = sse(`${base}/channels/sio:chat:lobby`);
      await stream.ready;
      const a = await client('/chat');
      const b = await client('/chat');
      await a.emitWithAck('join', 'lobby');
      await b.emitWithAck('join', 'lobby');
      await a.emitWithAck('said', 'hello SSE');
      await until('SSE got the emit', () => stream.events.length === 1);
      assert.equal(stream.events[0].event, 'said');
      assert.equal(stream.events[0].data, 'hello SSE');
      const atB = collect(b, 'notice');
      const r = await post(`${base}/channels/sio:chat:lobby?event=notice`, '{"level":"info","n":3}');
      assert.equal(r.status, 202);
      await until('socket.io got the HTTP publish', () => atB.length === 1);
      assert.deepEqual(atB[0], [{ level: 'info', n: 3 }], 'a JSON body is one parsed argument');
      await until('SSE saw the HTTP publish too', () => stream.events.length === 2);
      // History: a late SSE subscriber replays the room from an id.
      const late = sse(`${base}/channels/sio:chat:lobby?since=${Number(stream.events[0].id) - 1}`);
      await until('the replay', () => late.events.length === 2);
      assert.deepEqual(late.events.map((e) => e.event), ['said', 'notice']);
      stream.close(); late.close(); a.close(); b.close();
    });

    await step('connection-state recovery: a dropped connection gets its socket, rooms and missed events back', async () => {
      const rport = await freePort();
      const rbase = `http://127.0.0.1:${rport}`;
      const rserver = await startServer(rport, ['--sio-recovery']);
      try {
        const s = io(rbase, { forceNew: true, transports: ['websocket'], reconnectionDelay: 100, reconnectionDelayMax: 200 });
        all.push(s);
        await once(s, 'connect');
        assert.equal(s.recovered, false);
        assert.equal(await s.emitWithAck('join', 'r'), 1);
        const got = collect(s, 'n');
        await post(`${rbase}/channels/sio::r?event=n`, '1');
        await until('the first event', () => got.length === 1);
        assert.equal(got[0][0], 1);
        assert.match(got[0][1], /^\d+$/, 'events carry their offset as the last argument');
        const id = s.id;
        // The connection drops as a network failure would; events go on meanwhile.
        const back = once(s, 'connect', 'the reconnect');
        s.io.engine.close();
        await post(`${rbase}/channels/sio::r?event=n`, '2');
        await post(`${rbase}/channels/sio::r?event=n`, '3');
        await back;
        assert.equal(s.recovered, true, 'the server recovered the socket');
        assert.equal(s.id, id, 'same socket id');
        await until('the missed events', () => got.length >= 3);
        assert.deepEqual(got.map((a) => a[0]), [1, 2, 3], 'each once, in order');
        // Still in its room: a new event reaches it.
        await post(`${rbase}/channels/sio::r?event=n`, '4');
        await until('live again', () => got.length === 4);
        assert.equal(got[3][0], 4);
        s.close();
      } finally {
        assert.equal(await stopServer(rserver), 0);
      }
    });

    await step('a server restart: the client reconnects on its own', async () => {
      const s = io(base, { forceNew: true, reconnectionDelay: 200, reconnectionDelayMax: 500 });
      all.push(s);
      await once(s, 'connect');
      const firstId = s.id;
      const reconnected = once(s.io, 'reconnect', 'the reconnect');
      assert.equal(await stopServer(server), 0);
      server = await startServer(port, ['--sio-namespace', '/', '--sio-namespace', '/custom', '--sio-namespace', '/chat']);
      await reconnected;
      await until('connected again', () => s.connected);
      assert.notEqual(s.id, firstId, 'a new session');
      assert.equal(await s.emitWithAck('join', 'back'), 1);
      s.close();
    });

    await step('every session is gone once its client closed', async () => {
      for (const s of all) s.close();
      await until('no sessions', async () => (await stats()).socketio.sessions === 0);
      const st = await stats();
      assert.equal(st.subscribers.socketio, 0);
      assert.equal(st.socketio.sockets, 0);
    });
  } finally {
    for (const s of all) s.close();
    await stopServer(server);
  }
  console.log(`\n${steps.length} socket.io client checks passed`);
}

run(main, RUN_LIMIT);
