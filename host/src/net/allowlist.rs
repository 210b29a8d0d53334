//! The outbound allowlist: the [`Policy`] a load test runs under, computed from its file before
//! any guest runs (the base URLs plus `[network] allow` / `--allow` entries). Guest config never
//! widens it.
//!
//! Entries: an origin (`http://api.test:8080`, scheme and port must match; `ws` counts as `http`
//! and `wss` as `https`), a host with a port (`api.test:8080`), a host (`api.test`, any port),
//! a wildcard (`*.api.test`), an address (`10.1.2.3`, `[::1]:9000`) or a CIDR (`10.0.0.0/8`).
//! IP spellings are canonicalised by the URL parser (`127.1`, `2130706433`, `0x7f.1` are all
//! 127.0.0.1) and IPv4-mapped IPv6 is matched as IPv4.
//!
//! Non-global addresses (loopback, private, link-local, 169.254.169.254, unspecified, ...)
//! are reachable only when an entry names them literally (an address or CIDR) or a base URL
//! uses them (its host, or the addresses its name resolves to). A name outside the list is
//! never resolved: [`Policy::check_url`] refuses it before DNS.

use super::policy::Policy;
use crate::util::escape;
use crate::wit::RequestError;
use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Where an entry came from; base URLs may reach the non-global addresses their names resolve to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    BaseUrl,
    Allow,
}

/// What an entry matches by.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Host {
    /// An exact host name (lowercase).
    Name(String),
    /// `*.suffix`: any name ending in `.suffix`.
    Suffix(String),
    /// Addresses, as a network (a single address is a /32 or /128).
    Net(IpNet),
}

/// One rule of the list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    host: Host,
    port: Option<u16>,
    /// `Some(true)` for https/wss, `Some(false)` for http/ws, `None` for any.
    tls: Option<bool>,
    source: Source,
    /// The entry as written, to name it in errors.
    text: String,
}

/// A bad `--allow` / `[network] allow` entry.
#[derive(Debug, thiserror::Error)]
#[error(
    "allow entry `{entry}` is not usable: {reason} (e.g. `http://127.0.0.1:8080`, `api.test:443`, `*.api.test`, `10.0.0.0/8`)"
)]
pub struct EntryError {
    entry: String,
    reason: String,
}

impl Entry {
    /// Parses one entry written by a user.
    pub fn parse(text: &str) -> Result<Entry, EntryError> {
        let err = |reason: &str| EntryError {
            entry: escape(text),
            reason: reason.to_owned(),
        };
        let t = text.trim();
        if t.is_empty() {
            return Err(err("it is empty"));
        }
        if let Ok(net) = t.parse::<IpNet>() {
            return Ok(Entry::new(
                Host::Net(canonical_net(net)),
                None,
                None,
                Source::Allow,
                t,
            ));
        }
        if let Ok(ip) = t
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            return Ok(Entry::new(
                Host::Net(single(ip)),
                None,
                None,
                Source::Allow,
                t,
            ));
        }
        if t.contains("://") {
            let url = url::Url::parse(t).map_err(|e| err(&e.to_string()))?;
            return Entry::from_url(&url, Source::Allow).map_err(|r| err(&r));
        }
        if let Some(suffix) = t.strip_prefix("*.") {
            let (name, port) = split_port(suffix).map_err(|r| err(&r))?;
            let host = Host::Suffix(name.to_ascii_lowercase());
            return Ok(Entry::new(host, port, None, Source::Allow, t));
        }
        // host[:port]: parse it as the host of an http URL for canonical IP spellings.
        let url = url::Url::parse(&format!("http://{t}/")).map_err(|e| err(&e.to_string()))?;
        let host = host_of(&url).map_err(|r| err(&r))?;
        // An explicit port, even the scheme's default one (`a.test:80`); none = any port.
        let explicit = t
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok());
        let port = url.port_or_known_default().filter(|_| explicit);
        if url.path() != "/" || url.username() != "" {
            return Err(err("write a host, host:port, URL, address or CIDR"));
        }
        Ok(Entry::new(host, port, None, Source::Allow, t))
    }

    /// The entry of a base URL (or of a URL-form allow entry): its origin.
    pub fn from_url(url: &url::Url, source: Source) -> Result<Entry, String> {
        let tls = match url.scheme() {
            "http" | "ws" => false,
            "https" | "wss" => true,
            other => return Err(format!("scheme `{other}` is not http(s) or ws(s)")),
        };
        let host = host_of(url)?;
        let port = url.port_or_known_default();
        Ok(Entry::new(host, port, Some(tls), source, url.as_str()))
    }

    fn new(host: Host, port: Option<u16>, tls: Option<bool>, source: Source, text: &str) -> Entry {
        Entry {
            host,
            port,
            tls,
            source,
            text: escape(text),
        }
    }

    fn matches_origin(&self, host: &Host, port: u16, tls: bool) -> bool {
        if self.port.is_some_and(|p| p != port) || self.tls.is_some_and(|t| t != tls) {
            return false;
        }
        match (&self.host, host) {
            (Host::Name(a), Host::Name(b)) => a == b,
            (Host::Suffix(s), Host::Name(b)) => {
                b.len() > s.len()
                    && b.ends_with(s.as_str())
                    && b[..b.len() - s.len()].ends_with('.')
            }
            (Host::Net(net), Host::Net(ip)) => net.contains(&ip.addr()),
            _ => false,
        }
    }

    fn contains_ip(&self, ip: IpAddr) -> bool {
        matches!(&self.host, Host::Net(net) if net.contains(&ip))
    }
}

