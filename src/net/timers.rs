//! Deadlines: a min-heap of (instant, key).
//!
//! Entries are never removed early. An entry is keyed by what it belongs to: a sink (a
//! connection or an Engine.IO session, by slot and generation, so an entry that outlives
//! its owner cannot fire on the next one in the same slot) or one of the loop's own jobs. An
//! owner whose deadline moved later keeps its old entry and re-arms when it fires; so a busy
//! keep-alive connection touches the heap once per timeout period, not once per request.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use crate::hub::SinkRef;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TimerKey {
    /// A connection's deadline (header/body/idle timeout, heartbeat, linger) or a session's
    /// (Engine.IO ping, ping timeout, Socket.IO connect timeout).
    Sink(SinkRef),
    /// Log the counters (`--stats-interval`).
    StatsLog,
    /// Try accepting again after the process ran out of descriptors.
    AcceptRetry,
    /// The graceful-shutdown drain time is over.
    DrainEnd,
    /// Expire channel history and forget empty channels.
    HubSweep,
    /// The app's once-a-second ticker (`/stream`).
    Tick,
    /// The Redis links' deadline (connect timeout, reconnect time).
    Redis,
}

#[derive(Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Instant, TimerKey)>>,
}

impl Timers {
    pub fn add(&mut self, at: Instant, key: TimerKey) {
        self.heap.push(Reverse((at, key)));
    }

    /// The earliest deadline, which bounds how long the loop may sleep.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Removes and returns one entry due at `now`, with the instant it was set for.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, TimerKey)> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn pops_in_deadline_order_only_when_due() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        t.add(t0 + Duration::from_secs(3), TimerKey::StatsLog);
        t.add(t0 + Duration::from_secs(1), TimerKey::Sink(SinkRef::conn(4, 9)));
        t.add(t0 + Duration::from_secs(2), TimerKey::AcceptRetry);
        assert_eq!(t.next_deadline(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(t.pop_due(t0), None);
        let now = t0 + Duration::from_secs(2);
        assert_eq!(t.pop_due(now).map(|e| e.1), Some(TimerKey::Sink(SinkRef::conn(4, 9))));
        assert_eq!(t.pop_due(now).map(|e| e.1), Some(TimerKey::AcceptRetry));
        assert_eq!(t.pop_due(now), None);
        assert_eq!(t.len(), 1);
    }
}
