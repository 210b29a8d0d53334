//! The outbound policy hook: which URLs and addresses a session may reach.
//!
//! [`connect`](super::connect::connect) asks the policy twice, as Spin's outbound networking
//! does: by URL before any name is resolved, and by address after resolution (so a name that
//! resolves to a forbidden address is refused too). Redirect hops pass the same checks.
//! Until the load test declares an allowlist, [`AllowAll`] lets everything through.

use crate::wit::RequestError;
use std::net::SocketAddr;

/// A rule set deciding where sessions may connect. Errors are the WIT's `denied` (by URL) and
/// `blocked-ip` (by address) with the rule named in the text.
pub trait Policy: Send + Sync {
    /// Checked before DNS: scheme, host name and port of the URL.
    fn check_url(&self, url: &url::Url) -> Result<(), RequestError>;
    /// Checked for every address the host would dial.
    fn check_addr(&self, host: &str, addr: SocketAddr) -> Result<(), RequestError>;
}

/// The policy of a load test without an allowlist.
#[derive(Debug, Default, Clone, Copy)]
pub struct AllowAll;

impl Policy for AllowAll {
    fn check_url(&self, _url: &url::Url) -> Result<(), RequestError> {
        Ok(())
    }

    fn check_addr(&self, _host: &str, _addr: SocketAddr) -> Result<(), RequestError> {
        Ok(())
    }
}
