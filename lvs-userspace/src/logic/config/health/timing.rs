//! The timing keywords and where they come from. keepalived lets `delay_loop`,
//! `connect_timeout`, `retry` (`nb_get_retry`), `delay_before_retry`, `warmup` and `alpha` be
//! written in a `virtual_server`, a `real_server` or a checker block: "the virtual server
//! setting is the default for real servers, and the real server setting is the default for
//! checkers". So a checker takes each value from the nearest level that sets it, and
//! keepalived's default when none does.

use std::time::Duration;

use toml::Spanned;

use super::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_DELAY_BEFORE_RETRY, DEFAULT_DELAY_LOOP, Timing,
    validate::{Sink, count, seconds},
};

/// The timing keys as one level (service, real server or checker) writes them.
#[derive(Clone, Debug, Default)]
pub struct RawTiming {
    pub delay_loop: Option<Spanned<f64>>,
    pub connect_timeout: Option<Spanned<f64>>,
    pub retry: Option<Spanned<i64>>,
    pub delay_before_retry: Option<Spanned<f64>>,
    pub warmup: Option<Spanned<f64>>,
    pub alpha: Option<bool>,
}

/// Declares the raw (serde) shape of a level that takes the timing keys: the struct as
/// written, plus the timing keys, plus a `timing()` that gathers them. The keys are declared
/// here once; a struct cannot embed `RawTiming` with `#[serde(flatten)]`, because flatten
/// does not work with `deny_unknown_fields`, which every raw shape has.
macro_rules! with_timing_keys {
    (
        $(#[$attr:meta])*
        $vis:vis struct $name:ident {
            $($(#[$field_attr:meta])* $field_vis:vis $field:ident : $type:ty,)*
        }
    ) => {
        $(#[$attr])*
        $vis struct $name {
            $($(#[$field_attr])* $field_vis $field: $type,)*
            #[serde(default)]
            delay_loop: Option<toml::Spanned<f64>>,
            #[serde(default)]
            connect_timeout: Option<toml::Spanned<f64>>,
            #[serde(default, alias = "nb_get_retry")]
            retry: Option<toml::Spanned<i64>>,
            #[serde(default)]
            delay_before_retry: Option<toml::Spanned<f64>>,
            #[serde(default)]
            warmup: Option<toml::Spanned<f64>>,
            #[serde(default)]
            alpha: Option<bool>,
        }

        impl $name {
            /// The timing keys this level sets.
            fn timing(&self) -> $crate::logic::config::health::RawTiming {
                $crate::logic::config::health::RawTiming {
                    delay_loop: self.delay_loop.clone(),
                    connect_timeout: self.connect_timeout.clone(),
                    retry: self.retry.clone(),
                    delay_before_retry: self.delay_before_retry.clone(),
                    warmup: self.warmup.clone(),
                    alpha: self.alpha,
                }
            }
        }
    };
}
pub(crate) use with_timing_keys;

/// The valid timing values one level sets; `None` where it sets nothing (or something
/// invalid, which is reported).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct TimingLevel {
    pub delay_loop: Option<Duration>,
    pub connect_timeout: Option<Duration>,
    pub retry: Option<u32>,
    pub delay_before_retry: Option<Duration>,
    pub warmup: Option<Duration>,
    pub alpha: Option<bool>,
}

/// What the checker runs, as far as its timing defaults go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CheckerKind {
    /// HTTP_GET, SSL_GET, TCP_CHECK, UDP_CHECK, PING_CHECK: a connection or a datagram,
    /// bounded by `connect_timeout`.
    Network,
    /// DNS_CHECK: a query, bounded by `connect_timeout`, which keepalived retries 3 times
    /// by default, `delay_loop` apart.
    Dns,
    /// MISC_CHECK: a program, bounded by `misc_timeout`.
    Program,
}

impl TimingLevel {
    /// Validates one level's keys; `field` is the level's field path
    /// (`virtual_server[0]`, `virtual_server[0].real_server[1]`, `....HTTP_GET`).
    pub(crate) fn validate(raw: &RawTiming, field: &str, sink: &mut Sink<'_, '_>) -> Self {
        let seconds_of = |raw: &Option<Spanned<f64>>, name: &str, positive, sink: &mut _| {
            seconds(raw, &format!("{field}.{name}"), positive, sink)
        };
        Self {
            delay_loop: seconds_of(&raw.delay_loop, "delay_loop", true, sink),
            connect_timeout: seconds_of(&raw.connect_timeout, "connect_timeout", true, sink),
            retry: count(&raw.retry, &format!("{field}.retry"), sink),
            delay_before_retry: seconds_of(
                &raw.delay_before_retry,
                "delay_before_retry",
                false,
                sink,
            ),
            warmup: seconds_of(&raw.warmup, "warmup", false, sink),
            alpha: raw.alpha,
        }
    }

    /// This level's values, with `outer`'s where this level sets none.
    pub(crate) fn or(self, outer: TimingLevel) -> Self {
        Self {
            delay_loop: self.delay_loop.or(outer.delay_loop),
            connect_timeout: self.connect_timeout.or(outer.connect_timeout),
            retry: self.retry.or(outer.retry),
            delay_before_retry: self.delay_before_retry.or(outer.delay_before_retry),
            warmup: self.warmup.or(outer.warmup),
            alpha: self.alpha.or(outer.alpha),
        }
    }

    /// The checker's timing: the values set, and keepalived's defaults for the rest.
    /// keepalived retries a network check once by default, a DNS query 3 times (waiting
    /// `delay_loop` before each retry) and a program not at all.
    /// `connect_timeout` means nothing to a program (`misc_timeout` bounds it), so an
    /// inherited one is not taken: two servers' equal scripts stay one check.
    pub(crate) fn resolve(self, kind: CheckerKind) -> Timing {
        let delay_loop = self.delay_loop.unwrap_or(DEFAULT_DELAY_LOOP);
        let (retry, delay_before_retry) = match kind {
            CheckerKind::Network => (1, DEFAULT_DELAY_BEFORE_RETRY),
            CheckerKind::Dns => (3, delay_loop),
            CheckerKind::Program => (0, Duration::ZERO),
        };
        Timing {
            delay_loop,
            connect_timeout: match kind {
                CheckerKind::Program => DEFAULT_CONNECT_TIMEOUT,
                _ => self.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
            },
            retry: self.retry.unwrap_or(retry),
            delay_before_retry: self.delay_before_retry.unwrap_or(delay_before_retry),
            warmup: self.warmup.unwrap_or(Duration::ZERO),
            alpha: self.alpha.unwrap_or(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Option<Duration> {
        Some(Duration::from_secs(s))
    }

    #[test]
    fn the_nearest_level_wins_and_defaults_fill_the_rest() {
        let service = TimingLevel {
            delay_loop: secs(6),
            connect_timeout: secs(4),
            retry: Some(3),
            delay_before_retry: secs(2),
            warmup: secs(5),
            alpha: Some(true),
        };
        let real_server = TimingLevel {
            retry: Some(2),
            alpha: Some(false),
            ..TimingLevel::default()
        };
        let checker = TimingLevel {
            connect_timeout: secs(1),
            ..TimingLevel::default()
        };
        let timing = checker
            .or(real_server.or(service))
            .resolve(CheckerKind::Network);
        assert_eq!(
            timing,
            Timing {
                delay_loop: Duration::from_secs(6),
                connect_timeout: Duration::from_secs(1),
                retry: 2,
                delay_before_retry: Duration::from_secs(2),
                warmup: Duration::from_secs(5),
                alpha: false,
            }
        );
    }

    #[test]
    fn keepalived_s_defaults_depend_on_the_checker() {
        let network = TimingLevel::default().resolve(CheckerKind::Network);
        assert_eq!(network.delay_loop, DEFAULT_DELAY_LOOP);
        assert_eq!(network.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
        assert_eq!(network.retry, 1);
        assert_eq!(network.delay_before_retry, DEFAULT_DELAY_BEFORE_RETRY);
        assert_eq!((network.warmup, network.alpha), (Duration::ZERO, false));
        let program = TimingLevel::default().resolve(CheckerKind::Program);
        assert_eq!(program.retry, 0);
        assert_eq!(program.delay_before_retry, Duration::ZERO);
        let dns = TimingLevel {
            delay_loop: secs(7),
            ..TimingLevel::default()
        }
        .resolve(CheckerKind::Dns);
        assert_eq!(
            (dns.retry, dns.delay_before_retry),
            (3, Duration::from_secs(7))
        );
    }

    #[test]
    fn an_inherited_retry_wins_over_a_checker_s_own_default() {
        let inherited = TimingLevel {
            retry: Some(0),
            delay_before_retry: secs(2),
            ..TimingLevel::default()
        };
        let dns = inherited.resolve(CheckerKind::Dns);
        assert_eq!(
            (dns.retry, dns.delay_before_retry),
            (0, Duration::from_secs(2))
        );
    }

    #[test]
    fn a_program_ignores_an_inherited_connect_timeout() {
        let inherited = TimingLevel {
            connect_timeout: secs(9),
            retry: Some(2),
            ..TimingLevel::default()
        };
        let program = inherited.resolve(CheckerKind::Program);
        assert_eq!(program.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
        assert_eq!(program.retry, 2, "retry applies to programs too");
    }
}
