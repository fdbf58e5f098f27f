//! Listening sockets as nats-server opens them: Go's `net.Listen("tcp", host:port)`.
//!
//! A wildcard host (none, `0.0.0.0` or `::`) listens on IPv4 and IPv6 at once (one
//! IPv6 socket with `IPV6_V6ONLY` off, IPv4 alone where the host has no IPv6); an IPv6
//! literal is written without brackets on the command line and with them in a
//! `listen: "[::1]:4222"` value; a host name listens on its first IPv4 address (its
//! first address when it has none). Used for every port natrium opens.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, ToSocketAddrs};

use socket2::{Domain, Protocol, Socket, Type};

/// `host:port` as Go's `net.JoinHostPort` writes it (`[::1]:4222` for IPv6 hosts).
pub fn host_port(host: &str, port: impl std::fmt::Display) -> String {
    format!("{}:{port}", url_host(host))
}

/// A host as it stands in a URL (`[::1]` for IPv6 hosts).
fn url_host(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// `HOST:PORT` a client on this machine uses to reach a listener on `host`: loopback
/// for a wildcard host (ports file URLs).
pub fn local_host_port(host: &str, port: u16) -> String {
    if is_wildcard(host) {
        host_port("127.0.0.1", port)
    } else {
        host_port(host, port)
    }
}

/// `HOST:PORT` for each address clients may use to reach a listener on `host`: the
/// host itself, or for a wildcard host every non-loopback interface address (loopback
/// when there is none), as nats-server lists them in `connect_urls`.
pub fn client_urls(host: &str, port: u16) -> Vec<String> {
    if !is_wildcard(host) {
        return vec![host_port(host, port)];
    }
    let v4_only = host.parse::<IpAddr>().is_ok_and(|ip| ip.is_ipv4());
    let mut urls: Vec<String> = interface_addresses()
        .into_iter()
        .filter(|ip| !(ip.is_loopback() || v4_only && ip.is_ipv6()))
        .filter(|ip| !matches!(ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80))
        .map(|ip| host_port(&ip.to_string(), port))
        .collect();
    urls.dedup();
    if urls.is_empty() {
        urls.push(host_port("127.0.0.1", port));
    }
    urls
}

/// The addresses of this host's interfaces.
fn interface_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    // SAFETY: getifaddrs allocates a list that freeifaddrs releases; every node and
    // address pointer is checked before it is read.
    unsafe {
        let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
        if libc::getifaddrs(&mut list) != 0 {
            return out;
        }
        let mut node = list;
        while !node.is_null() {
            let addr = (*node).ifa_addr;
            if !addr.is_null() {
                match (*addr).sa_family as i32 {
                    libc::AF_INET => {
                        let a = &*(addr as *const libc::sockaddr_in);
                        out.push(IpAddr::from(u32::from_be(a.sin_addr.s_addr).to_be_bytes()));
                    }
                    libc::AF_INET6 => {
                        let a = &*(addr as *const libc::sockaddr_in6);
                        out.push(IpAddr::from(a.sin6_addr.s6_addr));
                    }
                    _ => {}
                }
            }
            node = (*node).ifa_next;
        }
        libc::freeifaddrs(list);
    }
    out
}

/// True for the hosts that mean "every address": none, `0.0.0.0`, `::`.
pub fn is_wildcard(host: &str) -> bool {
    host.is_empty() || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified())
}

/// Where a listener binds: the socket address and whether it takes IPv4 too.
struct Target {
    addr: SocketAddr,
    dual_stack: bool,
}

/// Resolves `host` for listening; the error is the text after `listen tcp` in Go's
/// message (`: lookup x: no such host`, ` [::1]:4222: ...`).
fn resolve(host: &str, port: u16) -> Result<Target, String> {
    if is_wildcard(host) {
        return Ok(if ipv6_available() {
            Target {
                addr: SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port),
                dual_stack: true,
            }
        } else {
            Target {
                addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port),
                dual_stack: false,
            }
        });
    }
    if host.contains('[') || host.contains(']') {
        // What Go says of a bracketed host joined to a port a second time.
        return Err(format!(
            ": address {}: missing port in address",
            host_port(host, port)
        ));
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(Target {
            addr: SocketAddr::new(ip, port),
            dual_stack: false,
        });
    }
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|_| format!(": lookup {host}: no such host"))?
        .collect();
    let addr = addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!(": lookup {host}: no such host"))?;
    Ok(Target {
        addr,
        dual_stack: false,
    })
}

