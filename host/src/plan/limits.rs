//! Quotas per session and the machine limits that cap how many sessions a run can hold.
//!
//! Every quota is a named default here and can be overridden in the load-test file's `[limits]`.
//! A guest is untrusted: each cap below bounds what one guest can make the host allocate or open.

use serde::Deserialize;
use std::time::Duration;

/// Per-session quotas and timeouts, as the load test sets them.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Linear-memory cap per instance, in MiB.
    pub memory_mb: u32,
    /// Wasm execution a session may use without yielding, per entry point call, in ms.
    pub cpu_budget_ms: u32,
    /// Wall-clock deadline of one session (Chaperon's scenario_timeout).
    #[serde(with = "humantime_serde_compat")]
    pub session_timeout: Duration,
    /// Deadline of one HTTP request, body included, unless the request sets its own.
    #[serde(with = "humantime_serde_compat")]
    pub request_timeout: Duration,
    /// Deadline of TCP connect + TLS + WebSocket handshake.
    #[serde(with = "humantime_serde_compat")]
    pub connect_timeout: Duration,
    /// Default wait of a WebSocket receive or a signal when the scenario gives no timeout.
    #[serde(with = "humantime_serde_compat")]
    pub recv_timeout: Duration,
    /// How long running sessions may finish after Ctrl-C or the end of the test.
    #[serde(with = "humantime_serde_compat")]
    pub graceful_stop: Duration,
    /// The whole load test: after this, no new sessions start and running ones get the
    /// graceful-stop period.
    #[serde(with = "humantime_serde_compat")]
    pub max_duration: Duration,
    /// Sessions alive at once (instance pool slots); 0 = as many as the run has sessions.
    pub max_concurrent: u32,
    /// Instance slots for async children and nested scenarios, beyond the sessions' own. Each
    /// pool slot costs ~10 KiB of host memory even unused, so the default is small; raise it
    /// for scenarios that spawn many children at once.
    pub child_slots: u32,
    /// Open WebSockets per session; the next connect is refused at once.
    pub ws_connections: u32,
    /// HTTP connections per session (requests in flight at once).
    pub http_connections: u32,
    /// Largest response body handed to the guest, in bytes; the rest is drained and counted.
    pub max_response_body: u32,
    /// Largest WebSocket message, in bytes.
    pub max_ws_message: u32,
    /// Inbound WebSocket messages buffered per connection while the guest is not receiving.
    pub ws_queue: u32,
    /// Log lines a session may write per second; more are dropped and counted.
    pub log_lines_per_sec: u32,
    /// Redirect hops one request may follow, whatever it asks for.
    pub max_redirects: u32,
    /// Host memory one session's guest may make the host hold (assigns, config, queued
    /// signals, buffered bodies and WebSocket messages), in MiB; past it the session ends
    /// `memory-limit` or the action gets a `too-large` error, naming what overflowed.
    pub host_memory_mb: u32,
    /// The same, summed over all sessions of a tenant (of the run, without tenants).
    pub tenant_memory_mb: u32,
    /// Connections being established at once in the whole run (DNS + TCP + TLS); more queue in
    /// the generator before their connect timeout starts, and the report counts them.
    pub max_connecting: u32,
    /// Compiling one component (a compile bomb's huge functions can take cranelift minutes);
    /// past it the run stops with a load error. Cached components are not compiled again.
    #[serde(with = "humantime_serde_compat")]
    pub compile_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_mb: 64,
            cpu_budget_ms: 1000,
            session_timeout: Duration::from_secs(600),
            request_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            recv_timeout: Duration::from_secs(30),
            graceful_stop: Duration::from_secs(30),
            max_duration: Duration::from_secs(3600),
            max_concurrent: 0,
            child_slots: 64,
            ws_connections: 4,
            http_connections: 8,
            max_response_body: 16 << 20,
            max_ws_message: 16 << 20,
            ws_queue: 1024,
            log_lines_per_sec: 100,
            max_redirects: 10,
            max_connecting: 256,
            host_memory_mb: 64,
            tenant_memory_mb: 4096,
            compile_timeout: Duration::from_secs(300),
        }
    }
}

/// Guest stdout/stderr kept per session (the tail shows up in trap reasons).
pub const MAX_GUEST_OUTPUT: usize = 16 * 1024;

/// Largest request body a guest may send, in bytes.
pub const MAX_REQUEST_BODY: usize = 8 << 20;

