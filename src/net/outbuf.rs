//! A connection's pending output: a queue of chunks written with `send` or `writev`.
//!
//! Small writes (response heads, short bodies) are coalesced into one owned chunk; large
//! static bodies and every shared message encoding are queued by reference (`Static`,
//! `Shared`), so a message fanned out to many connections is one allocation plus a pointer
//! per recipient.
//!
//! An idle connection's `OutBuf` is one null pointer: the queue (its chunks, its coalescing
//! buffer, and the two instants that only mean something while output waits) is boxed, made
//! when output is first queued and given back once it has drained. Given back to a small
//! per-thread pool, not to the allocator: an echo or a reply takes a queue, fills it, writes
//! it and returns it within one wake-up, so the next connection's reply reuses the same
//! memory (the "cork buffer" of uWebSockets, kept per connection only while it is needed).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::rc::Rc;
use std::time::Instant;

use crate::proto::http1::Body;

/// Owned bodies up to this size are copied into the coalescing chunk (one `writev` entry
/// fewer); larger ones are queued as they are. Shared message encodings are never copied.
const COALESCE_MAX: usize = 4096;
/// First capacity of the coalescing chunk: a response head, or a pipelined batch of small
/// echo replies, without regrowing.
const TAIL_CAPACITY: usize = 1024;
/// `writev` entries per call (Linux allows 1024). A subscriber that fell a window of
/// messages behind gets them all in one call: a fan-out queues each run of messages (or
/// each message published alone) as its own entry.
const MAX_IOV: usize = 128;
/// Drained queues kept for reuse, per thread. What one turn of the loop writes and drains
/// (replies and echoes, written connection after connection) needs one or two; a few more
/// cover a burst. Bounded, so the pool costs at most a few tens of KiB however many
/// connections once had output.
const POOL: usize = 16;
/// A drained queue is pooled only if its memory is small (a queue that held a long backlog
/// goes back to the allocator).
const POOL_MAX_CHUNKS: usize = 16;
const POOL_MAX_TAIL: usize = 4 * TAIL_CAPACITY;

#[derive(Debug)]
enum Chunk {
    Owned(Vec<u8>),
    Static(&'static [u8]),
    Shared(Rc<[u8]>),
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Owned(v) => v,
            Chunk::Static(s) => s,
            Chunk::Shared(r) => r,
        }
    }
}

/// The queue behind a busy connection's output.
#[derive(Debug, Default)]
struct Queue {
    chunks: VecDeque<Chunk>,
    /// Bytes of the front chunk already written. (This and `len` are u32: a queue stays far
    /// below 4 GiB, as `--max-output` is capped at 1 GiB and input stops while output waits.)
    front_off: u32,
    /// Unwritten bytes in total.
    len: u32,
    /// A written-out coalescing chunk, emptied, for the next one (no allocation per reply).
    spare: Vec<u8>,
    /// Since when output has waited without moving (`--write-timeout` runs from here).
    stuck_since: Option<Instant>,
    /// When the oldest hub message in the output was published (the publish-to-write
    /// latency `/metrics` shows, recorded when the output drains).
    oldest_push: Option<Instant>,
}

thread_local! {
    static SPARE: RefCell<Vec<Box<Queue>>> = const { RefCell::new(Vec::new()) };
}

#[derive(Debug, Default)]
pub struct OutBuf {
    q: Option<Box<Queue>>,
}

/// What a flush achieved.
#[derive(Debug, PartialEq, Eq)]
pub enum Flush {
    /// Everything was written.
    Drained,
    /// The socket is full; wait for WRITABLE.
    Blocked,
}

impl OutBuf {
    pub fn len(&self) -> usize {
        self.q.as_ref().map_or(0, |q| q.len as usize)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Unwritten bytes plus the queue's own bookkeeping, for the caps: a subscriber behind by
    /// many tiny shared messages holds a queue entry per message (or run), not only their
    /// bytes.
    pub fn footprint(&self) -> usize {
        self.q.as_ref().map_or(0, |q| q.len as usize + q.chunks.len() * std::mem::size_of::<Chunk>())
    }

    /// Since when the output has waited without moving, if it waits.
    pub fn stuck_since(&self) -> Option<Instant> {
        self.q.as_ref().and_then(|q| q.stuck_since)
    }

    pub fn set_stuck_since(&mut self, at: Instant) {
        self.queue().stuck_since = Some(at);
    }

    /// Notes that a hub message published at `at` was queued (the oldest one counts).
    pub fn note_push(&mut self, at: Instant) {
        self.queue().oldest_push.get_or_insert(at);
    }

    /// Once the output has drained: when the oldest hub message it held was published (if it
    /// held any), and the queue goes back to the pool. An idle connection holds nothing.
    pub fn release(&mut self) -> Option<Instant> {
        let mut q = self.q.take()?;
        debug_assert_eq!(q.len, 0, "released with output left");
        let oldest = q.oldest_push.take();
        q.stuck_since = None;
        q.chunks.clear();
        q.front_off = 0;
        if q.chunks.capacity() <= POOL_MAX_CHUNKS && q.spare.capacity() <= POOL_MAX_TAIL {
            SPARE.with(|p| {
                let mut p = p.borrow_mut();
                if p.len() < POOL {
                    p.push(q);
                }
            });
        }
        oldest
    }

    fn queue(&mut self) -> &mut Queue {
        self.q.get_or_insert_with(|| SPARE.with(|p| p.borrow_mut().pop()).unwrap_or_default())
    }

    /// Appends by formatting into the owned tail chunk (e.g. `write_head`).
    pub fn with_tail(&mut self, f: impl FnOnce(&mut Vec<u8>)) {
        let q = self.queue();
        if !matches!(q.chunks.back(), Some(Chunk::Owned(_))) {
            // A reply between shared frames (a `/ws` ack) is small: only a fresh queue gets
            // the batch-sized chunk.
            let v = if q.spare.capacity() > 0 {
                std::mem::take(&mut q.spare)
            } else {
                Vec::with_capacity(if q.chunks.is_empty() { TAIL_CAPACITY } else { 256 })
            };
            q.chunks.push_back(Chunk::Owned(v));
        }
        let Some(Chunk::Owned(v)) = q.chunks.back_mut() else { unreachable!() };
        let before = v.len();
        f(v);
        q.len += (v.len() - before) as u32;
    }

    pub fn extend(&mut self, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.with_tail(|v| v.extend_from_slice(bytes));
        }
    }

