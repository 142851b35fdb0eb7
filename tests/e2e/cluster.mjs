// Socket.IO across a cluster: two pushwire nodes joined by a real redis-server, the official
// socket.io-client npm package on both. Run by scripts/test.sh after `cargo test`:
//   node tests/e2e/cluster.mjs [path/to/pushwire]
// Every wait is bounded by a condition with a timeout; the whole run has a limit.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { WAIT, freePort, startServer, stopServer, step, steps, run, once, connected, collect, until } from './lib.mjs';

const RUN_LIMIT = 120_000;
// How long "nothing more came" is watched for after the expected events arrived: a second
// copy (one through Redis, one local) would come within a few milliseconds.
const QUIET = 300;

// A child that died of a signal has exitCode null and signalCode set.
const running = (c) => c.exitCode === null && c.signalCode === null;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const post = (url, body, headers = {}) => fetch(url, { method: 'POST', body, headers });

// redis-server on `port`, nothing kept on disk; resolves once it answers PING.
async function startRedis(port) {
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
                      { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout.on('data', (d) => { log += d; });
  child.stderr.on('data', (d) => { log += d; });
  const exited = new Promise((_, reject) => child.once('exit', (code) => reject(new Error(`redis-server exited (${code}): ${log}`))));
  exited.catch(() => {});
  const pong = () => new Promise((resolve) => {
    const c = net.connect(port, '127.0.0.1');
    let buf = '';
    c.once('error', () => resolve(false));
    c.on('data', (d) => { buf += d; if (buf.includes('\r\n')) { c.destroy(); resolve(buf.startsWith('+PONG')); } });
    c.once('connect', () => c.write('PING\r\n'));
  });
  // "Accepts a connection" is not enough while it is still loading: PING answers +PONG only
  // once it serves commands.
  await Promise.race([exited, until('redis-server answers PING', pong)]);
  return child;
}

// A node of the cluster: its own port, the shared Redis, its name.
async function node(id, redisUrl, extra = []) {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const child = await startServer(port, ['--redis', redisUrl, '--node-id', id, ...extra]);
  const stats = async () => (await fetch(base + '/stats')).json();
  return { id, port, base, child, stats };
}

// A node logs its URL before it reached Redis; /healthz is 503 until it did.
async function healthy(n) {
  let last;
  await until(`node ${n.id} healthy`, async () => { last = await fetch(n.base + '/healthz'); return last.status === 200; });
  assert.equal(last.headers.get('x-pushwire-node'), n.id);
}

// A publish reaches a node's sockets only once that node's SUBSCRIBE is confirmed by Redis:
// wait for at least `n` confirmed and none pending before publishing.
async function following(nd, n) {
  await until(`node ${nd.id} follows ${n} topics on Redis`, async () => {
    const c = (await nd.stats()).cluster;
    return c.up && c.subscriptions >= n && c.subscriptions_pending === 0;
  });
}

const emitApi = async (nd, body) => {
  const r = await post(`${nd.base}/socket.io-api/emit`, JSON.stringify(body), { 'Content-Type': 'application/json' });
  return { status: r.status, body: await r.json() };
};

async function main() {
  const rport = await freePort();
  const redisUrl = `redis://127.0.0.1:${rport}`;
  const children = [];
  // run() exits the process when the run takes too long: the children must not outlive it.
  process.on('exit', () => { for (const c of children) if (running(c)) c.kill('SIGKILL'); });
  const redis = await startRedis(rport);
  children.push(redis);
  const all = [];
  let nodes = [];
  const client = async (nd, path = '', opts = {}) => { const s = await connected(nd.base + path, opts); all.push(s); return s; };
  try {
    let a, b;
    await step('two nodes reach Redis: /healthz 200 on both, each under its own name', async () => {
      a = await node('a', redisUrl);
      b = await node('b', redisUrl);
      nodes = [a, b];
      children.push(a.child, b.child);
      await healthy(a);
      await healthy(b);
      for (const n of nodes) assert.equal((await n.stats()).cluster.up, true);
    });

    let onA, onB, onBpoll;
    await step('sockets on both nodes, WebSocket and polling; each node follows the namespace on Redis', async () => {
      onB = await client(b, '', { transports: ['websocket'] });
      onBpoll = await client(b, '', { transports: ['polling'] });
      onA = await client(a, '', { transports: ['websocket'] });
      assert.equal(onB.io.engine.transport.name, 'websocket');
      assert.equal(onBpoll.io.engine.transport.name, 'polling');
      // One topic each: the channel of namespace "/" (sio:), shared by all its sockets.
      await following(a, 1);
      await following(b, 1);
      assert.equal((await b.stats()).socketio.sockets, 2);
    });

    const sockets = () => [['a/ws', onA], ['b/ws', onB], ['b/polling', onBpoll]];

    await step('HTTP emit API on node a: every socket on both nodes gets the event once, arguments exact', async () => {
      const got = sockets().map(([name, s]) => [name, collect(s, 'news')]);
      const args = [{ z: 1, a: 2, nested: { list: [1, 'two', null] } }, 'x', 3.5, [true, false]];
      const r = await emitApi(a, { namespace: '/', event: 'news', args });
      // In a cluster the answer waits for Redis: its id, and how many nodes follow sio:.
      assert.equal(r.status, 202, JSON.stringify(r.body));
      assert.match(r.body.id, /^\d+$/);
      assert.equal(r.body.nodes, 2, 'both nodes follow the namespace');
      await until('every socket got news', () => got.every(([, g]) => g.length >= 1));
      await sleep(QUIET);
      for (const [name, g] of got) {
        assert.equal(g.length, 1, `${name}: once, not ${g.length} times`);
        assert.deepEqual(g[0], args, `${name}: the arguments as sent`);
        assert.deepEqual(Object.keys(g[0][0]), ['z', 'a', 'nested'], `${name}: key order kept`);
      }
      for (const [, s] of sockets()) s.off('news');
    });

    await step('HTTP publish on node b to channel sio: reaches the socket on node a too', async () => {
      const got = sockets().map(([name, s]) => [name, collect(s, 'notice')]);
      const r = await post(`${b.base}/channels/sio:?event=notice`, '{"from":"b"}');
      assert.equal(r.status, 202);
      assert.equal((await r.json()).nodes, 2);
      await until('every socket got notice', () => got.every(([, g]) => g.length >= 1));
      await sleep(QUIET);
      for (const [name, g] of got) assert.deepEqual(g, [[{ from: 'b' }]], `${name}: once, a JSON body is one parsed argument`);
      for (const [, s] of sockets()) s.off('notice');
    });

    await step('a room across nodes: the emit reaches the room on the other node only', async () => {
      // The join's answer counts this node's members: the room is one hub channel per node.
      assert.equal(await onB.emitWithAck('join', 'lobby'), 1);
      await following(b, 2);
      const got = sockets().map(([name, s]) => [name, collect(s, 'room-news')]);
      const r = await emitApi(a, { namespace: '/', room: 'lobby', event: 'room-news', args: ['in lobby'] });
      assert.equal(r.status, 202, JSON.stringify(r.body));
      assert.equal(r.body.nodes, 1, 'only node b follows sio::lobby');
      await until('b/ws (in lobby) got it', () => got[1][1].length >= 1);
      // Something that reaches everyone, so "the others got nothing" is checked after it.
      assert.equal((await emitApi(a, { namespace: '/', event: 'room-news', args: ['end'] })).status, 202);
      await until('everyone got the end', () => got.every(([, g]) => g.some((x) => x[0] === 'end')));
      await sleep(QUIET);
      assert.deepEqual(got[0][1], [['end']], 'a/ws is not in lobby');
      assert.deepEqual(got[1][1], [['in lobby'], ['end']], 'b/ws: the room event once, then the namespace one');
      assert.deepEqual(got[2][1], [['end']], 'b/polling is not in lobby');
      for (const [, s] of sockets()) s.off('room-news');
    });

    await step('relay (default: others): a client on a emits, the sockets on b get it once, the sender does not', async () => {
      const got = sockets().map(([name, s]) => [name, collect(s, 'chat')]);
      // onA is in no room: its events go to its whole namespace, through Redis to node b.
      const acked = await onA.emitWithAck('chat', 'hi from a', { n: 1, list: [1, 2] });
      // The ack counts sockets on the sender's node only (none besides the sender here).
      assert.equal(typeof acked, 'number');
      await until('both sockets on b got the relay', () => got[1][1].length >= 1 && got[2][1].length >= 1);
      assert.equal((await emitApi(b, { namespace: '/', event: 'chat', args: ['end'] })).status, 202);
      await until('everyone got the end', () => got.every(([, g]) => g.some((x) => x[0] === 'end')));
      await sleep(QUIET);
      assert.deepEqual(got[0][1], [['end']], 'the sender did not get its own relay');
      for (const [name, g] of got.slice(1)) assert.deepEqual(g, [['hi from a', { n: 1, list: [1, 2] }], ['end']], `${name}: once, exact`);
      for (const [, s] of sockets()) s.off('chat');
      console.log(`     (the sender's ack said ${acked})`);
    });

    await step('relay from a polling client on b, and within a room across nodes', async () => {
      let got = sockets().map(([name, s]) => [name, collect(s, 'chat')]);
      await onBpoll.emitWithAck('chat', 'from b/polling');
      await until('a/ws and b/ws got it', () => got[0][1].length >= 1 && got[1][1].length >= 1);
      await sleep(QUIET);
      assert.deepEqual(got[0][1], [['from b/polling']]);
      assert.deepEqual(got[1][1], [['from b/polling']]);
      assert.deepEqual(got[2][1], [], 'not to the sender');
      for (const [, s] of sockets()) s.off('chat');
      // onA joins lobby on node a; onB (in lobby on b) emits: to the room only, across nodes.
      assert.equal(await onA.emitWithAck('join', 'lobby'), 1);
      await following(a, 2);
      got = sockets().map(([name, s]) => [name, collect(s, 'chat')]);
      await onB.emitWithAck('chat', 'lobby only');
      await until('a/ws (in lobby on a) got it', () => got[0][1].length >= 1);
      assert.equal((await emitApi(a, { namespace: '/', event: 'chat', args: ['end'] })).status, 202);
      await until('everyone got the end', () => got.every(([, g]) => g.some((x) => x[0] === 'end')));
      await sleep(QUIET);
      assert.deepEqual(got[0][1], [['lobby only'], ['end']], 'a/ws: the room relay once');
      assert.deepEqual(got[1][1], [['end']], 'b/ws: not its own relay');
      assert.deepEqual(got[2][1], [['end']], 'b/polling is not in lobby');
      for (const [, s] of sockets()) s.off('chat');
    });

    await step('an emit to one socket reaches it on whichever node has it', async () => {
      const got = sockets().map(([name, s]) => [name, collect(s, 'direct')]);
      // The request goes to node a; the socket is on node b.
      const r = await emitApi(a, { namespace: '/', to: onBpoll.id, event: 'direct', args: ['for b/polling'] });
      assert.equal(r.status, 202, JSON.stringify(r.body));
      assert.equal(r.body.nodes, 2, 'every node follows the topic for emits to one socket');
      await until('b/polling got it', () => got[2][1].length >= 1);
      // On the node that has it, it is delivered at once, without Redis.
      assert.deepEqual(await emitApi(a, { namespace: '/', to: onA.id, event: 'direct', args: ['for a/ws'] }), { status: 202, body: { delivered: 1 } });
      await until('a/ws got it', () => got[0][1].length >= 1);
      await sleep(QUIET);
      assert.deepEqual(got[2][1], [['for b/polling']], 'once');
      assert.deepEqual(got[0][1], [['for a/ws']], 'once');
      assert.deepEqual(got[1][1], [], 'b/ws is not addressed');
      for (const [, s] of sockets()) s.off('direct');
    });

    await step('every session is gone once its client closed; the nodes stop following on Redis', async () => {
      for (const s of all) s.close();
      for (const n of nodes) {
        await until(`no sessions on ${n.id}`, async () => (await n.stats()).socketio.sessions === 0);
        await until(`${n.id} follows nothing`, async () => {
          const c = (await n.stats()).cluster;
          return c.subscriptions === 0 && c.subscriptions_pending === 0;
        });
      }
      for (const n of nodes) assert.equal(await stopServer(n.child), 0, `node ${n.id} exits cleanly`);
      nodes = [];
    });

    await step('relay all: the sender gets its own event once too, the other node once', async () => {
      a = await node('a2', redisUrl, ['--sio-relay', 'all']);
      b = await node('b2', redisUrl, ['--sio-relay', 'all']);
      nodes = [a, b];
      children.push(a.child, b.child);
      await healthy(a);
      await healthy(b);
      const sa = await client(a, '', { transports: ['websocket'] });
      const sb = await client(b, '', { transports: ['polling'] });
      await following(a, 1);
      await following(b, 1);
      const [atA, atB] = [collect(sa, 'all'), collect(sb, 'all')];
      await sa.emitWithAck('all', 'to everyone', 1);
      await until('both got it', () => atA.length >= 1 && atB.length >= 1);
      await sleep(QUIET);
      assert.deepEqual(atA, [['to everyone', 1]], 'the sender: once');
      assert.deepEqual(atB, [['to everyone', 1]], 'node b: once');
      sa.close(); sb.close();
    });
  } finally {
    for (const s of all) s.close();
    for (const n of nodes) await stopServer(n.child);
    await new Promise((resolve) => {
      if (!running(redis)) return resolve();
      redis.once('exit', resolve);
      redis.kill('SIGTERM');
    });
  }
  console.log(`\n${steps.length} cluster socket.io checks passed`);
}

run(main, RUN_LIMIT);
