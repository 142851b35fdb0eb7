//! `GET /metrics`: the Prometheus text exposition format, checked line by line (every sample
//! belongs to a family announced by HELP and TYPE, counters end in `_total`, histogram
//! buckets are cumulative), with values that follow what the test did.

mod support;

use std::collections::HashMap;

use support::pubsub::*;
use support::Server;

/// Parses the exposition text strictly; returns samples by `name{labels}` and types by family.
fn parse(text: &str) -> (HashMap<String, f64>, HashMap<String, String>) {
    let (mut samples, mut types, mut helped) = (HashMap::new(), HashMap::new(), Vec::new());
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or_else(|| panic!("HELP without text: {line}"));
            assert!(!help.is_empty());
            helped.push(name.to_string());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            assert_eq!(helped.last().map(String::as_str), Some(name), "TYPE right after its HELP: {line}");
            assert!(types.insert(name.to_string(), kind.to_string()).is_none(), "family announced twice: {name}");
        } else {
            let (key, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample: {line:?}"));
            let name = key.split('{').next().unwrap();
            assert!(name.starts_with("pushwire_") && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{name}");
            let family = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s).filter(|f| types.get(*f).is_some_and(|t| t == "histogram"))).unwrap_or(name);
            let kind = types.get(family).unwrap_or_else(|| panic!("sample before its TYPE: {line}"));
            assert_eq!(kind == "counter", family.ends_with("_total"), "counters, and only they, end in _total: {family}");
            if let Some(labels) = key.strip_prefix(name) {
                if !labels.is_empty() {
                    assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
                    for pair in labels[1..labels.len() - 1].split(',') {
                        let (k, v) = pair.split_once('=').unwrap();
                        assert!(k.bytes().all(|b| b.is_ascii_lowercase()) && v.starts_with('"') && v.ends_with('"'), "{line}");
                    }
                }
            }
            let v: f64 = value.parse().unwrap_or_else(|_| panic!("value {value:?} in {line}"));
            assert!(samples.insert(key.to_string(), v).is_none(), "sample twice: {key}");
        }
    }
    (samples, types)
}

#[test]
fn metrics_follow_what_happened_in_the_exposition_format() {
    let server = Server::start(&["--history", "2"]);
    let mut sse = open_sse(&server, "/channels/m", "");
    let mut ws = ws_open(&server, "/channels/m", "");
    for i in 0..3 {
        publish(&server, "m", &format!("x{i}"));
    }
    sse.messages(3);
    for _ in 0..3 {
        ws_text(&mut ws);
    }
    let r = server.get("/metrics");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    let (s, types) = parse(&r.text());
    assert_eq!(s["pushwire_messages_published_total"], 3.0);
    assert_eq!(s["pushwire_messages_delivered_total"], 6.0);
    assert_eq!(s["pushwire_connections{transport=\"sse\"}"], 1.0);
    assert_eq!(s["pushwire_connections{transport=\"websocket\"}"], 1.0);
    assert_eq!(s["pushwire_subscriptions{transport=\"sse\"}"], 1.0);
    assert_eq!(s["pushwire_channels"], 1.0);
    assert_eq!(s["pushwire_history_messages"], 2.0, "--history 2");
    assert_eq!(s["pushwire_history_evictions_total"], 1.0, "the third publish pushed the first out");
    assert!(s["pushwire_sent_bytes_total"] > 0.0 && s["pushwire_received_bytes_total"] > 0.0);
    assert_eq!(types["pushwire_delivery_latency_seconds"], "histogram");
    // Every write that drained a subscriber's output counted once: at least one per
    // subscriber, at most one per delivery.
    let count = s["pushwire_delivery_latency_seconds_count"];
    assert!((2.0..=6.0).contains(&count), "{count}");
    assert_eq!(s["pushwire_delivery_latency_seconds_bucket{le=\"+Inf\"}"], count);
    let mut buckets: Vec<(f64, f64)> = s
        .iter()
        .filter_map(|(k, v)| k.strip_prefix("pushwire_delivery_latency_seconds_bucket{le=\"")?.strip_suffix("\"}")?.parse::<f64>().ok().map(|le| (le, *v)))
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(buckets.len() >= 10 && buckets.windows(2).all(|w| w[0].1 <= w[1].1), "cumulative: {buckets:?}");
    assert!(s["pushwire_delivery_latency_seconds_sum"] < 1.0, "loopback deliveries take well under a second");
    assert!(!s.keys().any(|k| k.starts_with("pushwire_cluster")), "no cluster figures without --redis");
}

/// The dashboard's system channel: figures once a second while followed (busiest channels
/// by messages in the last second), and nobody else may publish there.
#[test]
fn the_dashboard_channel_carries_the_servers_figures() {
    let server = Server::start(&[]);
    let mut dash = open_sse(&server, "/channels/pushwire:stats", "");
    let first: serde_json::Value = serde_json::from_str(&dash.message().1).unwrap();
    assert_eq!(first["connections"]["sse"], 1, "{first}");
    let _sub = open_sse(&server, "/channels/busy", "");
    for i in 0..5 {
        publish(&server, "busy", &format!("{i}"));
    }
    // Within a few updates the channel shows up with its messages of each second: 5 in all
    // (the publishes may straddle two updates).
    let (mut counted, mut last) = (0, serde_json::Value::Null);
    for _ in 0..4 {
        let f: serde_json::Value = serde_json::from_str(&dash.message().1).unwrap();
        if let Some(b) = f["busiest"].as_array().and_then(|a| a.iter().find(|c| c["channel"] == "busy")) {
            assert_eq!(b["subscribers"], 1, "{f}");
            counted += b["messages"].as_u64().unwrap();
        }
        last = f;
        if counted >= 5 {
            break;
        }
    }
    assert_eq!(counted, 5, "busy's messages, each counted in the second it came: {last}");
    assert!(last["published"].as_u64().unwrap() >= 5 && last["channels"].as_u64().unwrap() >= 2, "{last}");
    assert_json_error(&post(&server, "/channels/pushwire:stats", b"fake"), 403);
    let mut ctl = ws_open(&server, "/ws", "");
    ctl_send(&mut ctl, &serde_json::json!({"op": "publish", "channel": "pushwire:stats", "data": "fake"}));
    assert_ctl_error(&ctl_recv(&mut ctl), "a publish on the system channel");
}
