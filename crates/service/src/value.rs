//! Value parsers shared by every service's settings, each returning the message that follows
//! the key name; [`Secret`] for values that must never be printed; [`LogLevel`]; and
//! [`suggest`] for the "did you mean" of an unknown key.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// Durations beyond a day are unit mistakes, and a bound keeps `Instant + Duration` from
/// overflowing.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// `true`/`yes`/`on`/`1` or `false`/`no`/`off`/`0`, any case.
pub fn boolean(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err(format!("{s:?} is not true or false")),
    }
}

/// A non-negative integer that fits `T`.
pub fn whole<T: TryFrom<u64>>(s: &str) -> Result<T, String> {
    let n: u64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a whole number"))?;
    T::try_from(n).map_err(|_| format!("{n} is too large"))
}

/// `250ms`, `10s`, `1m30s`, `2h`.
pub fn duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration like \"250ms\", \"10s\" or \"1m30s\"");
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let part = match &rest[..unit_len] {
            "ms" => Some(Duration::from_millis(n)),
            "s" => Some(Duration::from_secs(n)),
            "m" => n.checked_mul(60).map(Duration::from_secs),
            "h" => n.checked_mul(3600).map(Duration::from_secs),
            "" => {
                return Err(format!(
                    "{s:?} has no unit: write \"{n}s\" or \"{n}ms\" (zdm-proxy's *_MS names take \
                     plain milliseconds)"
                ));
            }
            _ => None,
        };
        rest = &rest[unit_len..];
        total = part.and_then(|p| total.checked_add(p)).ok_or_else(bad)?;
    }
    Ok(total)
}

/// Plain milliseconds (zdm-proxy's `*_MS` values).
pub fn millis(s: &str) -> Result<Duration, String> {
    s.parse()
        .map(Duration::from_millis)
        .map_err(|_| format!("{s:?} is not a whole number of milliseconds"))
}

/// How a duration is written back in messages (`90s`, `2m`, `1500ms`).
pub fn humane(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        0 => "0s".to_owned(),
        _ if ms.is_multiple_of(3_600_000) => format!("{}h", ms / 3_600_000),
        _ if ms.is_multiple_of(60_000) => format!("{}m", ms / 60_000),
        _ if ms.is_multiple_of(1000) => format!("{}s", ms / 1000),
        _ => format!("{ms}ms"),
    }
}

/// An IP literal or `localhost`.
pub fn host_ip(s: &str) -> Result<IpAddr, String> {
    if s.eq_ignore_ascii_case("localhost") {
        return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    s.parse()
        .map_err(|_| format!("{s:?} is not an IP address (or localhost)"))
}

/// `ip:port`, `[ipv6]:port` or `localhost:port`.
pub fn socket_addr(s: &str) -> Result<SocketAddr, String> {
    let bad = || format!("{s:?} is not an address like 0.0.0.0:9042 or [::1]:9042");
    if let Ok(addr) = s.parse() {
        return Ok(addr);
    }
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    if !host.eq_ignore_ascii_case("localhost") {
        return Err(bad());
    }
    let port = port.parse().map_err(|_| bad())?;
    Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
}

/// `host`, `host:port`, an IPv6 literal, or `[ipv6]:port` → (host without brackets, port).
pub fn contact_point(s: &str) -> Result<(String, Option<u16>), String> {
    let bad = || format!("{s:?} is not a host or host:port");
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':').ok_or_else(bad)?)),
        }
    } else if s.matches(':').count() == 1 {
        let (host, port) = s.split_once(':').ok_or_else(bad)?;
        (host, Some(port))
    } else {
        (s, None)
    };
    if host.contains(':') && host.parse::<std::net::Ipv6Addr>().is_err() {
        return Err(bad());
    }
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'));
    if !host_ok {
        return Err(bad());
    }
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(0) | Err(_) => return Err(format!("{s:?}: {p:?} is not a port (1..=65535)")),
            Ok(p) => Some(p),
        },
    };
    Ok((host.to_owned(), port))
}

/// A [`LogLevel`] by name, any case.
pub fn log_level(s: &str) -> Result<LogLevel, String> {
    match s.to_ascii_lowercase().as_str() {
        "error" => Ok(LogLevel::Error),
        "warn" | "warning" => Ok(LogLevel::Warn),
        "info" => Ok(LogLevel::Info),
        "debug" => Ok(LogLevel::Debug),
        "trace" => Ok(LogLevel::Trace),
        _ => Err(format!(
            "{s:?} is not one of error, warn, info, debug, trace"
        )),
    }
}

/// The closest known name, when one is close enough to be the intended one.
pub fn suggest(key: &str, candidates: Vec<String>) -> Option<String> {
    candidates
        .into_iter()
        .map(|c| (edit_distance(key, &c), c))
        .filter(|(d, _)| *d <= 3)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance in characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

/// The least severe log level that is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    /// Lower-case name, as `tracing_subscriber`'s filters spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Warn => "warn",
            Self::Info => "info",
            Self::Debug => "debug",
            Self::Trace => "trace",
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A credential. `Debug` and `Display` print `***` so it cannot leak into logs or error
/// messages; [`Secret::expose`] is the one way to read it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret text, for the one place that sends it (an AUTH_RESPONSE, a header comparison).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_in_every_accepted_spelling() {
        assert_eq!(duration("1h2m3s4ms"), Ok(Duration::from_millis(3_723_004)));
        assert!(duration("10").is_err_and(|e| e.contains("no unit")));
        assert_eq!(humane(Duration::from_secs(90)), "90s");
        assert_eq!(
            contact_point("[::1]:9042"),
            Ok(("::1".to_owned(), Some(9042)))
        );
        assert_eq!(contact_point("db-1"), Ok(("db-1".to_owned(), None)));
        assert!(contact_point("db:0").is_err());
        assert_eq!(
            socket_addr("localhost:1"),
            Ok(SocketAddr::from(([127, 0, 0, 1], 1)))
        );
        assert_eq!(whole::<u8>("255"), Ok(255));
        assert!(whole::<u8>("256").is_err());
        assert_eq!(log_level("WARNING"), Ok(LogLevel::Warn));
        assert_eq!(boolean("off"), Ok(false));
    }

    #[test]
    fn suggestions_need_a_close_name() {
        let keys = || vec!["origin.contact_points".to_owned(), "job_dir".to_owned()];
        assert_eq!(
            suggest("origin.contact_point", keys()).as_deref(),
            Some("origin.contact_points")
        );
        assert_eq!(suggest("something_else", keys()), None);
    }

    #[test]
    fn secrets_print_as_stars() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** ***");
        assert_eq!(s.expose(), "hunter2");
    }
}
