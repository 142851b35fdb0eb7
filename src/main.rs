//! The `pushwire` binary: parse the command line, build the server, run it.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use pushwire::{Config, Server};

const USAGE: &str = "\
pushwire: a real-time push server (WebSocket, SSE, long-polling) on one thread

Usage: pushwire [OPTIONS]

Options:
  --listen ADDR:PORT         address to listen on [default: 127.0.0.1:8000; the PORT and
                             HOST environment variables set port and address when absent];
                             repeatable; https://ADDR:PORT or http://ADDR:PORT says which
                             speaks TLS (a bare address does when --tls-cert is given)
  --reuse-port               SO_REUSEPORT: several pushwire processes share the port
                             (the kernel spreads connections over them)
  --node-id ID               this process's name in /stats and /healthz [default: random]
  --redis URL                join a cluster through Redis: redis://[user:password@]HOST:PORT[/db]
  --tls-cert FILE            speak HTTPS and WSS with this PEM certificate chain
                             (leaf first); SIGHUP reloads it
  --tls-key FILE             ...and this PEM key (PKCS#8, RSA or EC)
  --static DIR               serve files from DIR when no route matches
  --max-head-bytes N         largest request head, bytes (431 past it) [default: 16384]
  --max-headers N            most request headers (431 past it) [default: 100]
  --max-body N               largest request body, bytes (413 past it) [default: 1048576]
  --header-timeout SECS      time to send a complete request head (408) [default: 10]
  --body-timeout SECS        longest pause inside a request body (408) [default: 30]
  --write-timeout SECS       close a connection whose output has not moved for
                             this long [default: 30]
  --keepalive-timeout SECS   idle keep-alive connections close after [default: 75]
  --max-output N             output a connection may leave unread, bytes [default: 4194304]
  --max-connections N        simultaneous connections [default: 100000; the open-files
                             soft limit is raised to the hard one at start]
  --max-message N            largest WebSocket message, bytes (close 1009) [default: 16777216]
  --ws-compression on|off    permessage-deflate with WebSocket clients that offer it
                             [default: on]
  --ws-compression-min N     messages under N bytes go uncompressed [default: 256]
  --ws-ping-interval SECS    ping a silent WebSocket peer after [default: 25]
  --ws-ping-timeout SECS     drop it if still silent this long after the ping [default: 20]
  --allowed-origin ORIGIN    only browsers from ORIGIN may open WebSockets (repeatable;
                             default: any origin)
  --history N                messages each channel keeps for replay [default: 100]
  --history-ttl SECS         ...for at most this long [default: 300]
  --history-bytes N          all channels' history together, bytes, counted with
                             each message's overhead and encodings [default: 67108864]
  --max-channels N           channels that may exist at once (503 past it)
                             [default: 100000]
  --sse-retry MILLIS         the retry: an SSE stream starts with [default: 3000]
  --sse-heartbeat SECS       a comment line on idle SSE streams this often [default: 15]
  --poll-timeout SECS        long-polls with nothing to deliver get 204 after [default: 30]
  --ws-publish BOOL          WebSocket subscribers may publish to their channel [default: true]
  --publish-token TOKEN      publishing needs 'Authorization: Bearer TOKEN'
                             (or env PUSHWIRE_PUBLISH_TOKEN)
  --cors-origin ORIGIN       CORS headers for ORIGIN (or *) on SSE, long-poll, publish
  --sio-path PATH            where Socket.IO / Engine.IO is served [default: /socket.io/]
  --sio-namespace PATTERN    namespaces clients may connect to: a name, or a prefix
                             ending in * (repeatable; default: any)
  --sio-relay MODE           where events clients emit go: others (their rooms, or
                             their namespace, the sender excluded), all, none
                             [default: others]
  --sio-ping-interval SECS   Engine.IO heartbeat interval [default: 25]
  --sio-ping-timeout SECS    close a session whose pong is this late [default: 20]
  --sio-max-payload N        largest Engine.IO payload, bytes [default: 1000000]
  --sio-connect-timeout SECS close a session with no namespace CONNECT after [default: 45]
  --sio-recovery             connection-state recovery: a client that lost its connection
                             gets its socket back, rooms and missed events included
  --sio-recovery-window SECS ...for this long after the drop (implies --sio-recovery)
                             [default: 120]
  --sio-client-js FILE       serve this file as PATH/socket.io.js (the official client:
                             node_modules/socket.io-client/dist/socket.io.min.js)
  --preset sio-conformance   the test application Socket.IO / Engine.IO protocol test
                             suites expect (see PROTOCOL.md); options after it override it
  --drain-timeout SECS       graceful shutdown drain time [default: 5]
  --stats-interval SECS      log the counters this often, 0 = never [default: 60]
  -h, --help                 print this help
  -V, --version              print the version

Logging: RUST_LOG=debug|info|warn (default info).";

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let (config, explicit_max_conns) = match parse_args() {
        Ok(Some(c)) => c,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pushwire: {e}\n\nTry 'pushwire --help'.");
            return ExitCode::from(2);
        }
    };
    let publish_protected = config.publish_token.is_some();
    if let Some(fds) = raise_fd_limit() {
        // A few descriptors go to the listener, epoll, signals and static files.
        let room = fds.saturating_sub(FD_RESERVE) as usize;
        if config.max_connections > room {
            if explicit_max_conns {
                log::warn!(
                    "--max-connections {} is above what the open-files limit ({fds}) allows: accepts will pause when descriptors run out; raise 'ulimit -n'",
                    config.max_connections
                );
            } else {
                // Past the limit, accepts pause until descriptors free up (see the loop).
                log::info!("the open-files limit ({fds}) allows about {room} connections");
            }
        }
    }
    let mut server = match Server::bind(config) {
        Ok(s) => s,
        Err(e) => {
            log::error!("cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = server.handle_signals() {
        log::error!("cannot install signal handlers: {e}");
        return ExitCode::FAILURE;
    }
    for (addr, tls) in server.listening() {
        if !addr.ip().is_loopback() && !publish_protected {
            log::warn!("listening on {addr} without --publish-token: anyone who can reach it can publish");
        }
        let scheme = if tls { "https" } else { "http" };
        log::info!("pushwire {} listening on {scheme}://{}/", env!("CARGO_PKG_VERSION"), addr);
    }
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("event loop failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Descriptors kept apart from connections: listener, epoll, signal pipe, static files.
const FD_RESERVE: u64 = 64;

/// `Ok(None)`: help or version was printed. The flag: `--max-connections` was given.
fn parse_args() -> Result<Option<(Config, bool)>, lexopt::Error> {
    use lexopt::prelude::*;
    let mut c = Config::default();
    // Each --listen, with its scheme if it was written (`https://`, `http://`).
    let mut listen: Vec<(SocketAddr, Option<bool>)> = Vec::new();
    let mut explicit_max_conns = false;
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("listen") => {
                let v = parser.value()?.string()?;
                let (tls, addr) = match (v.strip_prefix("https://"), v.strip_prefix("http://")) {
                    (Some(a), _) => (Some(true), a),
                    (_, Some(a)) => (Some(false), a),
                    _ => (None, v.as_str()),
                };
                let addr = addr.trim_end_matches('/').parse().map_err(|e| format!("--listen {v:?}: {e}"))?;
                listen.push((addr, tls));
            }
            Long("reuse-port") => c.reuse_port = true,
            Long("node-id") => {
                let id = parser.value()?.string()?;
                if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) {
                    return Err(format!("--node-id {id:?}: 1-64 characters of A-Z a-z 0-9 - _ .").into());
                }
                c.node_id = id;
            }
            Long("redis") => {
                let v = parser.value()?.string()?;
                c.redis = Some(v.parse().map_err(|e| format!("--redis: {e}"))?);
            }
            Long("static") => c.static_dir = Some(PathBuf::from(parser.value()?)),
            Long("max-head-bytes") => c.max_head_bytes = parser.value()?.parse()?,
            Long("max-headers") => {
                let n: usize = parser.value()?.parse()?;
                if n > pushwire::proto::http1::request::HARD_MAX_HEADERS {
                    return Err(format!("--max-headers: at most {}", pushwire::proto::http1::request::HARD_MAX_HEADERS).into());
                }
                c.max_headers = n;
            }
            Long("max-body") => c.max_body_bytes = parser.value()?.parse()?,
            Long("header-timeout") => c.header_timeout = secs(&mut parser, "header-timeout")?,
            Long("body-timeout") => c.body_timeout = secs(&mut parser, "body-timeout")?,
            Long("keepalive-timeout") => c.keepalive_timeout = secs(&mut parser, "keepalive-timeout")?,
            Long("max-output") => c.max_output_bytes = parser.value()?.parse()?,
            Long("max-connections") => {
                c.max_connections = parser.value()?.parse()?;
                explicit_max_conns = true;
            }
            Long("max-message") => c.max_message_bytes = parser.value()?.parse()?,
            Long("tls-cert") => c.tls_cert = Some(PathBuf::from(parser.value()?)),
            Long("tls-key") => c.tls_key = Some(PathBuf::from(parser.value()?)),
            Long("ws-compression") => {
                c.ws_compression = match parser.value()?.string()?.as_str() {
                    "on" => true,
                    "off" => false,
                    other => return Err(format!("--ws-compression {other:?}: expected on or off").into()),
                }
            }
            Long("ws-compression-min") => c.ws_compression_min = parser.value()?.parse()?,
            Long("ws-ping-interval") => c.ws_ping_interval = secs(&mut parser, "ws-ping-interval")?,
            Long("ws-ping-timeout") => c.ws_ping_timeout = secs(&mut parser, "ws-ping-timeout")?,
            Long("allowed-origin") => c.allowed_origins.push(parser.value()?.string()?),
            Long("history") => c.history_len = parser.value()?.parse()?,
            Long("history-bytes") => c.history_bytes = parser.value()?.parse()?,
            Long("max-channels") => c.max_channels = parser.value()?.parse()?,
            Long("write-timeout") => c.write_timeout = secs(&mut parser, "write-timeout")?,
            Long("history-ttl") => c.history_ttl = secs(&mut parser, "history-ttl")?,
            Long("sse-retry") => c.sse_retry = Duration::from_millis(parser.value()?.parse()?),
            Long("sse-heartbeat") => c.sse_heartbeat = secs(&mut parser, "sse-heartbeat")?,
            Long("poll-timeout") => c.poll_timeout = secs(&mut parser, "poll-timeout")?,
            Long("ws-publish") => c.ws_publish = parser.value()?.parse()?,
            Long("publish-token") => c.publish_token = Some(parser.value()?.string()?),
            Long("cors-origin") => c.cors_origin = Some(parser.value()?.string()?),
            Long("drain-timeout") => c.drain_timeout = secs(&mut parser, "drain-timeout")?,
            Long("sio-path") => {
                let p = parser.value()?.string()?;
                if !p.starts_with('/') || p.contains(['?', '#']) {
                    return Err(format!("--sio-path {p:?}: expected a path starting with /").into());
                }
                c.sio_path = if p.ends_with('/') { p } else { format!("{p}/") };
            }
            Long("sio-namespace") => {
                let n = parser.value()?.string()?;
                if !n.starts_with('/') {
                    return Err(format!("--sio-namespace {n:?}: namespaces start with /").into());
                }
                c.sio_namespaces.push(n);
            }
            Long("sio-relay") => c.sio_relay = parser.value()?.string()?.parse().map_err(|e: String| format!("--sio-relay: {e}"))?,
            Long("sio-ping-interval") => c.sio_ping_interval = secs(&mut parser, "sio-ping-interval")?,
            Long("sio-ping-timeout") => c.sio_ping_timeout = secs(&mut parser, "sio-ping-timeout")?,
            Long("sio-max-payload") => c.sio_max_payload = parser.value()?.parse()?,
            Long("sio-connect-timeout") => c.sio_connect_timeout = secs(&mut parser, "sio-connect-timeout")?,
            Long("preset") => match parser.value()?.string()?.as_str() {
                "sio-conformance" => {
                    c.sio_conformance = true;
                    c.sio_namespaces = vec!["/".into(), "/custom".into()];
                    c.sio_ping_interval = Duration::from_millis(300);
                    c.sio_ping_timeout = Duration::from_millis(200);
                    c.sio_max_payload = 1_000_000;
                }
                other => return Err(format!("--preset {other:?}: the one preset is sio-conformance").into()),
            },
            Long("sio-recovery") => c.sio_recovery = Some(c.sio_recovery.unwrap_or(Duration::from_secs(120))),
            Long("sio-recovery-window") => c.sio_recovery = Some(secs(&mut parser, "sio-recovery-window")?),
            Long("sio-client-js") => c.sio_client_js = Some(PathBuf::from(parser.value()?)),
            Long("stats-interval") => c.stats_interval = secs(&mut parser, "stats-interval")?,
            Short('h') | Long("help") => {
                println!("{USAGE}");
                return Ok(None);
            }
            Short('V') | Long("version") => {
                println!("pushwire {}", env!("CARGO_PKG_VERSION"));
                return Ok(None);
            }
            _ => return Err(arg.unexpected()),
        }
    }
    if c.max_output_bytes > 1 << 30 {
        return Err("--max-output: at most 1073741824 (1 GiB)".into());
    }
    if c.tls_cert.is_some() != c.tls_key.is_some() {
        return Err("--tls-cert and --tls-key go together".into());
    }
    if c.publish_token.is_none() {
        c.publish_token = std::env::var("PUSHWIRE_PUBLISH_TOKEN").ok().filter(|t| !t.is_empty());
    }
    if c.sse_heartbeat.is_zero() || c.ws_ping_interval.is_zero() || c.poll_timeout.is_zero() || c.write_timeout.is_zero() || c.sio_ping_interval.is_zero() {
        return Err("--sse-heartbeat, --ws-ping-interval, --poll-timeout, --write-timeout and --sio-ping-interval must be above zero".into());
    }
    // A polling POST is read as a request body first: what a session announces and takes
    // is within --max-body too.
    c.sio_max_payload = c.sio_max_payload.min(c.max_body_bytes);
    if c.sse_retry > Duration::from_secs(MAX_SECS as u64) {
        return Err("--sse-retry: at most 1e12 milliseconds".into());
    }
    let tls = c.tls_cert.is_some();
    if let Some((a, _)) = listen.iter().find(|(_, t)| *t == Some(true) && !tls) {
        return Err(format!("--listen https://{a}: needs --tls-cert and --tls-key").into());
    }
    if listen.len() > pushwire::net::MAX_LISTENERS {
        return Err(format!("--listen: at most {} listeners", pushwire::net::MAX_LISTENERS).into());
    }
    let default = c.listen[0].addr;
    // A bare address speaks TLS when there is a certificate.
    c.listen = listen.iter().map(|&(addr, t)| pushwire::config::Listen { addr, tls: t.unwrap_or(tls) }).collect();
    if c.listen.is_empty() {
        c.listen = vec![pushwire::config::Listen { addr: env_listen(default)?, tls }];
    }
    Ok(Some((c, explicit_max_conns)))
}

