//! What a connection's bytes travel through: the socket itself, or rustls on top of it. The
//! rest of the loop reads plaintext and writes its output queue through these functions and
//! never asks which.
//!
//! rustls is sans-IO (STYLE: a core driven by the loop): TLS records go in with `read_tls`
//! and out with `write_tls`, plaintext comes out of its reader and goes into its writer. Two
//! consequences shape the loop:
//! - Reading: one socket read may bring several records and rustls may hold decrypted
//!   plaintext after a read returned, so a TLS connection reads until `WouldBlock` (the plain
//!   path's "a short read means the socket is drained" does not hold).
//! - Writing is two stages: the output queue moves into rustls (which encrypts as it takes,
//!   up to its buffer limit), then rustls's records move to the socket. Output is done only
//!   when both are empty. The shared frames of a fan-out are still one allocation up to this
//!   point: each connection encrypts them (it must: every TLS session has its own keys).

use std::io::{self, IoSlice, Read, Write};

use mio::net::TcpStream;
use rustls::ServerConnection;

use super::outbuf::{Flush, OutBuf};

/// A connection's TLS session.
pub struct Tls {
    pub conn: ServerConnection,
    /// close_notify has been queued.
    pub closing: bool,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("closing", &self.closing).finish()
    }
}

/// Plaintext rustls takes from the output queue before its records must reach the socket:
/// bounds what one connection's TLS layer holds (the queue above is capped on its own).
pub const TLS_BUFFER: usize = 64 * 1024;

/// Reads plaintext into `buf`: `Ok(0)` at the end of the stream (EOF, or the peer's
/// close_notify), `WouldBlock` when nothing more can be read now.
pub fn read(sock: &mut TcpStream, tls: Option<&mut Tls>, buf: &mut [u8]) -> io::Result<usize> {
    let Some(Tls { conn: tls, .. }) = tls else { return sock.read(buf) };
    loop {
        match tls.reader().read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            // The peer closed the TCP connection without close_notify: an end all the same
            // (HTTP/1.1 delimits its messages; a truncation shows up there).
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
            Err(e) => return Err(e),
        }
        if tls.read_tls(sock)? == 0 {
            return Ok(0);
        }
        if let Err(e) = tls.process_new_packets() {
            // rustls has queued the alert that says why: send it if the socket takes it.
            let _ = tls.write_tls(sock);
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
    }
}

/// Moves TLS records to the socket until none wait (`true`) or the socket is full.
fn flush_records(sock: &mut TcpStream, tls: &mut ServerConnection) -> io::Result<bool> {
    while tls.wants_write() {
        match tls.write_tls(sock) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Writes the output queue: with TLS, through rustls and then its records, until both are
/// empty (`Drained`) or the socket is full. `written` counts plaintext bytes.
pub fn write(sock: &mut TcpStream, tls: Option<&mut Tls>, out: &mut OutBuf, written: &mut u64) -> io::Result<Flush> {
    let Some(Tls { conn: tls, .. }) = tls else { return out.write_to(sock, written) };
    loop {
        if !flush_records(sock, tls)? {
            return Ok(Flush::Blocked);
        }
        if out.is_empty() {
            return Ok(Flush::Drained);
        }
        // Into rustls until its buffer is full; the loop then sends the records.
        let _ = out.write_to(&mut Plaintext(tls), written)?;
    }
}

/// True while something waits to be written: queued output, or TLS records.
pub fn has_output(tls: Option<&Tls>, out: &OutBuf) -> bool {
    !out.is_empty() || tls.is_some_and(|t| t.conn.wants_write())
}

/// Queues TLS's close_notify (once) and tries to send it; `true` once nothing waits.
pub fn close_notify(sock: &mut TcpStream, tls: &mut Tls) -> io::Result<bool> {
    if !tls.closing {
        tls.conn.send_close_notify();
        tls.closing = true;
    }
    flush_records(sock, &mut tls.conn)
}

/// rustls's plaintext side as the output queue's writer: a full buffer reads as `WouldBlock`,
/// which the queue takes for a full socket.
struct Plaintext<'a>(&'a mut ServerConnection);

impl Write for Plaintext<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self.0.writer().write_vectored(bufs)? {
            0 if bufs.iter().any(|b| !b.is_empty()) => Err(io::ErrorKind::WouldBlock.into()),
            n => Ok(n),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
