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
                             HOST environment variables set port and address when absent]
  --static DIR               serve files from DIR when no route matches
  --max-head-bytes N         largest request head, bytes (431 past it) [default: 16384]
  --max-headers N            most request headers (431 past it) [default: 100]
  --max-body N               largest request body, bytes (413 past it) [default: 1048576]
  --header-timeout SECS      time to send a complete request head (408) [default: 10]
  --body-timeout SECS        longest pause inside a request body (408) [default: 30]
  --keepalive-timeout SECS   idle keep-alive connections close after [default: 75]
  --max-output N             output a connection may leave unread, bytes [default: 4194304]
  --max-connections N        simultaneous connections [default: 100000]
  --max-message N            largest WebSocket message, bytes (close 1009) [default: 16777216]
  --ws-ping-interval SECS    ping a silent WebSocket peer after [default: 25]
  --ws-ping-timeout SECS     drop it if still silent this long after the ping [default: 20]
  --allowed-origin ORIGIN    only browsers from ORIGIN may open WebSockets (repeatable;
                             default: any origin)
  --history N                messages each channel keeps for replay [default: 100]
  --history-ttl SECS         ...for at most this long [default: 300]
  --history-bytes N          all channels' history together, bytes [default: 67108864]
  --sse-retry MILLIS         the retry: an SSE stream starts with [default: 3000]
  --sse-heartbeat SECS       a comment line on idle SSE streams this often [default: 15]
  --poll-timeout SECS        long-polls with nothing to deliver get 204 after [default: 30]
  --ws-publish BOOL          WebSocket subscribers may publish to their channel [default: true]
  --publish-token TOKEN      publishing needs 'Authorization: Bearer TOKEN'
                             (or env PUSHWIRE_PUBLISH_TOKEN)
  --cors-origin ORIGIN       CORS headers for ORIGIN (or *) on SSE, long-poll, publish
  --drain-timeout SECS       graceful shutdown drain time [default: 5]
  --stats-interval SECS      log the counters this often, 0 = never [default: 60]
  -h, --help                 print this help
  -V, --version              print the version

Logging: RUST_LOG=debug|info|warn (default info).";

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let config = match parse_args() {
        Ok(Some(c)) => c,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pushwire: {e}\n\nTry 'pushwire --help'.");
            return ExitCode::from(2);
        }
    };
    let publish_protected = config.publish_token.is_some();
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
    let addr = server.local_addr();
    if !addr.ip().is_loopback() && !publish_protected {
        log::warn!("listening on {addr} without --publish-token: anyone who can reach it can publish");
    }
    log::info!("pushwire {} listening on http://{}/", env!("CARGO_PKG_VERSION"), addr);
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("event loop failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `Ok(None)`: help or version was printed.
fn parse_args() -> Result<Option<Config>, lexopt::Error> {
    use lexopt::prelude::*;
    let mut c = Config::default();
    let mut listen: Option<SocketAddr> = None;
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("listen") => listen = Some(parser.value()?.parse()?),
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
            Long("header-timeout") => c.header_timeout = secs(parser.value()?.parse()?),
            Long("body-timeout") => c.body_timeout = secs(parser.value()?.parse()?),
            Long("keepalive-timeout") => c.keepalive_timeout = secs(parser.value()?.parse()?),
            Long("max-output") => c.max_output_bytes = parser.value()?.parse()?,
            Long("max-connections") => c.max_connections = parser.value()?.parse()?,
            Long("max-message") => c.max_message_bytes = parser.value()?.parse()?,
            Long("ws-ping-interval") => c.ws_ping_interval = secs(parser.value()?.parse()?),
            Long("ws-ping-timeout") => c.ws_ping_timeout = secs(parser.value()?.parse()?),
            Long("allowed-origin") => c.allowed_origins.push(parser.value()?.string()?),
            Long("history") => c.history_len = parser.value()?.parse()?,
            Long("history-bytes") => c.history_bytes = parser.value()?.parse()?,
            Long("history-ttl") => c.history_ttl = secs(parser.value()?.parse()?),
            Long("sse-retry") => c.sse_retry = Duration::from_millis(parser.value()?.parse()?),
            Long("sse-heartbeat") => c.sse_heartbeat = secs(parser.value()?.parse()?),
            Long("poll-timeout") => c.poll_timeout = secs(parser.value()?.parse()?),
            Long("ws-publish") => c.ws_publish = parser.value()?.parse()?,
            Long("publish-token") => c.publish_token = Some(parser.value()?.string()?),
            Long("cors-origin") => c.cors_origin = Some(parser.value()?.string()?),
            Long("drain-timeout") => c.drain_timeout = secs(parser.value()?.parse()?),
            Long("stats-interval") => c.stats_interval = secs(parser.value()?.parse()?),
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
    if c.publish_token.is_none() {
        c.publish_token = std::env::var("PUSHWIRE_PUBLISH_TOKEN").ok().filter(|t| !t.is_empty());
    }
    if c.sse_heartbeat.is_zero() || c.ws_ping_interval.is_zero() || c.poll_timeout.is_zero() {
        return Err("--sse-heartbeat, --ws-ping-interval and --poll-timeout must be above zero".into());
    }
    c.listen = match listen {
        Some(a) => a,
        None => {
            // Hosting platforms pass the port (and sometimes the address) in the environment.
            let port = match std::env::var("PORT") {
                Ok(p) => p.parse().map_err(|_| lexopt::Error::from(format!("PORT={p:?} is not a port number")))?,
                Err(_) => c.listen.port(),
            };
            let host: IpAddr = match std::env::var("HOST") {
                Ok(h) => h.parse().map_err(|_| lexopt::Error::from(format!("HOST={h:?} is not an IP address")))?,
                Err(_) => c.listen.ip(),
            };
            SocketAddr::new(host, port)
        }
    };
    Ok(Some(c))
}

/// Seconds, fractions allowed (`0.5`), so tests can use short timeouts.
fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}
