//! Harnesses for the real peers the `*_e2e` tests run against (Kannel, Jasmin), and the
//! process and port helpers both use.

pub mod jasmin;
pub mod kannel;

use std::io;
use std::net::TcpStream;
use std::path::Path;
use std::process::Child;
use std::thread;
use std::time::{Duration, Instant};

/// Stops a peer process: SIGTERM, then SIGKILL after 5 s.
fn stop(mut child: Child) {
    if let Ok(None) = child.try_wait() {
        crate::common::sigterm(&child);
        let deadline = Instant::now() + Duration::from_secs(5);
        while let Ok(None) = child.try_wait() {
            if Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
    let _ = child.wait();
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn free_ports(n: usize) -> io::Result<Vec<u16>> {
    Ok(crate::common::free_ports(n))
}

fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok()
}

/// UTF-16BE bytes as text (lossy; an odd last byte is padded with 0).
fn decode_utf16be(bytes: &[u8]) -> String {
    let units: Vec<u16> = bytes
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))
        .collect();
    String::from_utf16_lossy(&units)
}
