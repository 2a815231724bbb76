//! Outbound address policy: refuse remote targets that resolve to loopback, private,
//! link-local or otherwise non-public addresses (`network.deny_private_addresses`), so that a
//! rotation configured with a hostile host name cannot reach the service's own network.
//!
//! Check the addresses you connect to, not a name you resolved earlier: [`resolve`] returns the
//! permitted addresses, and [`GuardedResolver`] does the same inside reqwest, so DNS rebinding
//! between check and connect does not help an attacker.

pub mod pinned;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

/// Which resolved addresses a remote target may have.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AddressPolicy {
    /// Any address (the default: rotator usually rotates credentials of internal systems).
    #[default]
    Any,
    /// Publicly routable addresses only.
    PublicOnly,
}

/// A target refused by the address policy, or not resolvable.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// The name did not resolve.
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        /// The host name.
        host: String,
        /// The resolver error.
        source: std::io::Error,
    },
    /// The name resolved only to refused addresses (or is such an address).
    #[error(
        "{host} resolves to {addr}, a loopback, private or link-local address, which \
         network.deny_private_addresses refuses"
    )]
    NonPublicAddress {
        /// The host name.
        host: String,
        /// The first refused address.
        addr: IpAddr,
    },
}

// === impl AddressPolicy ===

impl AddressPolicy {
    /// Whether the policy lets a connection go to `ip`.
    pub fn permits(self, ip: IpAddr) -> bool {
        match self {
            Self::Any => true,
            Self::PublicOnly => is_public(ip),
        }
    }

    /// Checks a host that is an IP literal; names pass (check them with [`resolve`]).
    ///
    /// # Errors
    ///
    /// [`GuardError::NonPublicAddress`].
    pub fn check_literal(self, host: &str) -> Result<(), GuardError> {
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        match literal.parse::<IpAddr>() {
            Ok(ip) if !self.permits(ip) => Err(GuardError::NonPublicAddress {
                host: host.to_owned(),
                addr: ip,
            }),
            _ => Ok(()),
        }
    }
}

/// Resolves `host:port` and keeps the addresses the policy permits.
///
/// # Errors
///
/// Resolution failures, or [`GuardError::NonPublicAddress`] when no address is permitted.
pub async fn resolve(
    host: &str,
    port: u16,
    policy: AddressPolicy,
) -> Result<Vec<SocketAddr>, GuardError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|source| GuardError::Resolve {
            host: host.to_owned(),
            source,
        })?
        .collect();
    filter(host, addrs, policy)
}

fn filter(
    host: &str,
    addrs: Vec<SocketAddr>,
    policy: AddressPolicy,
) -> Result<Vec<SocketAddr>, GuardError> {
    let first = addrs.first().copied();
    let permitted: Vec<SocketAddr> = addrs
        .into_iter()
        .filter(|a| policy.permits(a.ip()))
        .collect();
    match (permitted.is_empty(), first) {
        (false, _) => Ok(permitted),
        (true, Some(refused)) => Err(GuardError::NonPublicAddress {
            host: host.to_owned(),
            addr: refused.ip(),
        }),
        (true, None) => Err(GuardError::Resolve {
            host: host.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no address"),
        }),
    }
}

/// Whether `ip` is publicly routable: not loopback, private, link-local, shared (CGNAT),
/// multicast, documentation, benchmarking, reserved or unspecified; mapped and embedded IPv4
/// addresses are judged by their IPv4 part.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let refused = ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT), RFC 6598
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments, RFC 6890
        || (a == 198 && (b == 18 || b == 19)) // benchmarking, RFC 2544
        || a >= 240; // reserved
    !refused
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let s = ip.segments();
    // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) carry an IPv4 address.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return is_public_v4(Ipv4Addr::new(
            (s[6] >> 8) as u8,
            s[6] as u8,
            (s[7] >> 8) as u8,
            s[7] as u8,
        ));
    }
    if s[0] == 0x2002 {
        return is_public_v4(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    let refused = ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local, fc00::/7
        || (s[0] & 0xffc0) == 0xfe80 // link-local, fe80::/10
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated), fec0::/10
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || s[0..6] == [0, 0, 0, 0, 0, 0]; // IPv4-compatible (deprecated) and friends
    !refused
}

/// A reqwest resolver that drops addresses the policy refuses, and fails when none is left.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver(pub AddressPolicy);

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0;
        Box::pin(async move {
            let addrs = resolve(name.as_str(), 0, policy).await?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// A shareable resolver, as reqwest's builder wants it.
pub fn guarded_resolver(policy: AddressPolicy) -> Arc<GuardedResolver> {
    Arc::new(GuardedResolver(policy))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_public_addresses_are_recognised() {
        let refused = [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.2.1",
            "198.18.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "2002:a00:1::",
            "2001:db8::1",
        ];
        for ip in refused {
            assert!(!is_public(ip.parse().expect("ip")), "{ip} must be refused");
        }
        for ip in ["1.1.1.1", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8"] {
            assert!(is_public(ip.parse().expect("ip")), "{ip} must pass");
        }
    }

    #[test]
    fn literals_are_checked_and_names_left_to_resolution() {
        let deny = AddressPolicy::PublicOnly;
        assert!(deny.check_literal("127.0.0.1").is_err());
        assert!(deny.check_literal("[::1]").is_err());
        assert!(deny.check_literal("8.8.8.8").is_ok());
        assert!(deny.check_literal("example.com").is_ok());
        assert!(AddressPolicy::Any.check_literal("127.0.0.1").is_ok());
    }

    #[tokio::test]
    async fn resolution_keeps_only_permitted_addresses() {
        let refused = resolve("localhost", 5432, AddressPolicy::PublicOnly).await;
        assert!(matches!(
            refused,
            Err(GuardError::NonPublicAddress { .. }) | Err(GuardError::Resolve { .. })
        ));
        let allowed = resolve("127.0.0.1", 5432, AddressPolicy::Any)
            .await
            .expect("a literal resolves");
        assert_eq!(allowed, vec![SocketAddr::from(([127, 0, 0, 1], 5432))]);
    }
}
