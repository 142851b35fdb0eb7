//! Integration tests of the command line: `--help`, `--version`, usage errors (exit 2), and the
//! `PORT` environment variable.

mod support;
use support::http::*;
use support::*;

use std::net::{SocketAddr, TcpListener};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------------

/// Runs the binary to completion (bounded by WAIT); returns status, stdout, stderr.
fn run_cli(args: &[&str], env: &[(&str, &str)]) -> (ExitStatus, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pushwire"));
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn pushwire");
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > WAIT {
            let _ = child.kill();
            panic!("pushwire {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (out.status, String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn help_prints_usage_and_exits_0() {
    for flag in ["--help", "-h"] {
        let (st, out, _) = run_cli(&["--listen", "127.0.0.1:0", flag], &[]);
        assert_eq!(st.code(), Some(0), "{flag}");
        assert!(out.contains("Usage: pushwire"), "{flag}: {out}");
        for opt in ["--listen", "--static", "--max-body", "--header-timeout", "--drain-timeout"] {
            assert!(out.contains(opt), "{flag} does not mention {opt}");
        }
    }
}

#[test]
fn version_prints_the_version() {
    for flag in ["--version", "-V"] {
        let (st, out, _) = run_cli(&["--listen", "127.0.0.1:0", flag], &[]);
        assert_eq!(st.code(), Some(0), "{flag}");
        assert_eq!(out.trim(), format!("pushwire {}", env!("CARGO_PKG_VERSION")), "{flag}");
    }
}

#[test]
fn bad_command_line_exits_2() {
    let (st, _, err) = run_cli(&["--listen", "127.0.0.1:0", "--no-such-option"], &[]);
    assert_eq!(st.code(), Some(2), "unknown option: {err}");
    assert!(err.contains("no-such-option"), "{err}");
    let (st, _, err) = run_cli(&["--listen", "127.0.0.1:0", "--max-body", "lots"], &[]);
    assert_eq!(st.code(), Some(2), "bad value: {err}");
    let (st, _, err) = run_cli(&["--listen"], &[]);
    assert_eq!(st.code(), Some(2), "missing value: {err}");
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Issue 2: "the `PORT` environment variable sets the port when `--listen` is absent".
#[test]
fn port_env_sets_the_port() {
    let port = free_port();
    let p = port.to_string();
    let server = Server::start_exact(&["--stats-interval", "0"], &[("PORT", p.as_str())], &["HOST"]);
    assert_eq!(server.addr, SocketAddr::from(([127, 0, 0, 1], port)));
    let mut c = Client::connect(SocketAddr::from(([127, 0, 0, 1], port)));
    assert_ok_healthz(&get_on(&mut c, "/healthz"));
}

/// `--listen` wins over `PORT`; a `PORT` that is not a port number is a usage error.
#[test]
fn listen_overrides_port_env_and_bad_port_exits_2() {
    let port = free_port();
    let p = port.to_string();
    let server = Server::start_with_env(&[], &[("PORT", p.as_str())]);
    assert_ne!(server.addr.port(), port);
    assert_ok_healthz(&server.get("/healthz"));
    let (st, _, err) = run_cli(&["--stats-interval", "0"], &[("PORT", "notaport")]);
    assert_eq!(st.code(), Some(2), "{err}");
}

/// Rule (issue 10): durations that are not finite, negative or past what a deadline can hold
/// are refused with a message naming the option (exit 2), never a panic.
#[test]
fn bad_durations_are_refused_with_a_message() {
    for (opt, v) in [("--header-timeout", "inf"), ("--poll-timeout", "NaN"), ("--drain-timeout", "1e300"), ("--body-timeout", "-1"), ("--write-timeout", "soon")] {
        let (st, _, err) = run_cli(&["--listen", "127.0.0.1:0", opt, v], &[]);
        assert_eq!(st.code(), Some(2), "{opt} {v}: {err}");
        assert!(err.contains(opt) && err.contains(v) && !err.contains("panicked"), "{opt} {v}: {err}");
    }
}

/// Rule (issue 10): the open-files soft limit is raised to the hard limit at start (each
/// connection is a descriptor), and `--max-connections` above it draws a warning.
#[test]
fn the_open_files_limit_is_raised_and_checked() {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("ulimit -S -n 256 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_pushwire"))
        .args(["--listen", "127.0.0.1:0", "--stats-interval", "0", "--max-connections", "99999999"]);
    let server = Server::spawn(cmd);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.pid())).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap().to_string();
    let f: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(f[3], f[4], "soft limit raised to the hard one: {line}");
    assert_ne!(f[3], "256", "{line}");
    assert!(server.log().contains("--max-connections 99999999 is above"), "{}", server.log());
}

// ---------------------------------------------------------------------------------------------
// --reuse-port and --node-id (issue 12: several processes, one port)
// ---------------------------------------------------------------------------------------------

/// Rule: with `--reuse-port`, two processes listen on one port and the kernel spreads new
/// connections over both (each answers `/healthz` with its `X-Pushwire-Node`); without it the
/// second cannot bind and says so.
#[test]
fn reuse_port_lets_two_processes_share_a_port() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let start = |id: &str| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pushwire"));
        cmd.args(["--listen", &listen, "--stats-interval", "0", "--reuse-port", "--node-id", id]);
        Server::spawn(cmd)
    };
    let a = start("node-a");
    let b = start("node-b");
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..200 {
        let r = a.request("GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        assert_eq!(r.status, 200);
        *seen.entry(r.header("x-pushwire-node").unwrap_or("none").to_string()).or_insert(0) += 1;
        if seen.len() == 2 {
            break;
        }
    }
    assert_eq!(seen.keys().collect::<Vec<_>>(), ["node-a", "node-b"], "both processes accept: {seen:?}");
    assert!(stats(&a)["node_id"].as_str().is_some_and(|n| n == "node-a" || n == "node-b"));
    drop(b);
    // Without --reuse-port a second process on a taken port fails at start.
    let (status, _, err) = run_cli(&["--listen", &listen, "--stats-interval", "0"], &[]);
    assert!(!status.success() && err.contains("cannot start"), "{status:?} {err}");
    let (status, _, err) = run_cli(&["--node-id", "bad id!"], &[]);
    assert_eq!(status.code(), Some(2), "{err}");
}
