//! The Socket.IO layer without sockets: packets in, the session's queue and the hub out.

use std::time::{Duration, Instant};

use super::*;
use crate::hub::{HubLimits, Run};

struct World {
    sio: SioServer,
    hub: Hub,
    outbox: Vec<Rc<Message>>,
    cfg: Config,
    now: Instant,
}

impl World {
    fn new(cfg: Config) -> World {
        let limits = HubLimits { history_len: 10, history_ttl: Duration::from_secs(60), history_bytes: 1 << 20, max_channels: 100 };
        World { sio: SioServer::default(), hub: Hub::new(limits, 1000), outbox: Vec::new(), cfg, now: Instant::now() }
    }

    /// A WebSocket session with its open packet taken.
    fn session(&mut self) -> usize {
        let slot = self.sio.open(TransportKind::WebSocket, &self.cfg, self.now, false);
        let open = self.out(slot);
        assert!(open[0].starts_with(r#"0{"sid":""#) && open[0].contains(r#""upgrades":[]"#), "{open:?}");
        slot
    }

    fn send(&mut self, slot: usize, text: &str) {
        let mut env = Env { hub: &mut self.hub, outbox: &mut self.outbox, cluster: None, config: &self.cfg, now: self.now, wall_us: 2000 };
        let bytes = format!("4{text}");
        let p = engineio::decode_text(bytes.as_bytes()).unwrap();
        self.sio.on_packet(slot, p, Via::Transport, &mut env);
    }

    fn send_binary(&mut self, slot: usize, bytes: &[u8]) {
        let mut env = Env { hub: &mut self.hub, outbox: &mut self.outbox, cluster: None, config: &self.cfg, now: self.now, wall_us: 2000 };
        self.sio.on_packet(slot, Packet::Binary(bytes.to_vec().into()), Via::Transport, &mut env);
    }

    /// What waits for the session, as text (Socket.IO messages without their `4`).
    fn out(&mut self, slot: usize) -> Vec<String> {
        self.sio.sessions[slot]
            .eio
            .take_queue()
            .into_iter()
            .map(|o| match o {
                Out::Text(t) => String::from_utf8(t.into_vec()).unwrap(),
                Out::Binary(b) => format!("<binary {:?}>", &b[..]),
                Out::Msg(m) => format!("<msg {} {}>", m.topic, m.id),
            })
            .collect()
    }

    /// Delivers what was published, as the loop would, to session sinks; returns what
    /// each session got, in polling form.
    fn deliver(&mut self) {
        for m in std::mem::take(&mut self.outbox) {
            let key = TopicKey { kind: m.kind, name: m.topic.clone() };
            let sinks: Vec<SinkRef> = self.hub.subscribers(&key).map(|s| s.sink).collect();
            let msgs = [m.clone()];
            let run = Run::first_of(&msgs);
            for sink in sinks {
                // Sessions in these tests have no WebSocket attached: everything queues.
                assert!(!matches!(self.sio.route(sink, run.messages(), true, 1 << 20), Route::Ws(..)));
            }
        }
    }

    fn poll_payload(&mut self, slot: usize) -> String {
        String::from_utf8(self.sio.sessions[slot].take_poll_payload().to_vec()).unwrap()
    }
}

fn connected(w: &mut World, nsp_packet: &str) -> usize {
    let slot = w.session();
    w.send(slot, nsp_packet);
    let out = w.out(slot);
    assert_eq!(out.len(), 1, "{out:?}");
    slot
}

#[test]
fn connect_answers_with_a_sid_in_each_namespace() {
    let mut w = World::new(Config::default());
    let s = w.session();
    w.send(s, "0");
    w.send(s, "0/custom");
    w.send(s, "0/admin,");
    let out = w.out(s);
    assert!(out[0].starts_with(r#"40{"sid":""#) && out[0].len() == r#"40{"sid":""}"#.len() + 20, "{out:?}");
    assert!(out[1].starts_with(r#"40/custom,{"sid":""#), "{out:?}");
    assert!(out[2].starts_with(r#"40/admin,{"sid":""#), "{out:?}");
    assert_eq!(w.sio.socket_count(), 3);
    // DISCONNECT of one namespace leaves the others and the session.
    w.send(s, "1/custom,");
    assert_eq!(w.sio.socket_count(), 2);
    assert!(w.sio.sessions[s].eio.is_open());
    assert_eq!(w.hub.subscriber_count(&TopicKey::channel("sio:custom")), 0);
    assert_eq!(w.hub.subscriber_count(&TopicKey::channel("sio:admin")), 1);
}

#[test]
fn namespaces_outside_the_patterns_are_refused() {
    let cfg = Config { sio_namespaces: vec!["/".into(), "/custom".into(), "/game-*".into()], ..Config::default() };
    let mut w = World::new(cfg);
    let s = w.session();
    w.send(s, "0/nope,");
    w.send(s, "0/game-1,");
    w.send(s, "0");
    let out = w.out(s);
    assert_eq!(out[0], r#"44/nope,{"message":"Invalid namespace"}"#);
    assert!(out[1].starts_with("40/game-1,"));
    assert!(out[2].starts_with("40{"));
}

#[test]
fn join_relay_and_acks() {
    let mut w = World::new(Config::default());
    let (a, b, c) = (connected(&mut w, "0"), connected(&mut w, "0"), connected(&mut w, "0"));
    w.send(a, r#"21["join","lobby"]"#);
    w.send(b, r#"22["join","lobby"]"#);
    assert_eq!(w.out(a), vec!["431[1]"]);
    assert_eq!(w.out(b), vec!["432[2]"]);
    // A relays to its room, itself excluded: B gets it, C (not in the room) does not.
    w.send(a, r#"27["chat", {"z":1, "a":[1, 2]}]"#);
    assert_eq!(w.out(a), vec!["437[1]"]);
    w.deliver();
    assert_eq!(w.poll_payload(b), r#"42["chat",{"z":1,"a":[1,2]}]"#, "compact, key order kept");
    assert_eq!(w.poll_payload(a), "6", "the sender is excluded");
    assert_eq!(w.poll_payload(c), "6");
    // C, in no room, relays to the whole namespace.
    w.send(c, r#"2["hello"]"#);
    w.deliver();
    assert_eq!(w.poll_payload(a), r#"42["hello"]"#);
    assert_eq!(w.poll_payload(b), r#"42["hello"]"#);
    assert_eq!(w.poll_payload(c), "6");
    w.send(b, r#"23["leave","lobby"]"#);
    assert_eq!(w.out(b), vec!["433[1]"]);
}

#[test]
fn the_relayed_message_is_a_hub_message_for_every_transport() {
    let mut w = World::new(Config::default());
    let a = connected(&mut w, "0/chat,");
    w.send(a, r#"2/chat,["join","lobby"]"#);
    w.send(a, r#"2/chat,["msg","hi"]"#);
    let m = w.outbox.last().unwrap().clone();
    assert_eq!(&*m.topic, "sio:chat:lobby");
    assert_eq!(m.event.as_deref(), Some("msg"));
    assert_eq!(&m.data[..], b"hi", "SSE and WebSocket subscribers see the single string argument");
    assert_eq!(&m.encoded(Encoding::SioPoll)[..], b"\x1e42/chat,[\"msg\",\"hi\"]");
}

#[test]
fn binary_events_wait_for_their_attachments() {
    let mut w = World::new(Config::default());
    let (a, b) = (connected(&mut w, "0"), connected(&mut w, "0"));
    w.send(a, r#"51-["file",{"_placeholder":true,"num":0}]"#);
    assert!(w.outbox.is_empty(), "nothing until the attachment");
    w.send_binary(a, &[1, 2, 3]);
    w.deliver();
    assert_eq!(w.poll_payload(b), "451-[\"file\",{\"_placeholder\":true,\"num\":0}]\x1ebAQID");
    // A text packet where an attachment is expected ends the session.
    w.send(a, r#"51-["file",{"_placeholder":true,"num":0}]"#);
    w.send(a, r#"2["x"]"#);
    assert_eq!(w.sio.sessions[a].eio.closed, Some(CloseReason::ParseError));
}

#[test]
fn malformed_packets_close_the_session() {
    for bad in ["7", r#"2{"a":1}"#, "2abc[\"x\"]", r#"2["x""#, r#"2/other,["x"]"#, r#"4{"message":"x"}"#] {
        let mut w = World::new(Config::default());
        let s = connected(&mut w, "0");
        w.send(s, bad);
        assert_eq!(w.sio.sessions[s].eio.closed, Some(CloseReason::ParseError), "{bad:?}");
    }
}

#[test]
fn no_connect_within_the_timeout_closes_the_session() {
    let cfg = Config { sio_connect_timeout: Duration::from_secs(2), ..Config::default() };
    let mut w = World::new(cfg);
    let s = w.session();
    let deadline = w.sio.sessions[s].deadline().unwrap();
    assert_eq!(deadline, w.now + Duration::from_secs(2), "before the first ping (25 s)");
    w.sio.on_timeout(s, deadline, &w.cfg.clone());
    assert_eq!(w.sio.sessions[s].eio.closed, Some(CloseReason::ConnectTimeout));
    // A session that connected in time stays.
    let s = connected(&mut w, "0");
    w.sio.on_timeout(s, w.now + Duration::from_secs(3), &w.cfg.clone());
    assert!(w.sio.sessions[s].eio.is_open());
}

#[test]
fn users_get_messages_in_their_namespace() {
    let mut w = World::new(Config::default());
    let s = w.session();
    w.send(s, r#"0/chat,{"user":"alice"}"#);
    w.out(s);
    assert_eq!(w.hub.users_online(), 1);
    let m = w.hub.publish(&TopicKey::user("alice"), None, b"{\"from\":\"bob\"}"[..].into(), w.now, 3000).unwrap();
    w.outbox.push(m);
    w.deliver();
    assert_eq!(w.out(s), vec![r#"42/chat,["message",{"from":"bob"}]"#]);
    let other = w.session();
    w.send(other, r#"0{"user":"a/b"}"#);
    assert!(w.out(other)[0].starts_with("44{"), "an invalid user name is refused");
    w.sio.close(s, CloseReason::ClientClose);
    w.sio.remove(s, &mut w.hub, w.now);
    assert_eq!(w.hub.users_online(), 0, "the user's subscription went with the session");
}

#[test]
fn the_publish_token_guards_joining_and_relaying() {
    let cfg = Config { publish_token: Some("t0k".into()), ..Config::default() };
    let mut w = World::new(cfg);
    let (a, b) = (connected(&mut w, "0"), connected(&mut w, r#"0{"token":"t0k"}"#));
    w.send(a, r#"21["join","x"]"#);
    w.send(a, r#"22["msg","x"]"#);
    let out = w.out(a);
    assert!(out[0].starts_with("431[{\"error\":") && out[1].starts_with("432[{\"error\":"), "{out:?}");
    assert!(w.outbox.is_empty());
    w.send(b, r#"23["join","x"]"#);
    assert_eq!(w.out(b), vec!["433[1]"]);
}

/// An idle session's memory is mostly this struct (plus its connection): a field that grows
/// it past the budget belongs in a box (the target is 1 KiB for a connected, idle session).
#[test]
fn a_session_fits_its_memory_budget() {
    assert!(std::mem::size_of::<Session>() <= 256, "Session is {} bytes", std::mem::size_of::<Session>());
    assert!(std::mem::size_of::<NsSocket>() <= 104, "NsSocket is {} bytes", std::mem::size_of::<NsSocket>());
}

#[test]
fn a_dropped_socket_is_recovered_with_what_it_missed() {
    let cfg = Config { sio_recovery: Some(Duration::from_secs(60)), ..Config::default() };
    let mut w = World::new(cfg);
    w.sio = SioServer::new(&w.cfg);
    let a = w.session();
    w.send(a, "0");
    let reply: serde_json::Value = serde_json::from_str(w.out(a)[0].strip_prefix("40").unwrap()).unwrap();
    let (sid, pid) = (reply["sid"].as_str().unwrap().to_string(), reply["pid"].as_str().unwrap().to_string());
    w.send(a, r#"21["join","r1"]"#);
    w.out(a);
    let room = TopicKey::channel("sio::r1");
    let seen = w.hub.publish(&room, Some("n"), b"1"[..].into(), w.now, 0).unwrap();
    assert_eq!(&seen.encoded(Encoding::SioPollOffset)[..], format!("\x1e42[\"n\",1,\"{}\"]", seen.id).as_bytes(), "the offset is the last argument");
    // The connection drops; two more are published meanwhile.
    w.sio.close(a, CloseReason::TransportClose);
    w.sio.remove(a, &mut w.hub, w.now);
    assert_eq!(w.sio.recoverable_count(), 1);
    let m2 = w.hub.publish(&room, Some("n"), b"2"[..].into(), w.now, 0).unwrap();
    let m3 = w.hub.publish(&room, Some("n"), b"3"[..].into(), w.now, 0).unwrap();
    let b = w.session();
    w.send(b, &format!(r#"0{{"pid":"{pid}","offset":"{}"}}"#, seen.id));
    let out = w.out(b);
    assert_eq!(out[0], format!(r#"40{{"sid":"{sid}","pid":"{pid}"}}"#), "the same socket again");
    assert_eq!(out[1..], [format!("<msg sio::r1 {}>", m2.id), format!("<msg sio::r1 {}>", m3.id)], "the two it missed, in order");
    assert_eq!(w.hub.subscriber_count(&room), 1, "back in its room");
    assert_eq!(w.sio.recoverable_count(), 0);
    // Live messages after the recovery come once (the replay ended where live delivery starts).
    let m4 = w.hub.publish(&room, Some("n"), b"4"[..].into(), w.now, 0).unwrap();
    w.outbox.push(m4);
    w.deliver();
    assert_eq!(w.poll_payload(b), format!("42[\"n\",4,\"{}\"]", w.hub.last_id()));
    // A pid nobody kept (or a client that closed on purpose): a new socket.
    let c = w.session();
    w.send(c, r#"0{"pid":"AAAAAAAAAAAAAAAAAAAA","offset":"1"}"#);
    let reply: serde_json::Value = serde_json::from_str(w.out(c)[0].strip_prefix("40").unwrap()).unwrap();
    assert_ne!(reply["sid"], sid.as_str());
}

#[test]
fn offsets_stay_ours_for_events_that_are_not_hub_messages() {
    let cfg = Config { sio_recovery: Some(Duration::from_secs(60)), ..Config::default() };
    let mut w = World::new(cfg);
    w.sio = SioServer::new(&w.cfg);
    let a = w.session();
    w.send(a, r#"0{"user":"alice"}"#);
    let reply: serde_json::Value = serde_json::from_str(w.out(a)[0].strip_prefix("40").unwrap()).unwrap();
    let m = w.hub.publish(&TopicKey::user("alice"), None, b"psst"[..].into(), w.now, 0).unwrap();
    w.outbox.push(m.clone());
    w.deliver();
    assert_eq!(w.out(a), vec![format!("42[\"message\",\"psst\",\"{}\"]", m.id)], "a user's message carries its id too");
    assert!(w.sio.emit_to_socket(reply["sid"].as_str().unwrap(), "/", r#"["direct","text"]"#));
    assert_eq!(w.out(a), vec![format!("42[\"direct\",\"text\",\"{}\"]", m.id)], "the offset of the last hub message before it");
}

#[test]
fn attachments_are_held_within_max_payload() {
    let cfg = Config { sio_max_payload: 200, ..Config::default() };
    let mut w = World::new(cfg);
    let a = connected(&mut w, "0");
    // The packet's own text is 101 bytes.
    w.send(a, r#"53-["f",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1},{"_placeholder":true,"num":2}]"#);
    w.send_binary(a, &[0; 40]);
    w.send_binary(a, &[0; 40]);
    assert!(w.sio.sessions[a].eio.is_open());
    w.send_binary(a, &[0; 40]);
    assert_eq!(w.sio.sessions[a].eio.closed, Some(CloseReason::ParseError), "one packet and its attachments are one message");
}

#[test]
fn reserved_event_names_never_reach_clients() {
    let mut w = World::new(Config::default());
    let a = connected(&mut w, "0");
    let m = w.hub.publish(&TopicKey::channel("sio:"), Some("disconnect"), b"x"[..].into(), w.now, 0).unwrap();
    w.outbox.push(m);
    w.deliver();
    assert_eq!(w.poll_payload(a), r#"42["message","x"]"#);
}
