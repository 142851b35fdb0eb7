//! Several pushwire nodes joined by a real `redis-server` (Debian package, installed by
//! scripts/setup-e2e.sh) on an ephemeral port: fan-out across nodes on every transport,
//! exactly once; users across nodes; resuming on another node; Redis killed with SIGKILL
//! mid-traffic and restarted, with and without persistence.

mod support;

use std::collections::HashSet;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::pubsub::*;
use support::{Server, WAIT};

struct Redis {
    child: Option<Child>,
    port: u16,
    dir: std::path::PathBuf,
    persist: bool,
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Redis {
    fn start(persist: bool) -> Redis {
        // One start at a time: a port picked by binding 0 is free only until someone takes it.
        static STARTING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one = STARTING.lock().unwrap_or_else(|e| e.into_inner());
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = std::env::temp_dir().join(format!("pushwire-cluster-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut r = Redis { child: None, port, dir, persist };
        r.restart();
        r
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port, with the same data directory.
    fn restart(&mut self) {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--dir"]).arg(&self.dir);
        if self.persist {
            // Every write on disk before Redis answers it: what a 202 promises survives.
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("redis-server (scripts/setup-e2e.sh installs it)");
        let t0 = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(child.try_wait().unwrap().is_none(), "redis-server exited at start");
            assert!(t0.elapsed() < WAIT, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
    }

    /// SIGKILL: no goodbye, no save.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn node(redis: &Redis, id: &str, extra: &[&str]) -> Server {
    let mut args = vec!["--redis", redis.url_static(), "--node-id", id];
    args.extend_from_slice(extra);
    let s = Server::start(&args);
    wait_up(&s);
    s
}

impl Redis {
    fn url_static(&self) -> &'static str {
        Box::leak(self.url().into_boxed_str())
    }
}

fn wait_up(s: &Server) {
    support::wait_for("the node to reach Redis", || s.get("/healthz").status == 200);
}

/// Waits until the node follows `n` topics on Redis with none pending: a message published
/// anywhere from now on reaches its subscribers.
fn wait_following(s: &Server, n: u64) {
    wait_stats(s, &format!("{n} confirmed subscriptions"), |v| v["cluster"]["subscriptions"] == n && v["cluster"]["subscriptions_pending"] == 0);
}

/// Publishes on `s`; a cluster answers `202 {"id", "nodes"}` once Redis has it.
fn cpublish(s: &Server, channel: &str, data: &str) -> (u64, u64) {
    let r = post(s, &format!("/channels/{channel}"), data.as_bytes());
    assert_eq!(r.status, 202, "{r:?} {:?}", r.text());
    let v = body_json(&r);
    (parse_id(&v["id"]), v["nodes"].as_u64().unwrap_or_else(|| panic!("{v}")))
}

#[test]
fn a_publish_reaches_every_transport_on_every_node_once() {
    let redis = Redis::start(false);
    let (a, b, c) = (node(&redis, "a", &[]), node(&redis, "b", &[]), node(&redis, "c", &[]));
    assert_eq!(a.get("/healthz").header("x-pushwire-node"), Some("a"));
    let mut sse_a = open_sse(&a, "/channels/news", "");
    let mut sse_b = open_sse(&b, "/channels/news", "");
    let mut ws_b = ws_open(&b, "/channels/news", "");
    let mut ctl_c = ws_open(&c, "/ws", "");
    ctl_subscribe(&mut ctl_c, "news");
    let mut sse_c = open_sse(&c, "/subscribe?channel=news&channel=other", "");
    for s in [&a, &b] {
        wait_following(s, 1);
    }
    wait_following(&c, 2);
    let mut poll_b = b.client();
    poll_b.send(poll_request("/channels/news", "").as_bytes());

    let sent: Vec<(u64, String)> = (0..5)
        .map(|i| {
            let (id, nodes) = cpublish(&a, "news", &format!("m{i}"));
            assert_eq!(nodes, 3, "every node follows the channel");
            (id, format!("m{i}"))
        })
        .collect();
    assert!(sent.windows(2).all(|w| w[0].0 < w[1].0), "ids increase");
    // SSE on the publishing node and on the others: each message once, in order, same ids.
    for (what, s) in [("a", &mut sse_a), ("b", &mut sse_b), ("c multi", &mut sse_c)] {
        assert_eq!(s.messages(5), sent, "SSE on {what}");
    }
    for (_, data) in &sent {
        assert_eq!(&ws_text(&mut ws_b), data, "WebSocket on b");
        assert_eq!(ctl_recv(&mut ctl_c)["data"], json!(data), "/ws on c");
    }
    let first = poll_messages(&poll_b.response());
    assert_eq!(first[0]["data"], "m0", "the held long-poll is answered by the first message");
    // ... and the poll after it, on node c, resumes from its id with the rest.
    let last_seen = first.last().unwrap()["id"].as_str().unwrap().to_string();
    let rest = poll_messages(&c.get(&format!("/channels/news?since={last_seen}")));
    let got: Vec<&str> = first.iter().chain(&rest).map(|m| m["data"].as_str().unwrap()).collect();
    assert_eq!(got, ["m0", "m1", "m2", "m3", "m4"]);
    for (what, s) in [("a", &mut sse_a.c), ("b", &mut sse_b.c), ("ws b", &mut ws_b), ("c", &mut sse_c.c)] {
        assert_silent(s, Duration::from_millis(300), &format!("{what}: nothing twice"));
    }
    // A topic nobody follows any more is dropped on Redis.
    drop(sse_c);
    wait_following(&c, 1);
}

#[test]
fn users_are_online_and_offline_across_nodes() {
    let redis = Redis::start(false);
    let (a, b) = (node(&redis, "a", &[]), node(&redis, "b", &[]));
    let mut alice = open_sse(&b, "/users/alice", "");
    wait_following(&b, 1);
    let m = b.get("/metrics").text();
    assert!(m.contains("\npushwire_cluster_up 1\n") && m.contains("pushwire_cluster_subscriptions{state=\"confirmed\"} 1"), "{m}");
    // Bob on a reaches Alice on b.
    let r = post(&a, "/users/alice", b"hi alice");
    assert_eq!(r.status, 202, "{:?}", r.text());
    assert_eq!(body_json(&r)["nodes"], 1);
    assert_eq!(alice.message().1, "hi alice");
    let r = post(&a, "/rest/message", br#"{"from":"bob","to":"alice","content":"hello"}"#);
    assert_eq!(body_json(&r), json!({"succeed": true}));
    assert_eq!(serde_json::from_str::<Value>(&alice.message().1).unwrap(), json!({"from": "bob", "content": "hello"}));
    // Nobody anywhere: offline.
    assert_json_error(&post(&a, "/users/carol", b"x"), 404);
    let r = post(&b, "/rest/message", br#"{"from":"bob","to":"carol","content":"x"}"#);
    assert_eq!(body_json(&r), json!({"succeed": false, "msg": "recipient offline"}));
    // Alice leaves: offline everywhere, and nothing of it was kept for her.
    drop(alice);
    wait_following(&b, 0);
    assert_json_error(&post(&a, "/users/alice", b"gone"), 404);
}

#[test]
fn a_subscriber_resumes_on_another_node_without_gap_or_duplicate() {
    let redis = Redis::start(false);
    let (a, b, c) = (node(&redis, "a", &[]), node(&redis, "b", &[]), node(&redis, "c", &[]));
    let ids: Vec<u64> = (0..5).map(|i| cpublish(&a, "feed", &format!("f{i}")).0).collect();
    // EventSource reconnecting to b with the id it last had from a.
    let mut sse = open_sse(&b, "/channels/feed", &format!("Last-Event-ID: {}\r\n", ids[1]));
    assert_eq!(sse.messages(3), vec![(ids[2], "f2".into()), (ids[3], "f3".into()), (ids[4], "f4".into())]);
    wait_following(&b, 1);
    let (id5, _) = cpublish(&c, "feed", "f5");
    assert_eq!(sse.message(), (id5, "f5".into()));
    assert_silent(&mut sse.c, Duration::from_millis(300), "no duplicate after the replay");
    // The stream id spelling is accepted too: it is the same number.
    let spelt = format!("{}-{}", ids[3] / 1000, ids[3] % 1000);
    let got = poll_messages(&c.get(&format!("/channels/feed?since={spelt}")));
    assert_eq!(got.iter().map(|m| m["data"].as_str().unwrap()).collect::<Vec<_>>(), ["f4", "f5"]);
    // A WebSocket and a /ws subscribe resume the same way.
    let mut ws = ws_open(&c, &format!("/channels/feed?since={}", ids[3]), "");
    assert_eq!(ws_text(&mut ws), "f4");
    assert_eq!(ws_text(&mut ws), "f5");
    let mut ctl = ws_open(&a, "/ws", "");
    ctl_send(&mut ctl, &json!({"op": "subscribe", "channel": "feed", "since": ids[4].to_string()}));
    assert_eq!(ctl_recv(&mut ctl), json!({"ok": "subscribe", "channel": "feed"}));
    assert_eq!(ctl_recv(&mut ctl)["data"], "f5");
    // An id from before this Redis's history (another deployment, or a standalone node of
    // long ago): a reset, never silence.
    let mut old = open_sse(&c, "/channels/feed", "Last-Event-ID: 1000\r\n");
    let ev = old.next();
    assert_eq!(ev.event, "reset", "{ev:?}");
}

#[test]
fn publishes_get_503_while_redis_is_down_and_subscribers_stay() {
    let mut redis = Redis::start(false);
    let (a, b) = (node(&redis, "a", &[]), node(&redis, "b", &[]));
    let mut sse = open_sse(&b, "/channels/n", "");
    wait_following(&b, 1);
    let (id0, _) = cpublish(&a, "n", "before");
    assert_eq!(sse.message(), (id0, "before".into()));
    redis.kill();
    support::wait_for("a to notice", || a.get("/healthz").status == 503);
    let h = a.get("/healthz");
    assert!(h.text().contains("unavailable") && h.header("retry-after").is_some(), "{h:?} {:?}", h.text());
    let r = post(&a, "/channels/n", b"during");
    assert_eq!(r.status, 503, "{:?}", r.text());
    assert!(r.header("retry-after").is_some());
    assert_eq!(stats(&b)["cluster"]["up"], false);
    redis.restart();
    wait_up(&a);
    wait_up(&b);
    wait_following(&b, 1);
    // Redis lost everything (no persistence): the subscriber is told, then gets what follows.
    let ev = sse.next();
    assert_eq!(ev.event, "reset", "{ev:?}");
    let (id1, _) = cpublish(&a, "n", "after");
    assert!(id1 > id0);
    assert_eq!(sse.message(), (id1, "after".into()));
}

/// Publishes on `a` as fast as one connection goes while Redis is killed and restarted;
/// every acknowledged publish must reach the subscribers on `a` and `b` (or they got a
/// reset). `b` is stopped (SIGSTOP) across the restart, so messages are acknowledged while
/// it is not subscribed: it must find them in the stream.
fn kill_mid_traffic(persist: bool) {
    let mut redis = Redis::start(persist);
    // Room for every message of the run: a trimmed stream would be a reset.
    let (a, b) = (node(&redis, "a", &["--history", "1000"]), node(&redis, "b", &["--history", "1000"]));
    let mut subs = [open_sse(&a, "/channels/t", ""), open_sse(&b, "/channels/t", "")];
    wait_following(&a, 1);
    wait_following(&b, 1);
    let mut acked: Vec<(u64, String)> = Vec::new();
    let mut publisher = Publisher::new(&a);
    let mut publish_some = |n: usize, acked: &mut Vec<(u64, String)>, tag: &str| {
        for i in 0..n {
            let data = format!("{tag}{i}");
            let r = publisher.post("/channels/t", data.as_bytes());
            match r.status {
                202 => acked.push((parse_id(&body_json(&r)["id"]), data)),
                503 => {}
                s => panic!("publish answered {s}: {:?}", r.text()),
            }
        }
    };
    publish_some(50, &mut acked, "x");
    redis.kill();
    publish_some(20, &mut acked, "y"); // 202 for those Redis took before it died, 503 after
    let stop = Command::new("kill").args(["-STOP", &b.pid().to_string()]).status().unwrap();
    assert!(stop.success());
    redis.restart();
    wait_up(&a);
    publish_some(30, &mut acked, "z"); // b is not listening: only the stream has these
    assert!(Command::new("kill").args(["-CONT", &b.pid().to_string()]).status().unwrap().success());
    wait_up(&b);
    wait_following(&b, 1);
    publish_some(20, &mut acked, "w");
    assert!(acked.len() >= 100, "{} acknowledged", acked.len());
    let last = acked.last().unwrap().0;
    for (n, sub) in subs.iter_mut().enumerate() {
        let mut got: Vec<(u64, String)> = Vec::new();
        let mut reset = false;
        while got.last().is_none_or(|m| m.0 < last) {
            let ev = sub.next();
            if ev.event == "reset" {
                reset = true;
                continue;
            }
            got.push((ev.id.unwrap().parse().unwrap(), ev.data));
        }
        let ids: Vec<u64> = got.iter().map(|m| m.0).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "subscriber {n}: in order, no duplicate");
        let have: HashSet<u64> = ids.iter().copied().collect();
        let missing: Vec<&(u64, String)> = acked.iter().filter(|m| !have.contains(&m.0)).collect();
        if persist {
            assert!(!reset, "subscriber {n}: Redis kept everything: no reset");
            assert!(missing.is_empty(), "subscriber {n}: acknowledged but never delivered: {missing:?}");
        } else {
            // What was acknowledged before the crash reached it live; what Redis lost is
            // announced by a reset, never silently missing.
            assert!(missing.is_empty() || reset, "subscriber {n}: lost without a reset: {missing:?}");
            assert!(reset, "subscriber {n}: Redis restarted empty: its position is reset");
        }
        // z messages were published while b was stopped: b has them from the stream.
        assert!(got.iter().any(|m| m.1.starts_with('z')), "subscriber {n} has the messages of the gap");
    }
}

#[test]
fn redis_killed_mid_traffic_with_persistence_loses_nothing_acknowledged() {
    kill_mid_traffic(true);
}

#[test]
fn redis_killed_mid_traffic_without_persistence_resets_the_subscribers() {
    kill_mid_traffic(false);
}

#[test]
fn a_bad_redis_url_is_refused_at_start() {
    let out = Command::new(env!("CARGO_BIN_EXE_pushwire")).args(["--redis", "http://x"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--redis"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn pipelined_publishes_are_answered_in_request_order() {
    let redis = Redis::start(false);
    let a = node(&redis, "a", &[]);
    let mut c = a.client();
    let post = |d: &str| format!("POST /channels/p HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{d}", d.len());
    // Publishes wait on Redis together; the GET between them is answered after the first.
    let raw = format!("{}{}GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n{}", post("one"), post("two"), post("three"));
    c.send(raw.as_bytes());
    let mut ids = Vec::new();
    for want in [202, 202, 200, 202] {
        let r = c.response();
        assert_eq!(r.status, want, "{r:?} {:?}", r.text());
        if want == 202 {
            ids.push(parse_id(&body_json(&r)["id"]));
        }
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "answers in request order: {ids:?}");
    let got = poll_messages(&a.get(&format!("/channels/p?since={}", ids[0] - 1)));
    assert_eq!(got.iter().map(|m| m["data"].as_str().unwrap()).collect::<Vec<_>>(), ["one", "two", "three"]);
}

#[test]
fn a_stopped_redis_is_noticed_and_parked_publishes_fail() {
    let redis = Redis::start(false);
    // An idle timeout shorter than Redis's reply timeout: a parked request is not idle.
    let (a, b) = (node(&redis, "a", &["--keepalive-timeout", "1"]), node(&redis, "b", &[]));
    let mut sse = open_sse(&b, "/channels/s", "");
    wait_following(&b, 1);
    let (id0, _) = cpublish(&a, "s", "before");
    assert_eq!(sse.message(), (id0, "before".into()));
    // SIGSTOP: the connections stay open, nothing answers. The heartbeat finds it.
    let pid = redis.child.as_ref().unwrap().id().to_string();
    assert!(Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    let t0 = Instant::now();
    let r = post(&a, "/channels/s", b"stuck");
    assert_eq!(r.status, 503, "a publish parked on a silent Redis fails: {:?}", r.text());
    assert!(t0.elapsed() < Duration::from_secs(8), "within the heartbeat's reply timeout: {:?}", t0.elapsed());
    let h = a.get("/healthz");
    assert_eq!(h.status, 503);
    assert!(h.text().contains("did not answer"), "{:?}", h.text());
    assert!(Command::new("kill").args(["-CONT", &pid]).status().unwrap().success());
    for s in [&a, &b] {
        support::wait_for("the node back on Redis", || s.get("/healthz").status == 200);
    }
    wait_following(&b, 1);
    let (id1, _) = cpublish(&a, "s", "after");
    // Redis kept its data: no reset. The publish that got 503 was already in Redis's socket
    // when it stopped: Redis may still carry it out on waking (a 503 says "not known to be
    // accepted"), and then it comes, in order, before "after".
    let mut ev = sse.next();
    assert_ne!(ev.event, "reset", "Redis lost nothing");
    if ev.data == "stuck" {
        ev = sse.next();
    }
    assert_eq!((ev.id.as_deref(), ev.data.as_str()), (Some(id1.to_string().as_str()), "after"));
}

/// `--reuse-port` with `--redis`: two processes on one port are one service. The kernel
/// spreads the subscribers over both; a publish, answered by either, reaches all of them once.
#[test]
fn two_processes_on_one_port_are_one_service() {
    let redis = Redis::start(false);
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let url = redis.url();
    let start = |id: &str| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pushwire"));
        cmd.args(["--listen", &listen, "--stats-interval", "0", "--reuse-port", "--redis", &url, "--node-id", id]);
        let s = Server::spawn(cmd);
        wait_up(&s);
        s
    };
    let (a, _b) = (start("p1"), start("p2"));
    let mut subs: Vec<SseStream> = (0..16).map(|_| open_sse(&a, "/channels/shared", "")).collect();
    // Both processes have subscribers and follow the channel (asked until each has answered).
    let mut following = std::collections::BTreeSet::new();
    support::wait_for("both processes following the channel", || {
        let v = stats(&a);
        if v["cluster"]["subscriptions"] == 1 && v["cluster"]["subscriptions_pending"] == 0 {
            following.insert(v["node_id"].as_str().unwrap_or("").to_string());
        }
        following.len() == 2
    });
    let (id, nodes) = cpublish(&a, "shared", "to all");
    assert_eq!(nodes, 2);
    for s in &mut subs {
        assert_eq!(s.message(), (id, "to all".into()));
    }
    for s in &mut subs[..2] {
        assert_silent(&mut s.c, Duration::from_millis(200), "once");
    }
}

/// A channel's stream expires `--history-ttl` after its last publish. A resume from an old id
/// on a stream that still exists is complete (the stream keeps every entry until trimmed);
/// on one that expired, messages may have gone with it: a reset.
#[test]
fn history_ttl_in_a_cluster_resets_only_what_expired() {
    let redis = Redis::start(false);
    let a = node(&redis, "a", &["--history-ttl", "1"]);
    let (old, _) = cpublish(&a, "t", "old");
    std::thread::sleep(Duration::from_millis(1300));
    // The stream expired with its only message: an id from before is reset.
    let mut gone = open_sse(&a, "/channels/t", &format!("Last-Event-ID: {}\r\n", old - 1));
    assert_eq!(gone.next().event, "reset");
    let (first, _) = cpublish(&a, "t", "first");
    std::thread::sleep(Duration::from_millis(1300));
    let (second, _) = cpublish(&a, "t", "second");
    // `first` is older than the TTL, but its stream lives on (renewed by `second`).
    let mut sse = open_sse(&a, "/channels/t", &format!("Last-Event-ID: {first}\r\n"));
    assert_eq!(sse.message(), (second, "second".into()), "no reset: nothing after the id is missing");
}

/// The scripts are called by SHA1 after each connection's handshake loaded them. An operator's
/// SCRIPT FLUSH costs the publish in flight a 503; the link reconnects and loads them again.
#[test]
fn a_flushed_script_cache_is_reloaded() {
    let redis = Redis::start(false);
    let a = node(&redis, "a", &[]);
    cpublish(&a, "s", "before");
    let flushed = Command::new("redis-cli").args(["-p", &redis.port.to_string(), "SCRIPT", "FLUSH"]).output().unwrap();
    assert!(flushed.status.success(), "{flushed:?}");
    let r = post(&a, "/channels/s", b"lost script");
    assert_eq!(r.status, 503, "{:?}", r.text());
    wait_up(&a);
    let (id, _) = cpublish(&a, "s", "after");
    assert!(id > 0);
}

/// A keep-alive connection long-polls again and again: when Redis answers a resume late, the
/// answer goes to the poll that asked, never to the next one (which would get again what its
/// predecessor had).
#[test]
fn a_late_resume_does_not_answer_the_next_poll() {
    let redis = Redis::start(false);
    let (a, b) = (node(&redis, "a", &[]), node(&redis, "b", &["--poll-timeout", "1"]));
    let ids: Vec<u64> = (0..3).map(|i| cpublish(&a, "p", &format!("m{i}")).0).collect();
    // Someone else on b keeps the channel followed across the polls.
    let _other = open_sse(&b, "/channels/p", "");
    wait_following(&b, 1);
    let pid = redis.child.as_ref().unwrap().id().to_string();
    assert!(Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    let mut c = b.client();
    // The first poll's stream read waits on the stopped Redis; the poll times out first.
    c.send(poll_request(&format!("/channels/p?since={}", ids[0]), "").as_bytes());
    assert_eq!(c.response().status, 204);
    // The next poll, from a later id, asks again; then Redis wakes and answers both.
    c.send(poll_request(&format!("/channels/p?since={}", ids[1]), "").as_bytes());
    std::thread::sleep(Duration::from_millis(300));
    assert!(Command::new("kill").args(["-CONT", &pid]).status().unwrap().success());
    let got = poll_messages(&c.response());
    assert_eq!(got.iter().map(|m| m["data"].as_str().unwrap()).collect::<Vec<_>>(), ["m2"], "what came after its own id");
}
