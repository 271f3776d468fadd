//! The pure state machines of health checking, in keepalived's terms. No clock and no I/O:
//! they take results and answer with transitions and the delay until the next check, so tests
//! drive them with a fake clock and made-up results.
//!
//! - `CheckState`: one check. A passing check is up; an up check that fails is retried
//!   `retry` times, `delay_before_retry` apart, and goes down on the failure after the last
//!   retry (so after `retry + 1` consecutive failures, as keepalived counts); one success
//!   brings it up again. With `alpha` it starts down and the first success brings it up.
//! - `Pool`: one service. The live weight is the sum of the weights of the up real servers;
//!   the quorum is gained when it reaches `quorum + hysteresis` and lost when it falls below
//!   `quorum - hysteresis` (or to 0). While the quorum is lost and a sorry server is
//!   configured, the sorry server takes the traffic alone (keepalived removes the remaining
//!   live servers too); a down real server is removed, or kept with weight 0 with
//!   `inhibit_on_failure`.

use std::time::Duration;

use crate::health::{Admission, Outcome};
use crate::logic::config::health::Timing;

/// The state of one check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckState {
    up: bool,
    /// Retries used since the last success (keepalived's `retry_it`).
    retries: u32,
    /// The weight the last passing result asked for (`misc_dynamic`).
    weight: Option<u32>,
}

/// What one result did to a check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// `Some(true)` when the check went up, `Some(false)` when it went down.
    pub changed: Option<bool>,
    /// Whether the dynamic weight changed while the check stayed up.
    pub weight_changed: bool,
    /// How long until the next attempt starts.
    pub next: Duration,
}

impl CheckState {
    /// The state before any result: up, or down in alpha mode.
    pub fn new(timing: &Timing) -> Self {
        Self {
            up: !timing.alpha,
            retries: 0,
            weight: None,
        }
    }

    /// The state a restarted director remembered for the check.
    pub fn remembered(up: bool) -> Self {
        Self {
            up,
            retries: 0,
            weight: None,
        }
    }

    pub fn is_up(&self) -> bool {
        self.up
    }

    /// The weight asked for by the check, if any.
    pub fn weight(&self) -> Option<u32> {
        self.weight
    }

    /// Takes one result into account.
    pub fn record(&mut self, timing: &Timing, outcome: &Outcome) -> Step {
        match outcome {
            Outcome::Pass { weight, .. } => {
                self.retries = 0;
                let went_up = !self.up;
                let weight_changed = self.up && self.weight != *weight;
                self.up = true;
                self.weight = *weight;
                Step {
                    changed: went_up.then_some(true),
                    weight_changed,
                    next: timing.delay_loop,
                }
            }
            // A down check stays down; it is probed at the normal pace, without retries.
            Outcome::Fail(_) if !self.up => Step {
                changed: None,
                weight_changed: false,
                next: timing.delay_loop,
            },
            Outcome::Fail(_) if self.retries < timing.retry => {
                self.retries += 1;
                Step {
                    changed: None,
                    weight_changed: false,
                    next: timing.delay_before_retry,
                }
            }
            Outcome::Fail(_) => {
                self.up = false;
                self.retries = 0;
                self.weight = None;
                Step {
                    changed: Some(false),
                    weight_changed: false,
                    next: timing.delay_loop,
                }
            }
        }
    }
}

/// A real server as its service's pool sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member {
    /// The configured weight.
    pub weight: u32,
    pub inhibit_on_failure: bool,
    /// Whether its check (if any) is up; an unchecked server is always up.
    pub up: bool,
    /// The weight its check asked for, which replaces the configured one while up.
    pub dynamic_weight: Option<u32>,
}

impl Member {
    fn live_weight(&self) -> u32 {
        self.dynamic_weight.unwrap_or(self.weight)
    }
}

/// A service's quorum state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pool {
    pub quorum: u32,
    pub hysteresis: u32,
    pub has_sorry_server: bool,
    quorum_up: bool,
}