/// Whether this host can open IPv6 sockets (a kernel booted with `ipv6.disable=1`
/// cannot; Go then listens on IPv4 only, as here).
fn ipv6_available() -> bool {
    Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP)).is_ok()
}

/// Opens a listening TCP socket on `host:port` (port 0 or -1 picks a free one). The error
/// is Go's text for the failure, e.g. `listen tcp 0.0.0.0:4222: bind: address already
/// in use`, for the caller's `[FTL]` line.
pub fn bind_tcp(host: &str, port: i64) -> Result<TcpListener, String> {
    // -1 is nats-server's "any free port"; other negative ports are invalid, as in Go.
    let port = if port == -1 { 0 } else { port };
    let Ok(port) = u16::try_from(port) else {
        return Err(format!("listen tcp: address {port}: invalid port"));
    };
    let shown = host_port(host, port);
    let target = resolve(host, port).map_err(|e| format!("listen tcp{e}"))?;
    let fail = |e: std::io::Error| {
        let what = match e.kind() {
            std::io::ErrorKind::AddrInUse => "bind: address already in use".to_string(),
            std::io::ErrorKind::AddrNotAvailable => {
                "bind: cannot assign requested address".to_string()
            }
            std::io::ErrorKind::PermissionDenied => "bind: permission denied".to_string(),
            _ => e.to_string(),
        };
        format!("listen tcp {shown}: {what}")
    };
    let socket = Socket::new(
        Domain::for_address(target.addr),
        Type::STREAM,
        Some(Protocol::TCP),
    )
    .map_err(fail)?;
    // As Go: a restarted server may bind while its predecessor's connections linger
    // in TIME_WAIT. No SO_REUSEPORT: a second server on the port must fail to bind.
    socket.set_reuse_address(true).map_err(fail)?;
    if target.addr.is_ipv6() {
        socket.set_only_v6(!target.dual_stack).map_err(fail)?;
    }
    socket.set_cloexec(true).map_err(fail)?;
    socket.bind(&target.addr.into()).map_err(fail)?;
    socket.listen(1024).map_err(fail)?;
    Ok(socket.into())
}

/// The port a listener got (the one asked for, or the free one picked for port 0).
pub fn bound_port(listener: &TcpListener) -> u16 {
    listener.local_addr().map(|a| a.port()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_hosts_as_go() {
        assert_eq!(host_port("0.0.0.0", 4222), "0.0.0.0:4222");
        assert_eq!(host_port("::", 4222), "[::]:4222");
        assert_eq!(host_port("::1", "4222"), "[::1]:4222");
        assert_eq!(host_port("localhost", 1), "localhost:1");
    }

    #[test]
    fn wildcards() {
        for h in ["", "0.0.0.0", "::", "0:0::0"] {
            assert!(is_wildcard(h), "{h}");
        }
        for h in ["127.0.0.1", "::1", "localhost"] {
            assert!(!is_wildcard(h), "{h}");
        }
    }

    #[test]
    fn wildcard_listens_on_both_families() {
        let l = bind_tcp("0.0.0.0", 0).unwrap();
        let port = bound_port(&l);
        std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        if ipv6_available() {
            std::net::TcpStream::connect(("::1", port)).unwrap();
        }
    }

    #[test]
    fn second_bind_fails_as_go() {
        let l = bind_tcp("127.0.0.1", 0).unwrap();
        let port = bound_port(&l);
        let e = bind_tcp("127.0.0.1", port.into()).unwrap_err();
        assert_eq!(
            e,
            format!("listen tcp 127.0.0.1:{port}: bind: address already in use")
        );
    }

    #[test]
    fn bad_hosts() {
        for (host, port, want) in [
            (
                "[::1]",
                4333,
                "listen tcp: address [[::1]]:4333: missing port in address",
            ),
            (
                "nosuchhost.invalid",
                4333,
                "listen tcp: lookup nosuchhost.invalid: no such host",
            ),
            ("0.0.0.0", 99999, "listen tcp: address 99999: invalid port"),
        ] {
            assert_eq!(bind_tcp(host, port).unwrap_err(), want, "{host}");
        }
    }
}
