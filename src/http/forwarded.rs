//! Who the client is behind proxies the operator trusts (`--trusted-proxies`): the peer's
//! address unless the peer is one of them, else `X-Forwarded-For` read from the right, skipping
//! trusted hops, as nginx's realip module does with `real_ip_recursive on`. A client that is
//! not a trusted proxy cannot change the address logged for it.

use core::net::{IpAddr, SocketAddr};

/// An address or a block of them: `10.0.0.0/8`, `127.0.0.1`, `2001:db8::/32`, `::1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpBlock {
    network: IpAddr,
    prefix: u8,
}

impl IpBlock {
    /// `ADDR` or `ADDR/BITS`; host bits set under the prefix are refused (a typo, most often).
    pub fn parse(text: &str) -> Result<IpBlock, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, bits)) => (addr, Some(bits)),
            None => (text, None),
        };
        let network: IpAddr = addr.parse().map_err(|_| format!("not an IP address: {addr:?}"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(bits) => bits
                .parse()
                .ok()
                .filter(|&bits| bits <= max)
                .ok_or_else(|| format!("{text:?}: the prefix length is 0 to {max}"))?,
        };
        let block = IpBlock { network, prefix };
        if block.masked(network) != bits(network) {
            return Err(format!("{text:?} has bits set after the first {prefix}"));
        }
        Ok(block)
    }

    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = addr.to_canonical(); // ::ffff:10.1.2.3 from a dual-stack listener is 10.1.2.3
        addr.is_ipv4() == self.network.is_ipv4() && self.masked(addr) == bits(self.network)
    }

    /// `addr`'s bits under this block's prefix (the rest zero), as a 128-bit number.
    fn masked(&self, addr: IpAddr) -> u128 {
        let width = if addr.is_ipv4() { 32 } else { 128 };
        let host_bits = width - u32::from(self.prefix).min(width);
        let kept = bits(addr).checked_shr(host_bits).unwrap_or(0);
        kept.checked_shl(host_bits).unwrap_or(0)
    }
}

fn bits(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// One `X-Forwarded-For` entry: an address, or one with a port (`192.0.2.1:4711`,
/// `[2001:db8::1]:4711`), as some proxies write them.
fn entry_address(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry.parse().ok().or_else(|| entry.parse::<SocketAddr>().ok().map(|addr| addr.ip()))
}

/// The client of a request from `peer` carrying `forwarded_for` (every `X-Forwarded-For`
/// line, joined): `peer` unless it is in `trusted`; else the rightmost entry that is not
/// trusted (each trusted hop vouches for the one to its left), or the leftmost if all are.
/// An entry that is not an address ends the walk at the hop that added it.
pub fn client_address(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[IpBlock]) -> IpAddr {
    let is_trusted = |addr: IpAddr| trusted.iter().any(|block| block.contains(addr));
    let (Some(list), true) = (forwarded_for, is_trusted(peer)) else { return peer };
    let mut client = peer;
    for entry in list.rsplit(',') {
        match entry_address(entry) {
            Some(addr) => client = addr.to_canonical(),
            None => break,
        }
        if !is_trusted(client) {
            break;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocks(list: &[&str]) -> Vec<IpBlock> {
        list.iter().map(|text| IpBlock::parse(text).unwrap()).collect()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn blocks_parse_and_contain_what_they_say() {
        let block = IpBlock::parse("10.0.0.0/8").unwrap();
        assert!(block.contains(ip("10.255.1.2")) && block.contains(ip("::ffff:10.0.0.1")));
        assert!(!block.contains(ip("11.0.0.1")) && !block.contains(ip("::1")));
        let one = IpBlock::parse("127.0.0.1").unwrap();
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        let v6 = IpBlock::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8:1::5")) && !v6.contains(ip("2001:db9::1")));
        assert!(IpBlock::parse("0.0.0.0/0").unwrap().contains(ip("203.0.113.9")));
        assert!(IpBlock::parse("::/0").unwrap().contains(ip("2001:db8::1")));
        assert!(IpBlock::parse("::1/128").unwrap().contains(ip("::1")));
        for bad in ["", "10.0.0.0/33", "10.0.0.1/8", "::1/129", "example.org", "10.0.0.0/", "10.0.0.0/x"] {
            assert!(IpBlock::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn only_a_trusted_peer_names_the_client_and_trusted_hops_are_skipped() {
        let trusted = blocks(&["127.0.0.1", "10.0.0.0/8"]);
        let cases = [
            // (peer, X-Forwarded-For, logged client)
            ("203.0.113.5", Some("198.51.100.1"), "203.0.113.5"), // not a trusted peer: ignored
            ("127.0.0.1", None, "127.0.0.1"),
            ("127.0.0.1", Some("198.51.100.1"), "198.51.100.1"),
            ("127.0.0.1", Some("6.6.6.6, 198.51.100.1, 10.1.1.1"), "198.51.100.1"), // spoofed left part
            ("127.0.0.1", Some("10.0.0.2, 10.0.0.3"), "10.0.0.2"), // all trusted: the leftmost
            ("127.0.0.1", Some("garbage, 198.51.100.1"), "198.51.100.1"),
            ("127.0.0.1", Some("198.51.100.1, garbage"), "127.0.0.1"), // the hop that wrote it
            ("127.0.0.1", Some("10.0.0.9, garbage"), "127.0.0.1"),
            ("127.0.0.1", Some("198.51.100.1:4711"), "198.51.100.1"),
            ("127.0.0.1", Some("[2001:db8::1]:4711, 10.2.2.2"), "2001:db8::1"),
            ("::ffff:127.0.0.1", Some("198.51.100.7"), "198.51.100.7"),
            ("127.0.0.1", Some("::ffff:198.51.100.8"), "198.51.100.8"),
        ];
        for (peer, forwarded, client) in cases {
            assert_eq!(client_address(ip(peer), forwarded, &trusted), ip(client), "{peer} {forwarded:?}");
        }
        assert_eq!(client_address(ip("127.0.0.1"), Some("198.51.100.1"), &[]), ip("127.0.0.1"));
    }
}
