//! What one connection does in one wake-up: write what is queued, read and hand input to
//! its transport, stream file pieces, linger when closing. Everything here works on one
//! connection; the loop (`event_loop.rs`) decides which connection runs when.

use std::io::{self, Read};
use std::net::Shutdown;
use std::time::Instant;

use mio::{Interest, Poll, Token};
use thin_vec::ThinVec;

use super::conn::{Conn, Life, Transport, LINGER};
use super::http::{self, Env, Stop};
use super::outbuf::Flush;
use super::{wire, ws};

/// A streamed file is read in pieces of this size, whenever the output queue is below it.
const FILE_CHUNK: usize = 64 * 1024;
/// Bytes of a file sent to one connection per wake-up before the others get their turn.
const FILE_BUDGET: usize = 1024 * 1024;

/// The per-connection work of one wake-up. Returns false when the connection is dead.
pub fn drive_conn(conn: &mut Conn, scratch: &mut [u8], env: &mut Env<'_>) -> bool {
    if !write_out(conn, env) {
        return false;
    }
    if let Life::Lingering { .. } = conn.life {
        return discard_input(conn, scratch, env);
    }
    // Input already buffered first (processing may have stopped at a limit last time).
    if conn.stalled && conn.wants_input(&env.app.config) {
        process_buffered(conn, env);
    }
    // Fairness: at most a turn's worth of input bytes (besides the per-turn message budget
    // the transports keep); a client that keeps its socket full waits on the pending list.
    let mut took = 0;
    while conn.read_ready && !conn.stalled && conn.wants_input(&env.app.config) && took < env.app.config.max_input_per_wakeup {
        match wire::read(&mut conn.sock, conn.tls.as_deref_mut(), scratch) {
            Ok(0) => {
                conn.peer_eof = true;
                conn.read_ready = false;
            }
            Ok(n) => {
                env.app.stats.bytes_in += n as u64;
                took += n;
                conn.last_progress = env.now;
                // (Not with TLS: rustls may hold plaintext the socket no longer shows.)
                if n < scratch.len() && !conn.read_closed && conn.tls.is_none() {
                    // A short read drained the socket buffer. Data or a FIN arriving after
                    // this raises a new edge, so reading again now would only cost an EAGAIN.
                    // (Unless the FIN already came with this data: then read on to the EOF.)
                    conn.read_ready = false;
                }
                if conn.inbuf.is_empty() {
                    // The common case: use the bytes straight from the shared buffer and keep
                    // only an incomplete tail.
                    let (used, stop) = process(conn, &mut scratch[..n], env);
                    if used < n && !matches!(conn.life, Life::CloseAfterFlush) {
                        conn.inbuf.extend_from_slice(&scratch[used..n]);
                    }
                    conn.stalled = stop == Stop::Blocked && !conn.inbuf.is_empty();
                } else {
                    conn.inbuf.extend_from_slice(&scratch[..n]);
                    process_buffered(conn, env);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => conn.read_ready = false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                log::debug!("conn {}: read: {e}", conn.id);
                return false;
            }
        }
    }
    if !matches!(conn.life, Life::Open) {
        conn.inbuf = ThinVec::new();
        conn.stalled = false;
    }
    if !write_out(conn, env) {
        return false;
    }
    if let Life::Lingering { .. } = conn.life {
        return discard_input(conn, scratch, env);
    }
    true
}

/// Offers input to whatever the connection speaks. When a request upgrades the connection,
/// the bytes behind it (sent before the 101 arrived) go to the new protocol.
fn process(conn: &mut Conn, input: &mut [u8], env: &mut Env<'_>) -> (usize, Stop) {
    let mut pos = 0;
    loop {
        let was_http = matches!(conn.transport, Transport::Http(_));
        let (used, stop) = match conn.transport {
            Transport::Http(_) => http::process_input(conn, &input[pos..], env),
            Transport::WebSocket(_) => ws::process_input(conn, &mut input[pos..], env),
            // An SSE client has nothing more to say (the stream ends with the connection):
            // what it sends anyway is dropped; reading still notices its EOF.
            Transport::Sse(_) => (input.len() - pos, Stop::NeedMore),
            // A request pipelined behind a held long-poll waits for the poll's answer.
            Transport::LongPoll(_) | Transport::EioPoll(_) => (0, Stop::Blocked),
        };
        pos += used;
        let switched = was_http && !matches!(conn.transport, Transport::Http(_));
        if !switched || pos >= input.len() || stop == Stop::NeedMore {
            return (pos, stop);
        }
    }
}

/// Offers the connection's buffered input to its transport and keeps what is left.
fn process_buffered(conn: &mut Conn, env: &mut Env<'_>) {
    let mut buf = std::mem::take(&mut conn.inbuf);
    let (used, stop) = process(conn, &mut buf, env);
    if used >= buf.len() {
        buf = ThinVec::new();
    } else {
        buf.drain(..used);
    }
    conn.inbuf = buf;
    conn.stalled = stop == Stop::Blocked && !conn.inbuf.is_empty();
}

/// Writes queued output, refilling it from a streaming file, until the socket is full, the
/// output is done, or the connection used its budget for this wake-up. Moves a closing
/// connection whose output is done to lingering. Returns false when the connection is dead.
fn write_out(conn: &mut Conn, env: &mut Env<'_>) -> bool {
    let mut budget = FILE_BUDGET;
    let written_before = env.app.stats.bytes_out;
    loop {
        if let Transport::Http(h) = &mut conn.transport {
            if let Some(f) = &mut h.file {
                if conn.out.len() < FILE_CHUNK {
                    let want = (f.left as usize).min(FILE_CHUNK);
                    let mut piece = vec![0u8; want];
                    match f.file.read(&mut piece) {
                        Ok(n) if n > 0 => {
                            piece.truncate(n);
                            f.left -= n as u64;
                            budget = budget.saturating_sub(n);
                            conn.out.push_owned(piece);
                            if f.left == 0 {
                                h.file = None;
                                // Pipelined requests behind the file can go now.
                                conn.stalled = !conn.inbuf.is_empty();
                            }
                        }
                        // The file shrank or failed under us: the promised length cannot be
                        // kept, and closing is the only honest way to say so.
                        _ => return false,
                    }
                }
            }
        }
        if !wire::has_output(conn.tls.as_deref(), &conn.out) {
            break;
        }
        let before = conn.out.len();
        match wire::write(&mut conn.sock, conn.tls.as_deref_mut(), &mut conn.out, &mut env.app.stats.bytes_out) {
            Ok(Flush::Drained) => {
                conn.last_progress = env.now;
                if !conn.sending_file() || budget == 0 {
                    break;
                }
            }
            Ok(Flush::Blocked) => {
                if conn.out.len() < before {
                    conn.last_progress = env.now;
                }
                break;
            }
            Err(e) => {
                log::debug!("conn {}: write: {e}", conn.id);
                return false;
            }
        }
    }
    // The write timeout runs from the last time output moved (or from when it was queued).
    if conn.out.is_empty() && !conn.sending_file() {
        if let Some(t) = conn.out.release() {
            // The clock now, not the loop's turn: the writes of one turn take time too.
            env.app.stats.latency.record(Instant::now().saturating_duration_since(t));
        }
    } else if env.app.stats.bytes_out != written_before || conn.out.stuck_since().is_none() {
        conn.out.set_stuck_since(env.now);
    }
    if matches!(conn.life, Life::CloseAfterFlush) && conn.out.is_empty() && !conn.sending_file() {
        if conn.peer_eof {
            return false;
        }
        if let Some(tls) = conn.tls.as_deref_mut() {
            match wire::close_notify(&mut conn.sock, tls) {
                Ok(true) => {}
                Ok(false) => return true, // WRITABLE brings us back
                Err(_) => return false,
            }
        }
        let _ = conn.sock.shutdown(Shutdown::Write);
        conn.life = Life::Lingering { until: env.now + LINGER };
        conn.read_ready = true;
    }
    true
}

/// Lingering close: reads and drops input until the peer closes. Returns false at EOF. Within
/// the same per-turn input budget as live input: a client that keeps sending after its error
/// waits on the pending list like any other.
fn discard_input(conn: &mut Conn, scratch: &mut [u8], env: &mut Env<'_>) -> bool {
    let mut took = 0;
    while conn.read_ready && took < env.app.config.max_input_per_wakeup {
        match conn.sock.read(scratch) {
            Ok(0) => return false,
            Ok(n) => {
                took += n;
                env.app.stats.bytes_in += n as u64;
                if n < scratch.len() && !conn.read_closed {
                    conn.read_ready = false;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => conn.read_ready = false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    true
}

/// Asks for WRITABLE only while output is blocked (readiness for reading is always wanted:
/// it also reports the peer's FIN and errors).
pub fn update_interest(poll: &Poll, token: Token, conn: &mut Conn) -> io::Result<()> {
    let want_write = wire::has_output(conn.tls.as_deref(), &conn.out);
    if want_write != conn.write_interest {
        let interest = if want_write { Interest::READABLE | Interest::WRITABLE } else { Interest::READABLE };
        poll.registry().reregister(&mut conn.sock, token, interest)?;
        conn.write_interest = want_write;
    }
    Ok(())
}