/// The address when no --listen is given: hosting platforms pass the port (and sometimes
/// the address) in the environment.
fn env_listen(default: SocketAddr) -> Result<SocketAddr, lexopt::Error> {
    let port = match std::env::var("PORT") {
        Ok(p) => p.parse().map_err(|_| lexopt::Error::from(format!("PORT={p:?} is not a port number")))?,
        Err(_) => default.port(),
    };
    let host: IpAddr = match std::env::var("HOST") {
        Ok(h) => h.parse().map_err(|_| lexopt::Error::from(format!("HOST={h:?} is not an IP address")))?,
        Err(_) => default.ip(),
    };
    Ok(SocketAddr::new(host, port))
}

/// The longest duration any option takes: about 31 years. Deadlines are `now + duration`
/// for as long as the process runs, so a bound well inside `Instant`'s range means no
/// deadline can ever overflow.
const MAX_SECS: f64 = 1e9;

/// The option's value in seconds, fractions allowed (`0.5`) so tests can use short timeouts.
/// `inf`, `NaN`, negative values and anything above [`MAX_SECS`] are refused with a message.
fn secs(parser: &mut lexopt::Parser, option: &str) -> Result<Duration, lexopt::Error> {
    use lexopt::ValueExt;
    let raw = parser.value()?.string()?;
    match raw.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=MAX_SECS).contains(&v) => Ok(Duration::from_secs_f64(v)),
        Ok(_) => Err(format!("--{option} {raw:?}: expected seconds from 0 to {MAX_SECS:e}").into()),
        Err(_) => Err(format!("--{option} {raw:?}: expected a number of seconds").into()),
    }
}

/// Raises the open-files soft limit to the hard limit (each connection is a descriptor; the
/// soft limit is often 1024 while the hard one allows far more) and returns the limit now in
/// force.
fn raise_fd_limit() -> Option<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit into the struct we pass; no other memory is touched.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    if lim.rlim_cur < lim.rlim_max {
        // An unlimited hard limit cannot be the soft one: the kernel caps descriptors at
        // fs.nr_open.
        let target = if lim.rlim_max == libc::RLIM_INFINITY {
            std::fs::read_to_string("/proc/sys/fs/nr_open").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(lim.rlim_cur)
        } else {
            lim.rlim_max
        };
        let raised = libc::rlimit { rlim_cur: target.max(lim.rlim_cur), rlim_max: lim.rlim_max };
        // SAFETY: setrlimit only reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim = raised;
        } else {
            log::warn!("could not raise the open-files limit from {} to {target}", lim.rlim_cur);
        }
    }
    Some(lim.rlim_cur)
}
