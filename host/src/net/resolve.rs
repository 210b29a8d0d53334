//! Name resolution behind a trait, so that a load test can pin names to addresses (k6's
//! `hosts`, curl's `--resolve`) and tests can resolve deterministically without leaving
//! loopback. The checkpoint in [`connect`](super::connect) asks the resolver only for names the
//! policy already allowed, and checks every address it returns.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

/// What a lookup returns: the addresses, or why there are none (the text of the `dns` error).
pub type Lookup<'a> = Pin<Box<dyn Future<Output = Result<Vec<SocketAddr>, String>> + Send + 'a>>;

/// Turns a host name into addresses.
pub trait Resolve: Send + Sync {
    fn lookup<'a>(&'a self, host: &'a str, port: u16) -> Lookup<'a>;
}

/// The system resolver (getaddrinfo on a blocking thread, as tokio does it).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn lookup<'a>(&'a self, host: &'a str, port: u16) -> Lookup<'a> {
        Box::pin(async move {
            tokio::net::lookup_host((host, port))
                .await
                .map(Iterator::collect)
                .map_err(|e| e.to_string())
        })
    }
}

/// Names pinned to addresses (`[network] hosts`); other names go to the fallback. A name
/// pinned to no address does not exist.
pub struct PinnedHosts {
    hosts: BTreeMap<String, Vec<IpAddr>>,
    fallback: Arc<dyn Resolve>,
}

impl PinnedHosts {
    /// Pins `hosts` (names compared case-insensitively) in front of `fallback`.
    pub fn new(hosts: BTreeMap<String, Vec<IpAddr>>, fallback: Arc<dyn Resolve>) -> PinnedHosts {
        let hosts = hosts
            .into_iter()
            .map(|(name, ips)| (name.to_ascii_lowercase(), ips))
            .collect();
        PinnedHosts { hosts, fallback }
    }
}

impl Resolve for PinnedHosts {
    fn lookup<'a>(&'a self, host: &'a str, port: u16) -> Lookup<'a> {
        match self.hosts.get(&host.to_ascii_lowercase()) {
            Some(ips) if ips.is_empty() => Box::pin(async move {
                Err("no such host (pinned to nothing in [network] hosts)".into())
            }),
            Some(ips) => {
                let addrs = ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect();
                Box::pin(async move { Ok(addrs) })
            }
            None => self.fallback.lookup(host, port),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pinned_names_resolve_without_the_fallback() {
        struct Never;
        impl Resolve for Never {
            fn lookup<'a>(&'a self, host: &'a str, _port: u16) -> Lookup<'a> {
                Box::pin(async move { Err(format!("{host} reached the fallback")) })
            }
        }
        let hosts = BTreeMap::from([
            ("API.test".to_owned(), vec![IpAddr::from([127, 0, 0, 2])]),
            ("gone.test".to_owned(), vec![]),
        ]);
        let r = PinnedHosts::new(hosts, Arc::new(Never));
        let got = r.lookup("api.TEST", 80).await;
        assert_eq!(got, Ok(vec![SocketAddr::from(([127, 0, 0, 2], 80))]));
        assert!(
            r.lookup("gone.test", 80)
                .await
                .is_err_and(|e| e.contains("no such host"))
        );
        assert!(
            r.lookup("other.test", 80)
                .await
                .is_err_and(|e| e.contains("fallback"))
        );
    }
}