/// Open traced calls per session (`trace-begin` without `trace-end`).
pub const MAX_OPEN_TRACES: usize = 1024;

/// `Duration` fields in TOML as humantime strings ("30s", "10m", "250ms").
pub(crate) mod humantime_serde_compat {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

/// Optional `Duration` fields in TOML as humantime strings.
pub(crate) mod humantime_serde_opt {
    use serde::Deserializer;
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        super::humantime_serde_compat::deserialize(d).map(Some)
    }
}

/// What the machine allows, read at start.
#[derive(Clone, Copy, Debug)]
pub struct SystemLimits {
    /// `vm.max_map_count`, if readable.
    pub max_map_count: Option<u64>,
    /// Soft RLIMIT_NOFILE after raising it to the hard limit.
    pub open_files: u64,
    /// Soft RLIMIT_AS (`ulimit -v`) in bytes, when one is set.
    pub address_space: Option<u64>,
}

/// Address space kept for everything that is not an instance slot (the runtime, compiled code,
/// buffers, thread stacks: ~1.6 GiB measured) when `RLIMIT_AS` is set.
const ADDRESS_RESERVED: u64 = 2 << 30;

/// Memory mappings one live instance needs (memory, guard, stack, tables); measured ~6.
const MAPS_PER_INSTANCE: u64 = 6;
/// Mappings and descriptors kept for everything that is not a session.
const RESERVED: u64 = 256;

impl SystemLimits {
    /// Reads the limits, raising the soft fd limit to the hard one first.
    pub fn probe() -> SystemLimits {
        SystemLimits {
            max_map_count: read_max_map_count(),
            open_files: raise_nofile(),
            address_space: rlimit::address_space(),
        }
    }

    /// Instance slots the map count allows.
    pub fn max_instances(&self) -> Option<u64> {
        self.max_map_count
            .map(|m| m.saturating_sub(RESERVED) / MAPS_PER_INSTANCE)
    }

    /// Sessions with `sockets_per_session` open sockets each that the fd limit allows.
    pub fn max_socket_sessions(&self, sockets_per_session: u64) -> u64 {
        self.open_files.saturating_sub(RESERVED) / sockets_per_session.max(1)
    }
}

fn read_max_map_count() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// Raises the soft open-files limit to the hard limit and returns the new soft limit.
pub fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    if !rlimit::get(&mut lim) {
        return 1024;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        if rlimit::set(&raised) {
            return raised.rlim_cur;
        }
    }
    lim.rlim_cur
}

/// The two libc calls that need `unsafe`, kept in one place.
#[allow(unsafe_code)]
mod rlimit {
    pub fn get(out: &mut libc::rlimit) -> bool {
        // SAFETY: `out` is a valid, exclusive pointer to an rlimit for the call's duration.
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, out) == 0 }
    }
    pub fn set(new: &libc::rlimit) -> bool {
        // SAFETY: `new` is a valid pointer to an initialised rlimit.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, new) == 0 }
    }
    /// The soft RLIMIT_AS, or `None` when unlimited or unreadable.
    pub fn address_space() -> Option<u64> {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `lim` is a valid, exclusive pointer to an rlimit for the call's duration.
        let ok = unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut lim) == 0 };
        (ok && lim.rlim_cur != libc::RLIM_INFINITY).then_some(lim.rlim_cur)
    }
}

/// How many sessions can run at once, and why fewer than asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capacity {
    pub slots: u32,
    /// One line per limit that capped the count, naming how to raise it.
    pub warnings: Vec<String>,
}

/// What one run asks of the machine besides its session count.
#[derive(Clone, Copy, Debug)]
pub struct SlotCost {
    /// Sockets every session holds (one connection).
    pub sockets: u64,
    /// Sockets one session may hold at most (its HTTP + WebSocket connection caps).
    pub max_sockets: u64,
    /// Address space one instance slot reserves (memories, guards, stack).
    pub bytes: u64,
    /// Slots reserved beyond the sessions' (async children, nested scenarios).
    pub extra_slots: u64,
}

