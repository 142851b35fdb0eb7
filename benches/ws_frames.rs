//! WebSocket codec micro-benchmarks, in bytes/s: header decode, server frame encode, masking
//! (the word-at-a-time path against the RFC's byte loop), and the assembler on a stream of
//! small masked text frames, the shape of an echo or chat load.
//!
//! `cargo bench --bench ws_frames` (add `-- --warm-up-time 1 --measurement-time 2` for a
//! quick run).

use criterion::{black_box, criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use pushwire::proto::ws::{
    apply_mask, apply_mask_reference, encode_server_frame, Assembler, FrameHeader, OpCode, WsEvent,
};

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
const SIZES: [(&str, usize); 3] = [("32B", 32), ("1KiB", 1024), ("64KiB", 64 * 1024)];

/// A masked client frame, as a browser sends it.
fn client_frame(opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let h = FrameHeader { fin: true, rsv: 0, opcode, mask: Some(KEY), payload_len: payload.len() as u64 };
    let mut out = Vec::new();
    h.encode(&mut out);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], KEY, 0);
    out
}

fn header_decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("ws/header_decode");
    for (name, len) in SIZES {
        let frame = client_frame(OpCode::Binary, &vec![0; len]);
        let head_len = FrameHeader::decode(&frame).unwrap().unwrap().1;
        g.throughput(Throughput::Bytes(head_len as u64));
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| FrameHeader::decode(black_box(&frame[..])).unwrap())
        });
    }
    g.finish();
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("ws/encode_server_frame");
    for (name, len) in SIZES {
        let payload = vec![b'x'; len];
        let mut out = Vec::with_capacity(len + 10);
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                out.clear();
                encode_server_frame(&mut out, OpCode::Text, black_box(&payload));
                black_box(out.len())
            })
        });
    }
    g.finish();
}

fn mask(c: &mut Criterion) {
    let mut g = c.benchmark_group("ws/mask");
    for (name, len) in SIZES {
        let mut buf = vec![0x5A; len];
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_function(BenchmarkId::new("fast", name), |b| {
            b.iter(|| apply_mask(black_box(&mut buf), black_box(KEY), black_box(1)))
        });
        g.bench_function(BenchmarkId::new("reference", name), |b| {
            b.iter(|| apply_mask_reference(black_box(&mut buf), black_box(KEY), black_box(1)))
        });
    }
    g.finish();
}

fn assembler(c: &mut Criterion) {
    let mut g = c.benchmark_group("ws/assembler");
    // (name, frame, frames in the stream)
    let cases = [
        ("1000x32B text", client_frame(OpCode::Text, &[b'a'; 32]), 1000),
        ("1000x1KiB text", client_frame(OpCode::Text, &"é".repeat(512).into_bytes()), 1000),
        ("16x64KiB binary", client_frame(OpCode::Binary, &vec![7; 64 * 1024]), 16),
    ];
    for (name, frame, n) in cases {
        let stream = frame.repeat(n);
        g.throughput(Throughput::Bytes(stream.len() as u64));
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            // A fresh copy each time: whole frames are unmasked where they lie, as the
            // server's read buffer is.
            b.iter_batched_ref(|| stream.clone(), |stream| {
                let mut a = Assembler::new(16 << 20);
                let mut pos = 0;
                let mut messages = 0;
                while pos < stream.len() {
                    let (used, ev) = a.advance(&mut stream[pos..]).unwrap();
                    pos += used;
                    if let Some(WsEvent::Text(m) | WsEvent::Binary(m)) = ev {
                        messages += 1;
                        black_box(m);
                    }
                }
                assert_eq!(messages, n);
            }, BatchSize::LargeInput)
        });
    }
    g.finish();
}

criterion_group!(benches, header_decode, encode, mask, assembler);
criterion_main!(benches);
