// End-to-end: the demo pages in Debian's headless Chromium, driven by playwright-core,
// against the real pushwire binary. Run by scripts/test.sh after `cargo test`:
//   node tests/e2e/run.mjs [path/to/pushwire]
// Every step waits for a condition (never a fixed sleep as the assertion) and the whole run
// is bounded. Screenshots go to target/e2e-screenshots/ (printed at the end).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { ROOT, WAIT, freePort, startServer, stopServer, step, steps, run } from './lib.mjs';

const SHOTS = path.join(ROOT, 'target/e2e-screenshots');
const RUN_LIMIT = 180_000;         // the whole run

async function main() {
  mkdirSync(SHOTS, { recursive: true });
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  let server = await startServer(port);
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  // A page in a fresh browser context, on the main server or the one at `at`.
  const open = async (url, at = base) => {
    const ctx = await browser.newContext({ viewport: { width: 900, height: 700 } });
    const page = await ctx.newPage();
    page.setDefaultTimeout(WAIT);
    page.on('pageerror', (e) => { throw new Error(`page error on ${url}: ${e.message}`); });
    await page.goto(at + url);
    return page;
  };
  const stats = async () => (await fetch(base + '/stats')).json();
  try {
    await step('index page links every demo', async () => {
      const page = await open('/');
      for (const href of ['/chat.html', '/p2p.html', '/echo.html', '/ticker.html', '/sio-chat.html', '/dashboard', '/iframe.html']) {
        assert.equal(await page.locator(`a[href="${href}"]`).count(), 1, href);
      }
      await page.screenshot({ path: path.join(SHOTS, 'index.png'), fullPage: true });
    });

    let alice, bob;
    await step('chat: two pages exchange messages both ways, multi-line and escaped', async () => {
      alice = await open('/chat.html');
      bob = await open('/chat.html');
      await alice.fill('#nick', 'alice'); await alice.locator('#nick').dispatchEvent('change');
      await bob.fill('#nick', 'bob'); await bob.locator('#nick').dispatchEvent('change');
      await alice.locator('#state', { hasText: 'connected' }).waitFor();
      await bob.locator('#state', { hasText: 'connected' }).waitFor();
      await alice.fill('#text', 'hello from alice');
      await alice.press('#text', 'Enter');
      await bob.locator('#messages li', { hasText: 'hello from alice' }).waitFor();
      await bob.fill('#text', 'line one\nline two');
      await bob.click('#send');
      const multi = alice.locator('#messages li', { hasText: 'line one' });
      await multi.waitFor();
      assert.match(await multi.innerText(), /line one\nline two/);
      await alice.fill('#text', '<img src=x onerror="window.pwned=1"><b>bold</b>');
      await alice.click('#send');
      await bob.locator('#messages li', { hasText: '<b>bold</b>' }).waitFor();
      assert.equal(await bob.locator('#messages b, #messages img').count(), 0, 'message text became HTML');
      assert.equal(await bob.evaluate(() => window.pwned), undefined);
      await alice.screenshot({ path: path.join(SHOTS, 'chat.png'), fullPage: true });
    });

    await step('chat: survives a server restart and shows what was published meanwhile, once', async () => {
      const before = await alice.locator('#messages li:not(.system)').count();
      assert.equal(await stopServer(server), 0, 'graceful shutdown exits 0');
      await alice.locator('#state', { hasText: 'reconnecting' }).waitFor();
      server = await startServer(port);
      // Published before the page is back (it retries every 2 s).
      const s = await stats();
      assert.equal(s.connections.sse, 0, 'the page reconnected before the message was published');
      const res = await fetch(base + '/chat', { method: 'POST', headers: { 'Content-Type': 'text/plain' },
                                               body: JSON.stringify({ name: 'carol', msg: 'sent while you were away' }) });
      assert.equal(res.status, 204);
      const away = alice.locator('#messages li', { hasText: 'sent while you were away' });
      await away.waitFor();
      await alice.locator('#state', { hasText: 'connected' }).waitFor();
      // A live message after the replay: once it is shown, any duplicate would be too.
      await fetch(base + '/chat', { method: 'POST', body: JSON.stringify({ name: 'carol', msg: 'live again' }) });
      await alice.locator('#messages li', { hasText: 'live again' }).waitFor();
      assert.equal(await away.count(), 1, 'replayed message shown twice');
      assert.equal(await alice.locator('#messages li:not(.system)').count(), before + 2);
      // The new process cannot know what the old one had: the page is told (a `reset` event).
      await alice.locator('#messages li.system', { hasText: 'no longer available' }).waitFor();
      await alice.screenshot({ path: path.join(SHOTS, 'chat-after-restart.png'), fullPage: true });
      await alice.context().close(); await bob.context().close();
    });

    await step('p2p: Bob sends Alice a message; Jack offline gets the notice; switching sender reconnects', async () => {
      const bobPage = await open('/p2p.html?me=Bob&to=Alice');
      const alicePage = await open('/p2p.html?me=Alice&to=Bob');
      await bobPage.locator('#state', { hasText: 'online as Bob' }).waitFor();
      await alicePage.locator('#state', { hasText: 'online as Alice' }).waitFor();
      await bobPage.fill('#text', 'hi Alice, it is Bob');
      await bobPage.click('#send');
      await alicePage.locator('#log li', { hasText: 'hi Alice, it is Bob' }).waitFor();
      assert.match(await alicePage.locator('#log li').last().innerText(), /^Bob → me:/);
      await bobPage.selectOption('#to', 'Jack');
      await bobPage.fill('#text', 'anyone there?');
      await bobPage.click('#send');
      await bobPage.locator('#notice', { hasText: 'offline' }).waitFor();
      await bobPage.screenshot({ path: path.join(SHOTS, 'p2p-offline.png'), fullPage: true });
      // Bob's page becomes Jack: the Bob socket closes, a Jack socket opens.
      await bobPage.selectOption('#from', 'Jack');
      await bobPage.locator('#state', { hasText: 'online as Jack' }).waitFor();
      await alicePage.selectOption('#to', 'Jack');
      await alicePage.fill('#text', 'hello Jack');
      await alicePage.click('#send');
      await bobPage.locator('#log li', { hasText: 'hello Jack' }).waitFor();
      const toBob = await (await fetch(base + '/rest/message', { method: 'POST',
        body: JSON.stringify({ from: 'x', to: 'Bob', content: 'still there?' }) })).json();
      assert.deepEqual(toBob, { succeed: false, msg: 'recipient offline' }, 'the old Bob socket is still open');
      await alicePage.screenshot({ path: path.join(SHOTS, 'p2p.png'), fullPage: true });
      await bobPage.context().close(); await alicePage.context().close();
    });

    await step('chat with --publish-token: refused without the token, works with #token=', async () => {
      const tport = await freePort();
      const tbase = `http://127.0.0.1:${tport}`;
      const tserver = await startServer(tport, ['--publish-token', 's3cret']);
      try {
        const visitor = await open('/chat.html', tbase);
        const op = await open('/chat.html#token=s3cret', tbase);
        await visitor.fill('#text', 'no token here');
        await visitor.press('#text', 'Enter');
        await visitor.locator('#messages li.system', { hasText: 'needs the publish token' }).waitFor();
        await op.fill('#text', 'with the token');
        await op.press('#text', 'Enter');
        await visitor.locator('#messages li', { hasText: 'with the token' }).waitFor();
        assert.equal(await op.locator('#messages li', { hasText: 'no token here' }).count(), 0, 'the refused message was published');
        await visitor.screenshot({ path: path.join(SHOTS, 'chat-token.png'), fullPage: true });
        await visitor.context().close(); await op.context().close();
      } finally {
        assert.equal(await stopServer(tserver), 0);
      }
    });

    await step('echo: counter echoed, state and close code shown', async () => {
      const page = await open('/echo.html');
      await page.click('#connect');
      await page.locator('#state', { hasText: 'OPEN' }).waitFor();
      await page.locator('#log li', { hasText: 'echo: count 2' }).waitFor();
      assert.ok(Number(await page.locator('#echoed').innerText()) >= 2);
      await page.screenshot({ path: path.join(SHOTS, 'echo.png'), fullPage: true });
      await page.click('#disconnect');
      await page.locator('#state', { hasText: 'CLOSED' }).waitFor();
      await page.locator('#code', { hasText: '1000' }).waitFor();
      await page.context().close();
    });

    await step('permessage-deflate: Chromium negotiates it; large and small messages, text and binary, come back exact', async () => {
      const page = await open('/echo.html');
      const got = await page.evaluate(async () => {
        const ws = new WebSocket(`ws://${location.host}/echo`);
        ws.binaryType = 'arraybuffer';
        await new Promise((ok, fail) => { ws.onopen = ok; ws.onerror = fail; });
        const replies = [];
        ws.onmessage = (e) => replies.push(e.data);
        const text = (n) => Array.from({ length: n }, (_, i) => String.fromCharCode(97 + (i * 7919) % 26)).join('');
        const sent = [text(10), text(300), text(100000), 'ünïcødé ✓ '.repeat(500)];
        const bin = new Uint8Array(70000).map((_, i) => (i * 31) % 256);
        for (const m of sent) ws.send(m);
        ws.send(bin);
        while (replies.length < sent.length + 1) await new Promise((r) => setTimeout(r, 20));
        const back = new Uint8Array(replies[sent.length]);
        return {
          extensions: ws.extensions,
          texts: replies.slice(0, sent.length).map((r, i) => r === sent[i]),
          binary: back.length === bin.length && back.every((b, i) => b === bin[i]),
        };
      });
      assert.match(got.extensions, /^permessage-deflate; server_no_context_takeover/);
      assert.deepEqual(got.texts, [true, true, true, true]);
      assert.ok(got.binary, 'the binary message came back exactly');
      await page.context().close();
    });

    await step('socket.io chat: two pages meet in a room over the official client, polling upgraded to WebSocket', async () => {
      const sport = await freePort();
      const js = path.join(ROOT, 'tests/e2e/node_modules/socket.io-client/dist/socket.io.min.js');
      const sserver = await startServer(sport, ['--sio-client-js', js]);
      try {
        const sbase = `http://127.0.0.1:${sport}`;
        const a = await open('/sio-chat.html', sbase);
        const b = await open('/sio-chat.html', sbase);
        for (const [page, name] of [[a, 'ann'], [b, 'ben']]) {
          await page.fill('#nick', name); await page.locator('#nick').dispatchEvent('change');
          await page.locator('#state', { hasText: 'connected' }).waitFor();
          await page.locator('#transport', { hasText: 'websocket' }).waitFor();
        }
        await a.click('#join');
        await a.locator('#current', { hasText: 'lobby' }).waitFor();
        await b.click('#join');
        await b.locator('#people', { hasText: 'ann, ben' }).waitFor();
        await a.locator('#people', { hasText: 'ann, ben' }).waitFor();
        await a.fill('#text', 'hello <b>ben</b>');
        await a.click('#send');
        await b.locator('#messages li', { hasText: 'hello <b>ben</b>' }).waitFor();
        assert.equal(await b.locator('#messages b').count(), 0, 'text, not markup');
        await b.fill('#text', 'hi ann');
        await b.press('#text', 'Enter');
        await a.locator('#messages li', { hasText: 'hi ann' }).waitFor();
        // Another room does not hear the lobby.
        await b.fill('#room', 'elsewhere');
        await b.click('#join');
        await b.locator('#current', { hasText: 'elsewhere' }).waitFor();
        await a.locator('#people', { hasText: /^ann$/ }).waitFor();
        await a.fill('#text', 'anyone?');
        await a.click('#send');
        await a.locator('#messages li.self', { hasText: 'anyone?' }).waitFor();
        await b.fill('#text', 'from elsewhere');
        await b.click('#send');
        await b.locator('#messages li.self', { hasText: 'from elsewhere' }).waitFor();
        assert.equal(await b.locator('#messages li', { hasText: 'anyone?' }).count(), 0, 'the lobby stays in the lobby');
        await a.screenshot({ path: path.join(SHOTS, 'sio-chat.png'), fullPage: true });
        await a.context().close(); await b.context().close();
      } finally {
        assert.equal(await stopServer(sserver), 0);
      }
    });

    await step('forever iframe: a published message appears through the hidden iframe, markup shown as text', async () => {
      const page = await open('/iframe.html?channel=iframe-demo');
      await page.locator('#state', { hasText: 'OPEN' }).waitFor();
      // The iframe's subscription is registered once the server counts it.
      const t0 = Date.now();
      while ((await stats()).subscribers.sse < 1) {
        assert.ok(Date.now() - t0 < WAIT, 'iframe subscription not counted');
        await new Promise((r) => setTimeout(r, 50));
      }
      await page.fill('#text', 'hello <b>iframe</b>');
      await page.click('#send');
      await page.locator('#log li', { hasText: 'hello <b>iframe</b>' }).waitFor();
      const r = await fetch(base + '/channels/iframe-demo', { method: 'POST', body: '</script><script>window.pwned=1</script>' });
      assert.equal(r.status, 202);
      await page.locator('#log li', { hasText: 'window.pwned' }).waitFor();
      assert.equal(await page.evaluate(() => window.pwned), undefined, 'a message is data, never code');
      await page.screenshot({ path: path.join(SHOTS, 'iframe.png'), fullPage: true });
      await page.context().close();
    });

    await step('dashboard: live connection counts, message rates and the busiest channel', async () => {
      const page = await open('/dashboard');
      await page.locator('#state', { hasText: 'OPEN' }).waitFor();
      // Traffic on a channel with a subscriber, for a few of the dashboard's seconds.
      const ctl = new AbortController();
      const sub = fetch(base + '/channels/dash-demo', { headers: { Accept: 'text/event-stream' }, signal: ctl.signal }).catch(() => {});
      const until = Date.now() + 3500;
      let sent = 0;
      while (Date.now() < until) {
        const r = await fetch(base + '/channels/dash-demo', { method: 'POST', body: `m${sent}` });
        assert.equal(r.status, 202);
        sent += 1;
        await new Promise((r) => setTimeout(r, 20));
      }
      await page.locator('#busiest td', { hasText: 'dash-demo' }).first().waitFor();
      await page.waitForFunction(() => Number(document.getElementById('c-sse').textContent) >= 2);   // the page's own stream and ours
      await page.waitForFunction(() => Number(document.getElementById('in').textContent) >= 0 && document.getElementById('in').textContent !== '–');
      await page.screenshot({ path: path.join(SHOTS, 'dashboard.png'), fullPage: true });
      // Nobody but the server may publish its figures.
      assert.equal((await fetch(base + '/channels/pushwire:stats', { method: 'POST', body: 'fake' })).status, 403);
      ctl.abort();
      await sub;
      await page.context().close();
    });

    await step('HTTPS: the echo page over WSS and two chat pages over SSE, TLS on pushwire itself', async () => {
      // A self-signed certificate made here (the browser is told to accept it).
      const dir = mkdtempSync(path.join(os.tmpdir(), 'pushwire-tls-'));
      const [cert, key] = [path.join(dir, 'cert.pem'), path.join(dir, 'key.pem')];
      execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2',
        '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert], { stdio: 'ignore' });
      const tport = await freePort();
      const tls = await startServer(tport, ['--tls-cert', cert, '--tls-key', key]);
      try {
        const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 900, height: 700 } });
        const page = await ctx.newPage();
        page.setDefaultTimeout(WAIT);
        await page.goto(`https://127.0.0.1:${tport}/echo.html`);
        assert.equal(await page.evaluate(() => location.protocol), 'https:');
        await page.click('#connect');
        await page.locator('#state', { hasText: 'OPEN' }).waitFor();
        await page.locator('#log li', { hasText: 'echo: count 2' }).waitFor();
        const [a, b] = [await ctx.newPage(), await ctx.newPage()];
        for (const [p, nick] of [[a, 'ann'], [b, 'ben']]) {
          p.setDefaultTimeout(WAIT);
          await p.goto(`https://127.0.0.1:${tport}/chat.html`);
          await p.fill('#nick', nick); await p.locator('#nick').dispatchEvent('change');
          await p.locator('#state', { hasText: 'connected' }).waitFor();
        }
        await a.fill('#text', 'over TLS');
        await a.press('#text', 'Enter');
        await b.locator('#messages li', { hasText: 'over TLS' }).waitFor();
        await page.screenshot({ path: path.join(SHOTS, 'https-echo.png'), fullPage: true });
        await ctx.close();
      } finally {
        await stopServer(tls);
      }
    });

    await step('ticker: connect time and a ticking clock; the timer stops when the page goes', async () => {
      const page = await open('/ticker.html');
      await page.locator('#state', { hasText: 'OPEN' }).waitFor();
      await page.waitForFunction(() => Number(document.getElementById('ticks').textContent) >= 2);
      assert.match(await page.locator('#connect').innerText(), /GMT$/);
      assert.match(await page.locator('#now').innerText(), /\d\d:\d\d:\d\d GMT$/);
      await page.screenshot({ path: path.join(SHOTS, 'ticker.png'), fullPage: true });
      await page.context().close();
      // Nobody listens any more: the clock channel loses its subscriber.
      const t0 = Date.now();
      while ((await stats()).subscribers.sse !== 0) {
        assert.ok(Date.now() - t0 < WAIT, 'ticker subscriber still counted');
        await new Promise((r) => setTimeout(r, 50));
      }
    });
  } finally {
    await browser.close();
    await stopServer(server);
  }
  console.log(`\n${steps.length} end-to-end checks passed; screenshots in ${SHOTS}`);
}

run(main, RUN_LIMIT);
