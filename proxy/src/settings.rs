//! The routing settings operators choose: which cluster is primary, whether reads are mirrored,
//! what a failed target write does. Shared by the config, the request path and the admin API.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU8, Ordering};

/// One of the two clusters, by its fixed identity (roles swap at cutover, identities do not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClusterId {
    Origin,
    Target,
}

impl ClusterId {
    pub const BOTH: [ClusterId; 2] = [ClusterId::Origin, ClusterId::Target];

    pub fn name(self) -> &'static str {
        match self {
            Self::Origin => "origin",
            Self::Target => "target",
        }
    }

    pub fn other(self) -> Self {
        match self {
            Self::Origin => Self::Target,
            Self::Target => Self::Origin,
        }
    }

    /// Index into per-cluster arrays (`[origin, target]`).
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A setting value that is not one of the accepted spellings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {value:?} is not one of {expected}")]
pub struct BadSetting {
    pub what: &'static str,
    pub value: String,
    pub expected: &'static str,
}

impl FromStr for ClusterId {
    type Err = BadSetting;

    /// Accepts Ferry's lower-case names and zdm-proxy's upper-case ones.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "origin" => Ok(Self::Origin),
            "target" => Ok(Self::Target),
            _ => Err(BadSetting {
                what: "cluster",
                value: s.to_owned(),
                expected: "origin, target",
            }),
        }
    }
}

/// Where reads go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReadMode {
    /// Reads go to the primary only.
    PrimaryOnly,
    /// Reads also go to the secondary in the background; results are compared, never awaited.
    DualAsync,
}

impl ReadMode {
    /// Every mode, in the order of the `ferry_proxy_read_mode` gauges.
    pub const ALL: [ReadMode; 2] = [Self::PrimaryOnly, Self::DualAsync];

    pub fn name(self) -> &'static str {
        match self {
            Self::PrimaryOnly => "primary-only",
            Self::DualAsync => "dual-async",
        }
    }
}

impl fmt::Display for ReadMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ReadMode {
    type Err = BadSetting;

    /// Accepts `primary-only`/`dual-async` and zdm-proxy's `PRIMARY_ONLY`/`DUAL_ASYNC_ON_SECONDARY`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "primary-only" => Ok(Self::PrimaryOnly),
            "dual-async" | "dual-async-on-secondary" => Ok(Self::DualAsync),
            _ => Err(BadSetting {
                what: "read mode",
                value: s.to_owned(),
                expected: "primary-only, dual-async",
            }),
        }
    }
}

/// What a write that failed on the target (while the origin succeeded) does to the client's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TargetFailurePolicy {
    /// The client gets the target's error: nothing is acknowledged that is not on both clusters.
    Strict,
    /// The client gets the primary's answer; the failed write is counted and recorded for repair.
    BestEffort,
}

impl TargetFailurePolicy {
    pub fn name(self) -> &'static str {
        match self {
            Self::Strict => "strict",
            Self::BestEffort => "best-effort",
        }
    }
}

impl fmt::Display for TargetFailurePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for TargetFailurePolicy {
    type Err = BadSetting;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "strict" => Ok(Self::Strict),
            "best-effort" => Ok(Self::BestEffort),
            _ => Err(BadSetting {
                what: "target failure policy",
                value: s.to_owned(),
                expected: "strict, best-effort",
            }),
        }
    }
}

/// The settings that change live (admin API, cutover) without restart or dropped connections.
/// Read on every request, so they are plain atomics.
#[derive(Debug)]
pub struct LiveSettings {
    primary: AtomicU8,
    read_mode: AtomicU8,
}

impl LiveSettings {
    pub fn new(primary: ClusterId, read_mode: ReadMode) -> Self {
        Self {
            primary: AtomicU8::new(primary as u8),
            read_mode: AtomicU8::new(read_mode as u8),
        }
    }

    pub fn primary(&self) -> ClusterId {
        match self.primary.load(Ordering::Relaxed) {
            0 => ClusterId::Origin,
            _ => ClusterId::Target,
        }
    }

    pub fn set_primary(&self, primary: ClusterId) {
        self.primary.store(primary as u8, Ordering::Relaxed);
    }

    pub fn read_mode(&self) -> ReadMode {
        match self.read_mode.load(Ordering::Relaxed) {
            0 => ReadMode::PrimaryOnly,
            _ => ReadMode::DualAsync,
        }
    }

    pub fn set_read_mode(&self, mode: ReadMode) {
        self.read_mode.store(mode as u8, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_in_both_spellings() {
        for id in ClusterId::BOTH {
            assert_eq!(id.name().parse::<ClusterId>(), Ok(id));
            assert_eq!(id.name().to_uppercase().parse::<ClusterId>(), Ok(id));
        }
        assert_eq!("DUAL_ASYNC_ON_SECONDARY".parse(), Ok(ReadMode::DualAsync));
        assert_eq!("PRIMARY_ONLY".parse(), Ok(ReadMode::PrimaryOnly));
        assert_eq!("best_effort".parse(), Ok(TargetFailurePolicy::BestEffort));
        assert!("both".parse::<ClusterId>().is_err());
    }

    #[test]
    fn live_settings_switch() {
        let s = LiveSettings::new(ClusterId::Origin, ReadMode::PrimaryOnly);
        s.set_primary(ClusterId::Target);
        s.set_read_mode(ReadMode::DualAsync);
        assert_eq!(
            (s.primary(), s.read_mode()),
            (ClusterId::Target, ReadMode::DualAsync)
        );
    }
}
