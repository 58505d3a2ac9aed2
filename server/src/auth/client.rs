//! Who the client is on the network: the peer's address, or, when the peer
//! is a trusted proxy (`server.trusted_proxies`), the nearest address in
//! `X-Forwarded-For` that is not a trusted proxy. Anything else in that
//! header is the client's own claim and is not believed.

use std::net::IpAddr;

use axum::http::HeaderMap;

/// Trusted proxies: addresses and CIDR ranges.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    nets: Vec<(IpAddr, u8)>,
}

fn prefix_matches(net: IpAddr, len: u8, ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let mask = if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len)) };
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

impl TrustedProxies {
    /// Parses `addr` or `addr/len` entries; the error names the entry.
    pub fn parse(entries: &[String]) -> Result<TrustedProxies, String> {
        let mut nets = Vec::new();
        for e in entries {
            let (addr, len) = match e.split_once('/') {
                Some((a, l)) => (a, Some(l)),
                None => (e.as_str(), None),
            };
            let ip: IpAddr = addr.trim().parse().map_err(|_| format!("`{e}` is not an IP address or CIDR range"))?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let len = match len {
                None => max,
                Some(l) => l
                    .trim()
                    .parse::<u8>()
                    .ok()
                    .filter(|l| *l <= max)
                    .ok_or_else(|| format!("`{e}`: the prefix length must be a number from 0 to {max}"))?,
            };
            nets.push((ip, len));
        }
        Ok(TrustedProxies { nets })
    }

    /// Whether `ip` is a trusted proxy.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|(n, l)| prefix_matches(*n, *l, ip))
    }

    /// The client's address for a request from `peer`.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        // Right to left: each trusted hop appended the address it saw, so
        // the first untrusted one is the client. Walking stops at a hop that
        // does not parse: what lies left of it is the client's own claim
        // (a client cannot make its address unreadable and so fall back to
        // the proxy's, which would throttle everyone behind it).
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        let mut nearest = peer;
        for hop in hops.iter().rev() {
            let Ok(ip) = hop.parse::<IpAddr>() else { break };
            nearest = ip;
            if !self.trusts(ip) {
                return ip;
            }
        }
        nearest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", xff.parse().unwrap());
        h
    }

    #[test]
    fn only_a_trusted_peer_is_believed_and_only_for_the_nearest_untrusted_hop() {
        let p = TrustedProxies::parse(&["10.0.0.0/8".into(), "::1".into()]).unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // An untrusted peer's header is its own claim.
        assert_eq!(p.client_ip(ip("203.0.113.9"), &headers("198.51.100.1")), ip("203.0.113.9"));
        // Through one proxy: the address it saw.
        assert_eq!(p.client_ip(ip("10.1.2.3"), &headers("198.51.100.1")), ip("198.51.100.1"));
        // A forged left part is skipped: the nearest untrusted hop counts.
        assert_eq!(p.client_ip(ip("10.1.2.3"), &headers("1.2.3.4, 198.51.100.1, 10.9.9.9")), ip("198.51.100.1"));
        assert_eq!(p.client_ip(ip("::1"), &headers("2001:db8::7")), ip("2001:db8::7"));
        // Garbage in the header: the peer (only trusted hops were readable).
        assert_eq!(p.client_ip(ip("10.1.2.3"), &headers("not an address")), ip("10.1.2.3"));
        // Garbage left of a real hop cannot pull the client into the proxy's bucket.
        assert_eq!(p.client_ip(ip("10.1.2.3"), &headers("junk, 198.51.100.1")), ip("198.51.100.1"));
        assert_eq!(p.client_ip(ip("10.1.2.3"), &headers("198.51.100.1, junk, 10.9.9.9")), ip("10.9.9.9"));
        assert!(TrustedProxies::parse(&["10.0.0.0/33".into()]).unwrap_err().contains("0 to 32"));
        assert!(TrustedProxies::parse(&["proxy.local".into()]).unwrap_err().contains("proxy.local"));
        assert!(TrustedProxies::parse(&[]).unwrap().client_ip(ip("10.0.0.1"), &headers("1.1.1.1")) == ip("10.0.0.1"));
    }
}