/// What the pool decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// One per member, in order.
    pub admissions: Vec<Admission>,
    /// The sorry server's admission, when there is one.
    pub sorry_server: Option<Admission>,
    /// `Some(true)` when the quorum was gained, `Some(false)` when lost.
    pub quorum_changed: Option<bool>,
    /// The live weight the decision was made on.
    pub live_weight: u64,
}

impl Pool {
    /// A pool starts with its quorum, as keepalived's does; the first evaluation corrects it.
    pub fn new(quorum: u32, hysteresis: u32, has_sorry_server: bool) -> Self {
        Self {
            quorum,
            hysteresis,
            has_sorry_server,
            quorum_up: true,
        }
    }

    pub fn has_quorum(&self) -> bool {
        self.quorum_up
    }

    /// Decides every member's admission from their states.
    pub fn evaluate(&mut self, members: &[Member]) -> Verdict {
        let live_weight: u64 = members
            .iter()
            .filter(|m| m.up)
            .map(|m| u64::from(m.live_weight()))
            .sum();
        let gain_at = u64::from(self.quorum) + u64::from(self.hysteresis);
        let lose_below = u64::from(self.quorum.saturating_sub(self.hysteresis));
        let quorum_changed = if !self.quorum_up && live_weight >= gain_at {
            self.quorum_up = true;
            Some(true)
        } else if self.quorum_up && (live_weight == 0 || live_weight < lose_below) {
            self.quorum_up = false;
            Some(false)
        } else {
            None
        };
        let sorry_in = self.has_sorry_server && !self.quorum_up;
        let admissions = members
            .iter()
            .map(|m| match (m.up, m.inhibit_on_failure) {
                (true, _) if sorry_in => Admission::Removed,
                (true, _) => Admission::Weight(m.live_weight()),
                (false, true) => Admission::Weight(0),
                (false, false) => Admission::Removed,
            })
            .collect();
        Verdict {
            admissions,
            sorry_server: self.has_sorry_server.then_some(if sorry_in {
                Admission::Weight(1)
            } else {
                Admission::Removed
            }),
            quorum_changed,
            live_weight,
        }
    }
}

