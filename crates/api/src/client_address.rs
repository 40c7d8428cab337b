//! The address a request comes from, as the login and registration throttles and the request
//! log see it: the connection's peer, or, when that peer is a proxy the operator trusts
//! (`TRUSTED_PROXIES`), the address that proxy reports in `X-Forwarded-For`.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use ipnet::IpNet;
use poem::Request;
use poem::http::HeaderMap;

/// The networks whose connections may say, in `X-Forwarded-For`, whom they forward. Empty by
/// default: the header is then ignored, so a client cannot choose its own address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

/// Why a list of trusted proxies was refused: the entry at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotANetwork(pub String);

impl fmt::Display for NotANetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` is not an IP address or a network like 10.0.0.0/8 or fd00::/8", self.0)
    }
}

impl std::error::Error for NotANetwork {}

impl FromStr for TrustedProxies {
    type Err = NotANetwork;

    /// Comma-separated networks in CIDR notation (`10.0.0.0/8, fd00::/8`); a bare address
    /// stands for itself alone. Blank entries are skipped.
    fn from_str(list: &str) -> Result<Self, NotANetwork> {
        list.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map(|network| network.trunc())
                    .map_err(|_| NotANetwork(entry.to_owned()))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

impl TrustedProxies {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn trusts(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        self.0.iter().any(|network| network.contains(&address))
    }

    /// The client behind a connection from `peer`: `peer` itself unless it is trusted; else
    /// the right-most address of `X-Forwarded-For` that is not itself a trusted proxy (each
    /// proxy appends the peer it saw, so entries left of the first untrusted one could be made
    /// up by the client). An entry that is no address stops the walk at the proxy that wrote
    /// it; when every entry is trusted, the left-most is the client.
    pub fn client_of(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            return peer;
        }
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .collect::<Vec<_>>();
        let mut client = peer;
        for entry in forwarded.iter().rev() {
            let Some(address) = forwarded_address(entry) else { return client };
            client = address;
            if !self.trusts(address) {
                return address;
            }
        }
        client
    }
}

/// An `X-Forwarded-For` entry as an address: `203.0.113.7`, `2001:db8::1`, or with a port as
/// some proxies write it (`203.0.113.7:4711`, `[2001:db8::1]:4711`).
fn forwarded_address(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|socket| socket.ip()))
        .ok()
        .map(|address| address.to_canonical())
}

/// The client address the edge settled on for a request, kept in its data for the handlers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress(pub IpAddr);

/// The client address of `request`: the one the edge settled on, else its connection's peer.
pub fn client_address(request: &Request) -> Option<IpAddr> {
    request
        .data::<ClientAddress>()
        .map(|ClientAddress(address)| *address)
        .or_else(|| request.remote_addr().as_socket_addr().map(|address| address.ip()))
}

#[cfg(test)]
mod tests {
    use poem::http::HeaderValue;

    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("x-forwarded-for", HeaderValue::from_str(value).expect("a header value"));
        }
        headers
    }

    #[test]
    fn lists_of_networks_parse_and_anything_else_is_named() {
        let proxies: TrustedProxies = " 10.0.0.0/8, 192.168.1.7 ,fd00::/8,".parse().expect("valid");
        assert!(proxies.trusts(ip("10.1.2.3")));
        assert!(proxies.trusts(ip("192.168.1.7")));
        assert!(!proxies.trusts(ip("192.168.1.8")));
        assert!(proxies.trusts(ip("fd00::1")));
        assert!(proxies.trusts(ip("::ffff:10.0.0.1")), "an IPv4 peer seen through IPv6");
        assert!("".parse::<TrustedProxies>().expect("empty").is_empty());
        for bad in ["10.0.0.0/33", "example.com", "10.0.0.0/8;10.1.0.0/16", "*"] {
            let error = format!("10.0.0.0/8,{bad}").parse::<TrustedProxies>().expect_err(bad);
            assert_eq!(error, NotANetwork(bad.to_owned()));
        }
    }

    #[test]
    fn the_header_counts_only_from_a_trusted_peer() {
        let none = TrustedProxies::default();
        assert_eq!(none.client_of(ip("127.0.0.1"), &forwarded(&["203.0.113.9"])), ip("127.0.0.1"));
        let proxies: TrustedProxies = "127.0.0.1/32, 10.0.0.0/8".parse().expect("valid");
        assert_eq!(proxies.client_of(ip("198.51.100.1"), &forwarded(&["203.0.113.9"])), ip("198.51.100.1"));
        assert_eq!(proxies.client_of(ip("127.0.0.1"), &forwarded(&[])), ip("127.0.0.1"));
    }

    #[test]
    fn the_right_most_untrusted_entry_is_the_client() {
        let proxies: TrustedProxies = "127.0.0.1/32, 10.0.0.0/8".parse().expect("valid");
        let peer = ip("127.0.0.1");
        let cases: &[(&[&str], &str)] = &[
            (&["203.0.113.9"], "203.0.113.9"),
            // What the client wrote itself, left of what the proxies appended, does not count.
            (&["1.2.3.4, 203.0.113.9"], "203.0.113.9"),
            (&["1.2.3.4", "203.0.113.9, 10.0.0.2"], "203.0.113.9"),
            (&["203.0.113.9:4711"], "203.0.113.9"),
            (&["[2001:db8::1]:4711"], "2001:db8::1"),
            // Garbage stops the walk at the proxy that passed it on.
            (&["203.0.113.9, garbage, 10.0.0.2"], "10.0.0.2"),
            (&["garbage"], "127.0.0.1"),
            // Every hop trusted: the furthest one is the client.
            (&["10.0.0.3, 10.0.0.2"], "10.0.0.3"),
        ];
        for (values, client) in cases {
            assert_eq!(proxies.client_of(peer, &forwarded(values)), ip(client), "{values:?}");
        }
    }
}
