//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/*`) through the fuzz targets'
//! code, so every `cargo test` re-checks every input the fuzzers ever found interesting.

use std::path::Path;

fn replay(target: &str, f: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_file() {
            let data = std::fs::read(&path).unwrap();
            f(&data);
            n += 1;
        }
    }
    assert!(n > 0, "no seeds in {}", dir.display());
}

#[test]
fn http_head_corpus() {
    replay("http_head", pushwire::fuzzing::http_head);
}

#[test]
fn chunked_corpus() {
    replay("chunked", pushwire::fuzzing::chunked);
}

#[test]
fn ws_assembler_corpus() {
    replay("ws_assembler", pushwire::fuzzing::ws_assembler);
}

#[test]
fn sse_roundtrip_corpus() {
    replay("sse_roundtrip", pushwire::fuzzing::sse_roundtrip);
}

#[test]
fn engineio_payload_corpus() {
    replay("engineio_payload", pushwire::fuzzing::engineio_payload);
}

#[test]
fn socketio_packet_corpus() {
    replay("socketio_packet", pushwire::fuzzing::socketio_packet);
}

#[test]
fn resp_reader_corpus() {
    replay("resp_reader", pushwire::fuzzing::resp_reader);
}

#[test]
fn cluster_body_corpus() {
    replay("cluster_body", pushwire::fuzzing::cluster_body);
}

#[test]
fn ws_extensions_corpus() {
    replay("ws_extensions", pushwire::fuzzing::ws_extensions);
}

#[test]
fn ws_inflate_corpus() {
    replay("ws_inflate", pushwire::fuzzing::ws_inflate);
}