/// The allowlist of a run.
#[derive(Clone, Debug, Default)]
pub struct Allowlist {
    entries: Vec<Entry>,
}

impl Allowlist {
    /// A list of `entries` (base URLs first is conventional, not required).
    pub fn new(entries: Vec<Entry>) -> Allowlist {
        Allowlist { entries }
    }

    /// Adds an entry.
    pub fn push(&mut self, entry: Entry) {
        self.entries.push(entry);
    }

    /// The entries, for the report and messages.
    pub fn describe(&self) -> Vec<String> {
        self.entries.iter().map(|e| e.text.clone()).collect()
    }

    fn first_match(&self, url: &url::Url) -> Result<&Entry, RequestError> {
        let host = host_of(url).map_err(RequestError::Invalid)?;
        let port = url.port_or_known_default().unwrap_or(0);
        let tls = matches!(url.scheme(), "https" | "wss");
        self.entries
            .iter()
            .find(|e| e.matches_origin(&host, port, tls))
            .ok_or_else(|| {
                let shown = match &host {
                    Host::Net(n) => n.addr().to_string(),
                    Host::Name(n) | Host::Suffix(n) => escape(n),
                };
                RequestError::Denied(format!(
                    "{shown}:{port} is not in the load test's allowlist [{}] (add it to [network] allow or pass --allow {shown}:{port})",
                    self.describe().join(", ")
                ))
            })
    }
}

impl Policy for Allowlist {
    fn check_url(&self, url: &url::Url) -> Result<(), RequestError> {
        self.first_match(url).map(|_| ())
    }

    fn check_addr(&self, host: &str, addr: SocketAddr) -> Result<(), RequestError> {
        let ip = unmap(addr.ip());
        // An entry with a port (an origin, `host:port`) names the address at that port only.
        let named = |e: &Entry| e.contains_ip(ip) && e.port.is_none_or(|p| p == addr.port());
        if is_global(ip) || self.entries.iter().any(named) {
            return Ok(());
        }
        // A base URL's own name may resolve to a non-global address (`localhost`).
        let by_base = self.entries.iter().any(|e| {
            e.source == Source::BaseUrl
                && matches!(&e.host, Host::Name(n) if n.eq_ignore_ascii_case(host))
        });
        if by_base {
            return Ok(());
        }
        Err(RequestError::BlockedIp(format!(
            "{} resolved to {ip}, a non-global address that no allow entry names (add --allow {ip} or a CIDR to [network] allow)",
            escape(host)
        )))
    }
}

/// The host of a URL as the list matches it: a lowercase name or a canonical address.
fn host_of(url: &url::Url) -> Result<Host, String> {
    match url.host() {
        Some(url::Host::Domain(d)) => Ok(Host::Name(d.trim_end_matches('.').to_ascii_lowercase())),
        Some(url::Host::Ipv4(ip)) => Ok(Host::Net(single(IpAddr::V4(ip)))),
        Some(url::Host::Ipv6(ip)) => Ok(Host::Net(single(unmap(IpAddr::V6(ip))))),
        None => Err(format!("{} has no host", escape(url.as_str()))),
    }
}

fn split_port(text: &str) -> Result<(&str, Option<u16>), String> {
    match text.rsplit_once(':') {
        Some((name, port)) => port
            .parse()
            .map(|p| (name, Some(p)))
            .map_err(|_| format!("`{}` is not a port", escape(port))),
        None => Ok((text, None)),
    }
}

fn single(ip: IpAddr) -> IpNet {
    IpNet::from(ip)
}

/// IPv4-mapped networks are matched as IPv4.
fn canonical_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
                .map(IpNet::V4)
                .unwrap_or(net),
            None => net,
        },
        other => other,
    }
}

/// `::ffff:a.b.c.d` is a.b.c.d.
pub fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Whether an address is reachable on the public internet (std's `is_global` is unstable).
pub fn is_global(ip: IpAddr) -> bool {
    match unmap(ip) {
        IpAddr::V4(v4) => is_global_v4(v4),
        IpAddr::V6(v6) => is_global_v6(v6),
    }
}

fn is_global_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0
        || a >= 240
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (18..20).contains(&b)))
}