    fn push_chunk(&mut self, c: Chunk) {
        let q = self.queue();
        q.len += c.bytes().len() as u32;
        q.chunks.push_back(c);
    }

    /// Queues a message encoding by reference, whatever its size: a message fanned out to
    /// many connections is encoded once and never copied per recipient in user space. The
    /// only copy is the kernel's, from the shared bytes into each socket, within `writev`.
    pub fn push_shared(&mut self, bytes: Rc<[u8]>) {
        if !bytes.is_empty() {
            self.push_chunk(Chunk::Shared(bytes));
        }
    }

    /// Queues static bytes by reference, however short (separators between shared chunks:
    /// a copy into a fresh owned chunk would cost an allocation each).
    pub fn push_static(&mut self, bytes: &'static [u8]) {
        if !bytes.is_empty() {
            self.push_chunk(Chunk::Static(bytes));
        }
    }

    pub fn push_owned(&mut self, bytes: Vec<u8>) {
        if bytes.len() <= COALESCE_MAX {
            self.extend(&bytes);
        } else {
            self.push_chunk(Chunk::Owned(bytes));
        }
    }

    pub fn push_body(&mut self, body: Body) {
        match body {
            Body::Empty => {}
            Body::Static(s) if s.len() <= COALESCE_MAX => self.extend(s),
            Body::Static(s) => self.push_chunk(Chunk::Static(s)),
            Body::Owned(v) => self.push_owned(v),
            Body::Shared(r) => self.push_shared(r),
        }
    }

    /// Drops every chunk not yet started, keeping a partly written front chunk so the
    /// stream stays well-formed (a frame is never cut in half).
    pub fn drop_unstarted(&mut self) {
        let Some(q) = self.q.as_mut() else { return };
        let keep = usize::from(q.front_off > 0);
        q.chunks.truncate(keep);
        // The queue of a cut-off subscriber may have grown large: give it back now.
        q.chunks.shrink_to_fit();
        q.len = q.chunks.front().map_or(0, |c| (c.bytes().len() - q.front_off as usize) as u32);
        if keep == 0 {
            q.front_off = 0;
        }
    }

