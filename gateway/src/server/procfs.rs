//! Whether a process holds a listening TCP socket on an address (Linux `/proc`): lets an
//! upgrade refuse an address some other program holds before it touches the running
//! process, instead of finding out once that process was told to stop.

use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The `st` column of a listening socket in `/proc/net/tcp*`.
const TCP_LISTEN: &str = "0A";

/// Who listens where `address` would: a listener on the same port at the same address,
/// or where either is a wildcard (`0.0.0.0:P` and `127.0.0.1:P` cannot both be bound).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Holder {
    /// The address it listens on (not `address` itself when only the port is shared).
    pub address: SocketAddr,
    /// The process, when one whose open files this process can read holds it.
    pub pid: Option<i32>,
    /// That process's name (`/proc/PID/comm`).
    pub name: Option<String>,
}

/// Whether process `pid` has a socket listening on exactly `address`.
pub(super) fn listens_on(pid: i32, address: SocketAddr) -> io::Result<bool> {
    let inodes = socket_inodes(pid)?;
    Ok(listeners(pid, address)?
        .iter()
        .any(|(a, inode)| *a == address && inodes.contains(inode)))
}

/// Who holds the port `address` wants, looked for among the processes this one can see,
/// `pid_first` (the process an upgrade replaces) before the others: for a few seconds after a
/// hand-over it shares its listening sockets with the process it replaced. `None` when no
/// listener in this network namespace conflicts with it.
pub(super) fn holder(address: SocketAddr, pid_first: Option<i32>) -> io::Result<Option<Holder>> {
    let me = std::process::id() as i32;
    let conflicting: Vec<(SocketAddr, u64)> = listeners(me, address)?
        .into_iter()
        .filter(|(a, _)| {
            a.port() == address.port()
                && (a.ip() == address.ip()
                    || a.ip().is_unspecified()
                    || address.ip().is_unspecified())
        })
        .collect();
    // The exact address first: that is the one the kernel refused.
    let Some(&(first, _)) = conflicting
        .iter()
        .find(|(a, _)| *a == address)
        .or(conflicting.first())
    else {
        return Ok(None);
    };
    let others = std::fs::read_dir("/proc")?
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok());
    for pid in pid_first.into_iter().chain(others) {
        let Ok(inodes) = socket_inodes(pid) else {
            continue; // gone, or not ours to read
        };
        let mine = |a: &SocketAddr| {
            conflicting
                .iter()
                .any(|(c, i)| c == a && inodes.contains(i))
        };
        let held = if mine(&first) {
            Some(first)
        } else {
            conflicting.iter().map(|(a, _)| *a).find(mine)
        };
        if let Some(address) = held {
            let name = std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .ok()
                .map(|n| n.trim().to_string());
            return Ok(Some(Holder {
                address,
                pid: Some(pid),
                name,
            }));
        }
    }
    Ok(Some(Holder {
        address: first,
        pid: None,
        name: None,
    }))
}

/// The listening sockets of `address`'s family in `pid`'s network namespace: address
/// and inode.
fn listeners(pid: i32, address: SocketAddr) -> io::Result<Vec<(SocketAddr, u64)>> {
    let table = match address {
        SocketAddr::V4(_) => "tcp",
        SocketAddr::V6(_) => "tcp6",
    };
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}"))?;
    Ok(text
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() <= 9 || f[3] != TCP_LISTEN {
                return None;
            }
            Some((parse_address(f[1])?, f[9].parse::<u64>().ok()?))
        })
        .collect())
}

/// The inodes of the sockets among `pid`'s open files.
fn socket_inodes(pid: i32) -> io::Result<HashSet<u64>> {
    let mut inodes = HashSet::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        let Ok(target) = std::fs::read_link(entry?.path()) else {
            continue; // closed meanwhile
        };
        let target = target.to_string_lossy();
        if let Some(n) = target
            .strip_prefix("socket:[")
            .and_then(|t| t.strip_suffix(']'))
            .and_then(|n| n.parse().ok())
        {
            inodes.insert(n);
        }
    }
    Ok(inodes)
}

/// `0100007F:1F90` (IPv4) or 32 hex digits and a port (IPv6): the kernel prints each
/// 32-bit word of the address in host byte order, the port as a number.
fn parse_address(field: &str) -> Option<SocketAddr> {
    let (ip, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let hex = ip.get(i * 8..i * 8 + 8)?;
        Some(u32::from_str_radix(hex, 16).ok()?.to_ne_bytes())
    };
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_its_own_listener_and_no_other() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        let pid = std::process::id() as i32;
        assert!(listens_on(pid, address).expect("proc"));
        let other = SocketAddr::new(address.ip(), address.port().wrapping_add(1).max(1));
        assert!(!listens_on(pid, other).expect("proc"));
        drop(listener);
        assert!(!listens_on(pid, address).expect("proc"));
    }

    #[test]
    fn names_who_holds_an_address_or_its_port() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        let me = Some(std::process::id() as i32);
        let held = holder(address, None).expect("proc").expect("a holder");
        assert_eq!((held.address, held.pid), (address, me));
        // The wildcard of the same port conflicts with it too.
        let wildcard = SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), address.port());
        let held = holder(wildcard, me).expect("proc").expect("a holder");
        assert_eq!((held.address, held.pid), (address, me));
        drop(listener);
        assert_eq!(holder(address, me).expect("proc"), None);
    }

    #[test]
    fn finds_an_ipv6_listener() {
        let Ok(listener) = std::net::TcpListener::bind("[::1]:0") else {
            return; // no IPv6 loopback here
        };
        let address = listener.local_addr().expect("address");
        assert!(listens_on(std::process::id() as i32, address).expect("proc"));
    }

    #[test]
    fn parses_the_kernel_format() {
        let v4 = if cfg!(target_endian = "little") {
            "0100007F:1F90"
        } else {
            "7F000001:1F90"
        };
        assert_eq!(
            parse_address(v4),
            Some("127.0.0.1:8080".parse().expect("addr"))
        );
        assert_eq!(
            parse_address("00000000000000000000000000000000:0050"),
            Some("[::]:80".parse().expect("addr"))
        );
        assert_eq!(parse_address("zz:1"), None);
        assert_eq!(parse_address("0100007F"), None);
    }
}