/// The notifiers keepalived's omega mode runs at shutdown: with `omega`, the `notify_down`
/// of every real server that is up, and the service's `quorum_down` if it has its quorum.
/// Each member is `(up, notify_down)`.
pub fn omega_notifiers<'a, S>(
    omega: bool,
    members: &[(bool, Option<&'a S>)],
    has_quorum: bool,
    quorum_down: Option<&'a S>,
) -> Vec<&'a S> {
    if !omega {
        return Vec::new();
    }
    let mut scripts: Vec<&S> = members
        .iter()
        .filter(|(up, _)| *up)
        .filter_map(|(_, notify_down)| *notify_down)
        .collect();
    if has_quorum {
        scripts.extend(quorum_down);
    }
    scripts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::health::Failure;

    fn timing(retry: u32, alpha: bool) -> Timing {
        Timing {
            delay_loop: Duration::from_secs(6),
            connect_timeout: Duration::from_secs(3),
            retry,
            delay_before_retry: Duration::from_secs(2),
            warmup: Duration::ZERO,
            alpha,
        }
    }

    fn pass() -> Outcome {
        Outcome::pass("status 200")
    }

    fn fail() -> Outcome {
        Outcome::Fail(Failure::Refused)
    }

    /// Feeds results to a check on a fake clock that moves by each step's delay; returns
    /// when (in seconds since the first result) each transition happened.
    fn run(timing: &Timing, results: &[Outcome]) -> Vec<(u64, bool)> {
        let mut state = CheckState::new(timing);
        let mut now = Duration::ZERO;
        let mut transitions = Vec::new();
        for outcome in results {
            let step = state.record(timing, outcome);
            if let Some(up) = step.changed {
                transitions.push((now.as_secs(), up));
            }
            now += step.next;
        }
        transitions
    }

    #[test]
    fn retry_takes_a_server_down_after_retry_plus_one_failures() {
        let t = timing(2, false);
        // Failures at 0, 2 (retry 1) and 4 (retry 2): down at the third.
        assert_eq!(run(&t, &[fail(), fail(), fail()]), vec![(4, false)]);
        assert_eq!(run(&t, &[fail(), fail()]), vec![]);
        // Without retries, the first failure is enough.
        assert_eq!(run(&timing(0, false), &[pass(), fail()]), vec![(6, false)]);
    }

    #[test]
    fn one_success_brings_a_server_up_and_resets_the_retries() {
        let t = timing(1, false);
        assert_eq!(
            run(&t, &[fail(), fail(), pass()]),
            // Down at the retry (t=2), up at the next check a delay loop later (t=8).
            vec![(2, false), (8, true)]
        );
        // A success between failures starts the count again: fail, pass, fail stays up.
        assert_eq!(run(&t, &[fail(), pass(), fail(), pass()]), vec![]);
    }

    #[test]
    fn delays_follow_delay_loop_and_delay_before_retry() {
        let t = timing(1, false);
        let mut state = CheckState::new(&t);
        assert_eq!(state.record(&t, &pass()).next, t.delay_loop);
        assert_eq!(state.record(&t, &fail()).next, t.delay_before_retry);
        assert_eq!(state.record(&t, &fail()).next, t.delay_loop);
        // Down: no retries, the normal pace.
        assert_eq!(state.record(&t, &fail()).next, t.delay_loop);
        assert!(!state.is_up());
    }

    #[test]
    fn alpha_starts_down_and_comes_up_on_the_first_success() {
        let t = timing(3, true);
        let state = CheckState::new(&t);
        assert!(!state.is_up());
        // Failures while down change nothing and are not retried.
        assert_eq!(run(&t, &[fail(), fail(), pass()]), vec![(12, true)]);
        assert!(CheckState::new(&timing(3, false)).is_up());
    }

    #[test]
    fn dynamic_weights_are_reported_while_up() {
        let t = timing(0, false);
        let mut state = CheckState::new(&t);
        let weighted = |weight| Outcome::Pass {
            detail: "exit code".into(),
            weight: Some(weight),
        };
        assert!(state.record(&t, &weighted(5)).weight_changed);
        assert_eq!(state.weight(), Some(5));
        assert!(!state.record(&t, &weighted(5)).weight_changed);
        assert!(
            state.record(&t, &pass()).weight_changed,
            "back to configured"
        );
        assert_eq!(state.weight(), None);
    }

    fn member(weight: u32, up: bool, inhibit: bool) -> Member {
        Member {
            weight,
            inhibit_on_failure: inhibit,
            up,
            dynamic_weight: None,
        }
    }

    #[test]
    fn down_servers_are_removed_or_inhibited() {
        let mut pool = Pool::new(1, 0, false);
        let verdict = pool.evaluate(&[
            member(3, true, false),
            member(2, false, false),
            member(2, false, true),
        ]);
        assert_eq!(
            verdict.admissions,
            vec![
                Admission::Weight(3),
                Admission::Removed,
                Admission::Weight(0)
            ]
        );
        assert_eq!(verdict.sorry_server, None);
        assert_eq!(verdict.quorum_changed, None);
    }

    #[test]
    fn dynamic_weight_replaces_the_configured_one() {
        let mut pool = Pool::new(1, 0, false);
        let mut m = member(3, true, false);
        m.dynamic_weight = Some(7);
        assert_eq!(pool.evaluate(&[m]).admissions, vec![Admission::Weight(7)]);
    }

    #[test]
    fn the_sorry_server_serves_only_while_no_real_server_is_up() {
        let mut pool = Pool::new(1, 0, true);
        let all_up = [member(1, true, false), member(1, true, false)];
        let verdict = pool.evaluate(&all_up);
        assert_eq!(verdict.sorry_server, Some(Admission::Removed));
        assert_eq!(verdict.quorum_changed, None);

        let one_up = [member(1, true, false), member(1, false, false)];
        assert_eq!(
            pool.evaluate(&one_up).sorry_server,
            Some(Admission::Removed)
        );

        let none_up = [member(1, false, true), member(1, false, false)];
        let verdict = pool.evaluate(&none_up);
        assert_eq!(verdict.sorry_server, Some(Admission::Weight(1)));
        assert_eq!(verdict.quorum_changed, Some(false));
        assert_eq!(
            verdict.admissions,
            vec![Admission::Weight(0), Admission::Removed]
        );

        let back = pool.evaluate(&one_up);
        assert_eq!(back.quorum_changed, Some(true));
        assert_eq!(back.sorry_server, Some(Admission::Removed));
        assert_eq!(back.admissions[0], Admission::Weight(1));
    }

    #[test]
    fn losing_quorum_with_a_sorry_server_removes_the_remaining_live_servers() {
        // Quorum 3 with weights 1+1+1: one down loses it.
        let mut pool = Pool::new(3, 0, true);
        let verdict = pool.evaluate(&[
            member(1, true, false),
            member(1, true, false),
            member(1, false, false),
        ]);
        assert_eq!(verdict.quorum_changed, Some(false));
        assert_eq!(verdict.sorry_server, Some(Admission::Weight(1)));
        assert!(verdict.admissions.iter().all(|a| *a == Admission::Removed));
        // Without a sorry server, losing quorum changes no admission (only the notifiers).
        let mut pool = Pool::new(3, 0, false);
        let verdict = pool.evaluate(&[member(1, true, false), member(1, false, false)]);
        assert_eq!(verdict.quorum_changed, Some(false));
        assert_eq!(
            verdict.admissions,
            vec![Admission::Weight(1), Admission::Removed]
        );
    }

    #[test]
    fn hysteresis_damps_quorum_flaps() {
        // Quorum 4, hysteresis 1: lost below 3, regained at 5.
        let mut pool = Pool::new(4, 1, true);
        let weights = |live: &[u32]| -> Vec<Member> {
            live.iter().map(|&w| member(w, w > 0, false)).collect()
        };
        let mut changes = Vec::new();
        for live in [&[3][..], &[2], &[3], &[4], &[5], &[3], &[2]] {
            changes.push(pool.evaluate(&weights(live)).quorum_changed);
        }
        assert_eq!(
            changes,
            vec![
                None,        // 3 is not below 4-1
                Some(false), // 2 is
                None,        // 3 is not 4+1
                None,        // 4 is not either
                Some(true),  // 5 is
                None,        // 3 is not below 3
                Some(false), // 2 is
            ]
        );
    }

    #[test]
    fn omega_runs_down_notifiers_of_live_servers_and_quorum_down_at_shutdown() {
        let members = [
            (true, Some(&"down-a")),
            (false, Some(&"down-b")),
            (true, None),
        ];
        assert_eq!(
            omega_notifiers(true, &members, true, Some(&"quorum-down")),
            vec![&"down-a", &"quorum-down"]
        );
        assert_eq!(
            omega_notifiers(true, &members, false, Some(&"quorum-down")),
            vec![&"down-a"],
            "a service without quorum already ran quorum_down"
        );
        assert!(omega_notifiers(false, &members, true, Some(&"quorum-down")).is_empty());
    }

    #[test]
    fn a_live_weight_of_zero_loses_the_quorum_even_with_hysteresis() {
        let mut pool = Pool::new(1, 5, true);
        let verdict = pool.evaluate(&[member(0, true, false)]);
        assert_eq!(verdict.quorum_changed, Some(false));
        assert_eq!(verdict.live_weight, 0);
    }
}