    /// Writes until the queue is empty or the socket would block. Returns whether it
    /// drained (`written` counts the bytes). Errors other than `WouldBlock`/`Interrupted`
    /// are the caller's to treat as a dead connection. A drained queue stays allocated until
    /// [`OutBuf::release`], which hands back what it knew.
    pub fn write_to<W: Write>(&mut self, w: &mut W, written: &mut u64) -> io::Result<Flush> {
        let Some(q) = self.q.as_mut() else { return Ok(Flush::Drained) };
        while q.len > 0 {
            let mut offered = 0;
            let res = if q.chunks.len() == 1 {
                // One buffer (an echo, a reply, one shared frame): `send` rather than
                // `writev`, which costs the kernel an iovec import and the vfs layer for
                // nothing (and us the iovec array).
                offered = q.len as usize;
                w.write(&q.chunks[0].bytes()[q.front_off as usize..])
            } else {
                let mut iov: [IoSlice<'_>; MAX_IOV] = [IoSlice::new(&[]); MAX_IOV];
                let mut n_iov = 0;
                for (i, c) in q.chunks.iter().take(MAX_IOV).enumerate() {
                    let b = if i == 0 { &c.bytes()[q.front_off as usize..] } else { c.bytes() };
                    iov[n_iov] = IoSlice::new(b);
                    n_iov += 1;
                    offered += b.len();
                }
                w.write_vectored(&iov[..n_iov])
            };
            match res {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    *written += n as u64;
                    q.consume(n);
                    if n < offered {
                        // A short write means the socket buffer is full: asking again would
                        // only earn EAGAIN. Edge-triggered WRITABLE will tell us when to resume.
                        return Ok(if q.len == 0 { Flush::Drained } else { Flush::Blocked });
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Flush::Blocked),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Flush::Drained)
    }
}

impl Queue {
    fn consume(&mut self, mut n: usize) {
        self.len -= n as u32;
        while n > 0 {
            let front_len = self.chunks.front().map_or(0, |c| c.bytes().len()) - self.front_off as usize;
            if n >= front_len {
                n -= front_len;
                if let Some(Chunk::Owned(mut v)) = self.chunks.pop_front() {
                    if self.spare.capacity() == 0 && v.capacity() <= POOL_MAX_TAIL {
                        v.clear();
                        self.spare = v;
                    }
                }
                self.front_off = 0;
            } else {
                self.front_off += n as u32;
                n = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that accepts at most `cap` bytes per call and `budget` in total.
    struct Trickle {
        got: Vec<u8>,
        cap: usize,
        budget: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            if self.budget == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = b.len().min(self.cap).min(self.budget);
            self.got.extend_from_slice(&b[..n]);
            self.budget -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn writes_everything_in_order_across_short_writes() {
        let mut o = OutBuf::default();
        let big: Rc<[u8]> = (0..10_000u32).map(|i| i as u8).collect::<Vec<_>>().into();
        o.extend(b"head:");
        o.push_shared(big.clone());
        o.push_body(Body::Static(b"tail"));
        o.push_owned(vec![7u8; 5000]);
        let total = o.len();
        let mut want = b"head:".to_vec();
        want.extend_from_slice(&big);
        want.extend_from_slice(b"tail");
        want.extend_from_slice(&[7u8; 5000]);
        assert_eq!(total, want.len());

        let mut w = Trickle { got: Vec::new(), cap: 777, budget: 3000 };
        let mut written = 0;
        assert_eq!(o.write_to(&mut w, &mut written).unwrap(), Flush::Blocked);
        w.budget = usize::MAX;
        while o.write_to(&mut w, &mut written).unwrap() == Flush::Blocked {}
        assert_eq!(w.got, want);
        assert_eq!(written as usize, total);
        assert!(o.is_empty());
        // Drained: released, an idle connection holds no queue.
        assert_eq!(o.release(), None);
        assert!(o.q.is_none());
    }

    /// Issue #3: a frame sent to many connections is shared, never copied per recipient,
    /// however small it is.
    #[test]
    fn shared_encodings_are_queued_by_reference() {
        let frame: Rc<[u8]> = Rc::from(&b"\x81\x05hello"[..]);
        let mut outs: Vec<OutBuf> = (0..100).map(|_| OutBuf::default()).collect();
        for o in &mut outs {
            o.extend(b"head");
            o.push_shared(frame.clone());
        }
        assert_eq!(Rc::strong_count(&frame), 101);
        // The caps see the queue entries, not only the bytes.
        assert!(outs[0].footprint() >= outs[0].len() + 2 * std::mem::size_of::<Chunk>());
        for o in &mut outs {
            let Some(Chunk::Shared(r)) = o.q.as_ref().unwrap().chunks.back() else { panic!("not shared: {:?}", o.q) };
            assert!(Rc::ptr_eq(r, &frame));
            let mut w: Vec<u8> = Vec::new(); // takes every writev entry at once
            let mut written = 0;
            assert_eq!(o.write_to(&mut w, &mut written).unwrap(), Flush::Drained);
            assert_eq!(w, b"head\x81\x05hello");
            o.release();
        }
        // Written and drained: every connection let go of its reference.
        assert_eq!(Rc::strong_count(&frame), 1);
    }

    /// Issue 14: an idle connection's output is one null pointer; a drained queue goes back
    /// to the thread's pool, and the next connection's reply takes it (with its coalescing
    /// buffer) instead of allocating.
    #[test]
    fn a_drained_queue_is_released_and_reused() {
        let mut a = OutBuf::default();
        assert!(a.q.is_none());
        a.extend(b"reply");
        let first: *const Queue = &**a.q.as_ref().unwrap();
        let mut w: Vec<u8> = Vec::new();
        assert_eq!(a.write_to(&mut w, &mut 0).unwrap(), Flush::Drained);
        assert_eq!(a.release(), None);
        assert!(a.q.is_none());
        let mut b = OutBuf::default();
        b.extend(b"next");
        let q = b.q.as_ref().unwrap();
        assert!(std::ptr::eq(&**q, first), "the pooled queue is reused");
        let Some(Chunk::Owned(v)) = q.chunks.back() else { panic!("no tail") };
        assert!(v.capacity() >= TAIL_CAPACITY, "with its coalescing buffer");
        // What a queue knew while busy goes with it: the push instant is handed back once.
        let t = Instant::now();
        b.note_push(t);
        b.set_stuck_since(t);
        assert_eq!(b.stuck_since(), Some(t));
        b.write_to(&mut w, &mut 0).unwrap();
        assert_eq!(b.release(), Some(t));
        assert_eq!(b.stuck_since(), None);
    }
}
