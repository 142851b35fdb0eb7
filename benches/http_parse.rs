//! Request parsing throughput (bytes/s): a short request as `wrk` sends it, a browser-sized
//! request, a pipelined burst through the per-connection reader, and a chunked body.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pushwire::proto::http1::{parse_head, ChunkedDecoder, HeadLimits, ReadEvent, ReaderLimits, RequestReader};

const LIMITS: HeadLimits = HeadLimits { max_head_bytes: 16384, max_headers: 100 };

const WRK: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n";
const BROWSER: &[u8] = b"GET /channels/news?since=42 HTTP/1.1\r\n\
Host: localhost:8000\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36\r\n\
Accept: text/event-stream\r\n\
Accept-Language: en-US,en;q=0.9\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Cache-Control: no-cache\r\n\
Connection: keep-alive\r\n\
Cookie: session=0123456789abcdef0123456789abcdef; theme=dark\r\n\
Referer: http://localhost:8000/chat.html\r\n\
Sec-Fetch-Dest: empty\r\nSec-Fetch-Mode: cors\r\nSec-Fetch-Site: same-origin\r\n\r\n";

fn heads(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse_head");
    for (name, req) in [("wrk", WRK), ("browser", BROWSER)] {
        g.throughput(Throughput::Bytes(req.len() as u64));
        g.bench_function(name, |b| b.iter(|| parse_head(std::hint::black_box(req), LIMITS).unwrap().unwrap()));
    }
    g.finish();
}

fn pipelined(c: &mut Criterion) {
    let burst: Vec<u8> = WRK.repeat(64);
    let limits = ReaderLimits { head: LIMITS, max_body_bytes: 1 << 20 };
    let mut g = c.benchmark_group("reader");
    g.throughput(Throughput::Bytes(burst.len() as u64));
    g.bench_function("pipelined_64", |b| {
        b.iter(|| {
            let mut r = RequestReader::new(limits);
            let mut pos = 0;
            let mut n = 0;
            while pos < burst.len() {
                let (used, ev) = r.advance(&burst[pos..]).unwrap();
                pos += used;
                if let Some(ReadEvent::Request(_)) = ev {
                    n += 1;
                }
            }
            assert_eq!(n, 64);
        })
    });
    g.finish();
}

fn chunked(c: &mut Criterion) {
    let mut body = Vec::new();
    for _ in 0..64 {
        body.extend_from_slice(b"400\r\n");
        body.extend_from_slice(&[b'x'; 1024]);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    let mut g = c.benchmark_group("chunked");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("64x1KiB", |b| {
        b.iter(|| {
            let mut d = ChunkedDecoder::new(1 << 20);
            let mut out = Vec::with_capacity(65536);
            d.decode(&body, &mut out).unwrap();
            assert!(d.is_done());
        })
    });
    g.finish();
}

criterion_group!(benches, heads, pipelined, chunked);
criterion_main!(benches);
