//! What the load benches (`ws_deflate`, `tls_cost`) share: their settings from the
//! environment, CPU pinning (server on CPU 0, client on CPU 1, as the kit's bench.sh does),
//! a process's CPU time, and medians.

#![allow(dead_code)] // each bench uses its own part

/// `name` from the environment, or `default`.
pub fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Pins the calling thread to `cpu`.
pub fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET stays within it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// utime + stime of `pid`, in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let f: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// Kills the server and waits for its port to be free again.
pub fn stop(mut child: std::process::Child) {
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
    std::thread::sleep(std::time::Duration::from_millis(300));
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Posts `body` to channel `bench` on `port`, closed loop with `window` requests in flight
/// (pipelined on one keep-alive connection), until `stop` or the server goes away.
pub fn publisher(port: u16, body: Vec<u8>, window: usize, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) {
    use std::io::{Read, Write};
    pin(1);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_nodelay(true).unwrap();
    let mut req = format!("POST /channels/bench HTTP/1.1\r\nHost: b\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    req.extend_from_slice(&body);
    let batch = req.repeat(window);
    let mut buf = vec![0u8; 65536];
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        if s.write_all(&batch).is_err() {
            return; // the server is gone: the measurement is over
        }
        let (mut seen, mut tail) = (0, Vec::new());
        while seen < window {
            let n = s.read(&mut buf).unwrap_or(0);
            if n == 0 {
                return;
            }
            tail.extend_from_slice(&buf[..n]);
            seen += tail.windows(12).filter(|w| w == b"HTTP/1.1 202").count();
            let keep = tail.len().saturating_sub(11);
            tail.drain(..keep);
        }
    }
}

/// Waits (at most 10 s) until every port on 127.0.0.1 accepts connections.
pub fn wait_for_ports(ports: &[u16]) {
    let t0 = std::time::Instant::now();
    while ports.iter().any(|&p| std::net::TcpStream::connect(("127.0.0.1", p)).is_err()) {
        assert!(t0.elapsed() < std::time::Duration::from_secs(10), "server did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