/// Caps `wanted` concurrent instances by the map count, the fd limit and the address-space
/// limit; never below one, and every cap names what to change.
pub fn capacity(wanted: u32, cost: SlotCost, sys: &SystemLimits) -> Capacity {
    let sockets_per_session = cost.sockets;
    let mut slots = u64::from(wanted.max(1));
    let mut warnings = Vec::new();
    if let Some(limit) = sys.address_space {
        let fit = limit.saturating_sub(ADDRESS_RESERVED) / cost.bytes.max(1);
        let max = fit.saturating_sub(cost.extra_slots);
        if slots > max {
            warnings.push(format!(
                "the address-space limit (ulimit -v: {} MiB) fits {max} concurrent sessions of {} MiB reserved each (plus {} child slots), not {slots}; running {} at a time (raise `ulimit -v`, or lower [limits] memory_mb or child_slots)",
                limit >> 20,
                cost.bytes >> 20,
                cost.extra_slots,
                max.max(1)
            ));
            slots = max;
        }
    }
    if let Some(max) = sys.max_instances()
        && slots > max
    {
        let need = slots * MAPS_PER_INSTANCE + RESERVED;
        warnings.push(format!(
            "vm.max_map_count ({}) allows {max} concurrent sessions, not {slots}; running {} at a time (raise it with `sysctl -w vm.max_map_count={need}`)",
            sys.max_map_count.unwrap_or_default(),
            max.max(1)
        ));
        slots = max;
    }
    let fd_max = sys.max_socket_sessions(sockets_per_session);
    if slots > fd_max {
        let run = fd_max.max(1);
        warnings.push(format!(
            "the open-files limit ({}) allows {fd_max} concurrent sessions with {sockets_per_session} connection(s) each, not {slots}; running {run} at a time (raise `ulimit -n` / nofile in /etc/security/limits.conf, or split the run over several processes)",
            sys.open_files
        ));
        slots = fd_max;
    }
    let worst = slots.saturating_mul(cost.max_sockets);
    if worst > sys.open_files.saturating_sub(RESERVED) {
        warnings.push(format!(
            "{slots} concurrent sessions may open up to {} connections each ([limits] http_connections + ws_connections), {worst} in all, more than the open-files limit ({}) allows; connects past it fail as `host-capacity` (raise `ulimit -n`, or lower those limits)",
            cost.max_sockets, sys.open_files
        ));
    }
    Capacity {
        slots: u32::try_from(slots.max(1)).unwrap_or(u32::MAX),
        warnings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_names_the_limit_and_fix() {
        let cost = |sockets| SlotCost {
            sockets,
            max_sockets: sockets,
            bytes: 64 << 20,
            extra_slots: 64,
        };
        let sys = SystemLimits {
            max_map_count: Some(65530),
            open_files: 20_000,
            address_space: None,
        };
        let c = capacity(50_000, cost(1), &sys);
        assert_eq!(c.slots, (65530 - 256) / 6);
        assert!(c.warnings[0].contains("sysctl -w vm.max_map_count="));
        let sys = SystemLimits {
            max_map_count: Some(1 << 20),
            open_files: 20_000,
            address_space: None,
        };
        let c = capacity(15_000, cost(2), &sys);
        assert_eq!(c.slots, (20_000 - 256) / 2);
        assert!(c.warnings[0].contains("ulimit -n"));
        assert!(capacity(100, cost(1), &sys).warnings.is_empty());
        // Sessions that may open 12 connections each: all run, and the risk is named.
        let many = SlotCost {
            max_sockets: 12,
            ..cost(1)
        };
        let c = capacity(10_000, many, &sys);
        assert_eq!(c.slots, 10_000);
        assert!(
            c.warnings[0].contains("up to 12 connections each"),
            "{:?}",
            c.warnings
        );
        // 4 GiB of address space: 2 GiB for slots of 64 MiB, 8 of them for children.
        let sys = SystemLimits {
            address_space: Some(4 << 30),
            ..sys
        };
        let with_children = SlotCost {
            extra_slots: 8,
            ..cost(1)
        };
        let c = capacity(1000, with_children, &sys);
        assert_eq!(c.slots, 32 - 8);
        assert!(c.warnings[0].contains("ulimit -v"), "{:?}", c.warnings);
        // Too little for even the child slots: still one session, and the fix is named.
        let sys = SystemLimits {
            address_space: Some(2560 << 20),
            ..sys
        };
        let c = capacity(1000, with_children, &sys);
        assert_eq!(c.slots, 1);
        assert!(c.warnings[0].contains("lower [limits] memory_mb or child_slots"));
    }

    #[test]
    fn limits_parse_durations() {
        let l: Limits = toml::from_str("session_timeout = \"2s\"\nmemory_mb = 32").unwrap();
        assert_eq!(l.session_timeout, Duration::from_secs(2));
        assert_eq!(l.memory_mb, 32);
        assert!(toml::from_str::<Limits>("nope = 1").is_err());
    }
}
