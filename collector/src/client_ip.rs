//! The visitor's IP address: the socket's peer, or, behind proxies the operator trusts, the
//! rightmost address of `X-Forwarded-For` that is not one of those proxies. Visitors can write
//! any `X-Forwarded-For` they like, so without trusted proxies the header is ignored.

use axum::http::HeaderMap;
use std::net::IpAddr;

/// An address block such as `10.0.0.0/8` or `fd00::/8`; a bare address is a block of one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.net, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                mask(u32::from(net).into(), 32, self.prefix)
                    == mask(u32::from(ip).into(), 32, self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                mask(net.into(), 128, self.prefix) == mask(ip.into(), 128, self.prefix)
            }
            _ => false,
        }
    }
}

fn mask(bits: u128, width: u8, prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        bits >> (width - prefix)
    }
}

/// IPv4 addresses that arrive mapped into IPv6 (`::ffff:10.0.0.1`) compare as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let net: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{s}` is not an IP address or CIDR block like 10.0.0.0/8"))?;
        let net = canonical(net);
        let width = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => width,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= width)
                .ok_or_else(|| format!("`{s}`: the prefix length must be 0 to {width}"))?,
        };
        Ok(Cidr { net, prefix })
    }
}

/// The proxies whose `X-Forwarded-For` is believed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    /// Parses CIDR blocks; the error names the first bad one.
    pub fn parse<S: AsRef<str>>(blocks: &[S]) -> Result<Self, String> {
        blocks
            .iter()
            .map(|b| b.as_ref().parse())
            .collect::<Result<Vec<Cidr>, _>>()
            .map(TrustedProxies)
    }

    pub fn extend(&mut self, other: TrustedProxies) {
        self.0.extend(other.0);
    }

    pub(crate) fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }

    /// The client's address: `peer` unless `peer` is a trusted proxy, then the rightmost
    /// `X-Forwarded-For` entry that is not trusted (the leftmost if all are, since the first
    /// proxy saw the client). Entries that are not addresses stop the walk: nothing left of
    /// them can be believed.
    pub fn client_ip(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let peer = peer?;
        if !self.trusts(peer) {
            return Some(peer);
        }
        let mut chain: Vec<&str> = Vec::new();
        for value in headers.get_all("x-forwarded-for") {
            let Ok(text) = value.to_str() else {
                return Some(peer);
            };
            chain.extend(text.split(',').map(str::trim).filter(|s| !s.is_empty()));
        }
        let mut client = peer;
        for entry in chain.iter().rev() {
            let Some(ip) = parse_forwarded(entry) else {
                return Some(client);
            };
            client = canonical(ip);
            if !self.trusts(client) {
                return Some(client);
            }
        }
        Some(client)
    }
}

/// An `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5678`, `[::1]:80`).
fn parse_forwarded(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse() {
        return Some(ip);
    }
    if let Ok(sock) = entry.parse::<std::net::SocketAddr>() {
        return Some(sock.ip());
    }
    entry.strip_prefix('[')?.split(']').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn cidr_blocks_match_their_addresses_only() {
        let c: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(c.contains("10.1.200.3".parse().unwrap()));
        assert!(!c.contains("10.2.0.1".parse().unwrap()));
        assert!(
            c.contains("::ffff:10.1.0.9".parse().unwrap()),
            "mapped IPv4"
        );
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("10.1.0.1".parse().unwrap()));
        let one: Cidr = "192.0.2.7".parse().unwrap();
        assert!(one.contains("192.0.2.7".parse().unwrap()));
        assert!(!one.contains("192.0.2.8".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("203.0.113.1".parse().unwrap()));
    }

    #[test]
    fn a_bad_block_is_named() {
        let err = TrustedProxies::parse(&["10.0.0.0/8", "proxy.internal"]).unwrap_err();
        assert!(err.contains("proxy.internal"), "{err}");
        let err = TrustedProxies::parse(&["10.0.0.0/33"]).unwrap_err();
        assert!(
            err.contains("10.0.0.0/33") && err.contains("0 to 32"),
            "{err}"
        );
    }

    #[test]
    fn without_trusted_proxies_a_forged_header_is_ignored() {
        let none = TrustedProxies::default();
        let h = headers(&["198.51.100.9"]);
        assert_eq!(none.client_ip(ip("203.0.113.5"), &h), ip("203.0.113.5"));
    }

    #[test]
    fn behind_trusted_proxies_the_rightmost_untrusted_address_is_the_client() {
        let proxies = TrustedProxies::parse(&["10.0.0.0/8"]).unwrap();
        // The visitor forged the first entry; the edge proxy appended the real address.
        let h = headers(&["1.1.1.1, 203.0.113.5", "10.0.0.2"]);
        assert_eq!(proxies.client_ip(ip("10.0.0.1"), &h), ip("203.0.113.5"));
        // A peer that is not a trusted proxy is the client, whatever it claims.
        assert_eq!(
            proxies.client_ip(ip("198.51.100.1"), &h),
            ip("198.51.100.1")
        );
        // No header: the proxy itself is all we know.
        assert_eq!(
            proxies.client_ip(ip("10.0.0.1"), &HeaderMap::new()),
            ip("10.0.0.1")
        );
        // Ports and garbage.
        let h = headers(&["[2001:db8::7]:443, 10.0.0.3:80"]);
        assert_eq!(proxies.client_ip(ip("10.0.0.1"), &h), ip("2001:db8::7"));
        let h = headers(&["203.0.113.5, not-an-ip, 10.0.0.3"]);
        assert_eq!(proxies.client_ip(ip("10.0.0.1"), &h), ip("10.0.0.3"));
    }
}