fn is_global_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    // Global unicast is 2000::/3, minus documentation (2001:db8::/32) and other special blocks
    // under 2001::/23 (Teredo, benchmarking, ORCHID) that a load test has no business reaching.
    (s[0] & 0xe000) == 0x2000 && !(s[0] == 0x2001 && (s[1] == 0x0db8 || s[1] < 0x0200))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(base: &[&str], allow: &[&str]) -> Allowlist {
        let mut entries: Vec<Entry> = base
            .iter()
            .map(|b| Entry::from_url(&url::Url::parse(b).unwrap(), Source::BaseUrl).unwrap())
            .collect();
        entries.extend(allow.iter().map(|a| Entry::parse(a).unwrap()));
        Allowlist::new(entries)
    }

    fn url(s: &str) -> url::Url {
        url::Url::parse(s).unwrap()
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_base_url_origin_is_allowed_and_other_ports_are_denied() {
        let l = list(&["http://127.0.0.1:8080"], &[]);
        assert!(l.check_url(&url("http://127.0.0.1:8080/x")).is_ok());
        assert!(l.check_url(&url("ws://127.0.0.1:8080/ws")).is_ok());
        assert!(matches!(
            l.check_url(&url("http://127.0.0.1:8081/")),
            Err(RequestError::Denied(_))
        ));
        assert!(
            l.check_url(&url("https://127.0.0.1:8080/")).is_err(),
            "scheme counts"
        );
    }

    #[test]
    fn ip_spellings_are_canonicalised_before_matching() {
        let l = list(&["http://example.test"], &[]);
        for u in [
            "http://127.1/",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://[::ffff:127.0.0.1]/",
            "http://169.254.169.254/",
            "http://localhost/",
        ] {
            assert!(l.check_url(&url(u)).is_err(), "{u}");
        }
        let l = list(&["http://127.0.0.1:80"], &[]);
        for u in [
            "http://127.1/",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://[::ffff:127.0.0.1]/",
        ] {
            assert!(l.check_url(&url(u)).is_ok(), "{u}");
        }
    }

    #[test]
    fn names_resolving_to_private_addresses_are_blocked_unless_named() {
        let l = list(&["http://localhost:8080"], &["api.test", "*.corp.test"]);
        assert!(
            l.check_addr("localhost", addr("127.0.0.1:8080")).is_ok(),
            "base URL"
        );
        assert!(l.check_url(&url("http://api.test:9000/")).is_ok());
        assert!(matches!(
            l.check_addr("api.test", addr("10.0.0.5:9000")),
            Err(RequestError::BlockedIp(_))
        ));
        assert!(l.check_addr("api.test", addr("93.184.216.34:9000")).is_ok());
        assert!(
            l.check_addr("api.test", addr("[::ffff:10.0.0.5]:9000"))
                .is_err()
        );
        assert!(l.check_url(&url("https://a.corp.test/")).is_ok());
        assert!(l.check_url(&url("https://corp.test/")).is_err());
        assert!(l.check_url(&url("https://evilcorp.test/")).is_err());
        let l = list(&[], &["api.test", "10.0.0.0/8"]);
        assert!(
            l.check_addr("api.test", addr("10.0.0.5:9000")).is_ok(),
            "named by CIDR"
        );
    }

    #[test]
    fn entries_parse_or_name_the_problem() {
        for ok in [
            "127.0.0.1",
            "[::1]",
            "::1/128",
            "10.0.0.0/8",
            "a.test:80",
            "*.a.test",
            "wss://a.test",
        ] {
            assert!(Entry::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "ftp://a.test", "a.test:port", "a.test/path"] {
            let e = Entry::parse(bad).unwrap_err().to_string();
            assert!(e.contains("allow entry"), "{e}");
        }
    }

    #[test]
    fn global_addresses() {
        for ip in ["8.8.8.8", "2606:4700::1111"] {
            assert!(is_global(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "127.0.0.1",
            "10.1.1.1",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_global(ip.parse().unwrap()), "{ip}");
        }
    }

    proptest::proptest! {
        #[test]
        fn every_spelling_of_an_ipv4_address_matches_the_same_rules(ip in proptest::prelude::any::<u32>(), port in 1u16..) {
            let l = list(&["http://example.test"], &["10.0.0.0/8", "192.168.1.7"]);
            let a = Ipv4Addr::from(ip);
            let listed = a.octets()[0] == 10 || a == Ipv4Addr::new(192, 168, 1, 7);
            for spelled in [a.to_string(), ip.to_string(), format!("0x{ip:x}"), format!("[::ffff:{a}]")] {
                let u = url(&format!("http://{spelled}:{port}/"));
                proptest::prop_assert_eq!(l.check_url(&u).is_ok(), listed, "{}", spelled);
            }
        }

        #[test]
        fn a_name_is_reachable_only_when_listed(name in "[a-z]{1,12}(\\.[a-z]{1,8}){0,2}", port in 1u16..) {
            let l = list(&["http://base.test:8080"], &["api.test", "*.corp.test"]);
            let expected = name == "api.test" || name.ends_with(".corp.test")
                || (name == "base.test" && port == 8080);
            let u = url(&format!("http://{name}:{port}/"));
            proptest::prop_assert_eq!(l.check_url(&u).is_ok(), expected, "{}", name);
        }
    }
}
