//! The supervisor with a fake prober on tokio's paused clock: shared checks, transitions,
//! sorry server, reloads, concurrency. Notifiers run real programs on the real clock.

use std::net::Ipv4Addr;
use std::{
    collections::HashSet,
    sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use tokio::time::Instant;

use super::*;
use crate::{base::health::Failure, logic::config};

/// Passes every check except those whose endpoint is listed as failing; records every call.
#[derive(Default)]
struct FakeProber {
    failing: Mutex<HashSet<Ipv4Addr>>,
    calls: Mutex<Vec<(Duration, String)>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// How long each attempt takes.
    hold: Duration,
    epoch: Option<Instant>,
}

impl FakeProber {
    fn new(hold: Duration) -> Arc<Self> {
        Arc::new(Self {
            hold,
            epoch: Some(Instant::now()),
            ..Self::default()
        })
    }

    fn set_failing(&self, address: [u8; 4], failing: bool) {
        let mut set = self.failing.lock().unwrap();
        if failing {
            set.insert(address.into());
        } else {
            set.remove(&Ipv4Addr::from(address));
        }
    }

    /// When (seconds since the start, rounded down) each check of `target` was started.
    fn calls_to(&self, target: &str) -> Vec<u64> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, name)| name.ends_with(target))
            .map(|(at, _)| at.as_secs())
            .collect()
    }
}

struct Shared(Arc<FakeProber>);

impl Prober for Shared {
    fn probe(&self, check: Arc<Check>) -> BoxFuture<'static, Outcome> {
        let fake = self.0.clone();
        Box::pin(async move {
            let started = fake.epoch.map(|e| e.elapsed()).unwrap_or_default();
            fake.calls
                .lock()
                .unwrap()
                .push((started, check.to_string()));
            let now = fake.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            fake.max_in_flight.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(fake.hold).await;
            fake.in_flight.fetch_sub(1, Ordering::SeqCst);
            let address: Option<std::net::SocketAddr> = match &check.probe {
                Probe::Tcp(endpoint) => Some(endpoint.connect),
                Probe::Http(http) => Some(http.endpoint.connect),
                Probe::Udp(udp) => Some(udp.endpoint.connect),
                Probe::Dns(dns) => Some(dns.endpoint.connect),
                Probe::Ping(ping) => Some(std::net::SocketAddr::new(ping.address, 0)),
                Probe::Misc(_) => None,
            };
            let failing = address.is_some_and(|a| match a.ip() {
                IpAddr::V4(ip) => fake.failing.lock().unwrap().contains(&ip),
                IpAddr::V6(_) => false,
            });
            if failing {
                Outcome::Fail(Failure::Refused)
            } else {
                Outcome::pass("connected")
            }
        })
    }
}

/// The latest status of every real server, as the director would hold it.
#[derive(Default)]
struct Latest(HashMap<(ServiceMapKey, IpAddr), HealthStatus>);

impl Latest {
    fn apply(&mut self, updates: Vec<HealthUpdate>) {
        for update in updates {
            self.0
                .insert((update.service, update.address), update.status);
        }
    }

    fn get(&self, service_port: u16, vip_last: u8, address: [u8; 4]) -> &HealthStatus {
        self.0
            .iter()
            .find(|((key, a), _)| {
                key.address() == Ipv4Addr::new(10, 0, 0, vip_last)
                    && key.port() == service_port
                    && *a == Ipv4Addr::from(address)
            })
            .map(|(_, status)| status)
            .unwrap_or_else(|| panic!("no status for {address:?} in {:?}", self.0.keys()))
    }

    /// Takes updates for `duration` of (paused, auto-advancing) time.
    async fn follow(&mut self, supervisor: &mut Supervisor, duration: Duration) {
        let deadline = Instant::now() + duration;
        while let Ok(Some(updates)) = tokio::time::timeout_at(deadline, supervisor.updates()).await
        {
            self.apply(updates);
        }
    }
}

fn start(text: &str, fake: &Arc<FakeProber>, options: Options) -> (Supervisor, Latest) {
    let config = config::parse(text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
    let (supervisor, initial) = Supervisor::start(&config, Arc::new(Shared(fake.clone())), options);
    let mut latest = Latest::default();
    latest.apply(initial);
    (supervisor, latest)
}

const TWO_SERVICES: &str = r#"
[director]
interface = "eth0"

[[virtual_server]]
address = "10.0.0.100"
port = 80
delay_loop = 2
sorry_server = { address = "10.0.0.99" }

[[virtual_server.real_server]]
address = "10.0.0.11"
[virtual_server.real_server.TCP_CHECK]
retry = 1
delay_before_retry = 1

[[virtual_server.real_server]]
address = "10.0.0.12"
weight = 4
inhibit_on_failure = true
[virtual_server.real_server.TCP_CHECK]
retry = 1
delay_before_retry = 1

[[virtual_server]]
address = "10.0.0.101"
port = 80
delay_loop = 2

[[virtual_server.real_server]]
address = "10.0.0.11"
[virtual_server.real_server.TCP_CHECK]
retry = 1
delay_before_retry = 1
"#;

#[tokio::test(start_paused = true)]
async fn a_check_shared_by_two_services_runs_once_and_both_follow_it() {
    let fake = FakeProber::new(Duration::from_millis(10));
    let (mut supervisor, mut latest) = start(TWO_SERVICES, &fake, Options::default());
    latest
        .follow(&mut supervisor, Duration::from_millis(9_500))
        .await;
    // Every 2 s from 0: 0, 2, 4, 6, 8 — once, not once per service.
    assert_eq!(fake.calls_to("10.0.0.11:80"), vec![0, 2, 4, 6, 8]);
    for vip in [100, 101] {
        let status = latest.get(80, vip, [10, 0, 0, 11]);
        assert_eq!(status.admission, Admission::Weight(1));
        assert_eq!(status.last_result.as_ref().unwrap().detail, "connected");
    }
    assert_eq!(
        supervisor.stats().checks_completed.load(Ordering::Relaxed),
        10
    );
    supervisor.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn failing_servers_are_removed_or_inhibited_and_come_back_on_one_success() {
    let fake = FakeProber::new(Duration::from_millis(10));
    fake.set_failing([10, 0, 0, 11], true);
    fake.set_failing([10, 0, 0, 12], true);
    let (mut supervisor, mut latest) = start(TWO_SERVICES, &fake, Options::default());
    assert_eq!(
        latest.get(80, 100, [10, 0, 0, 11]).admission,
        Admission::Weight(1),
        "up until proven down"
    );
    // A failure at 0, the retry at 1: down then.
    latest
        .follow(&mut supervisor, Duration::from_millis(500))
        .await;
    assert_eq!(latest.get(80, 100, [10, 0, 0, 11]).state, HealthState::Up);
    latest
        .follow(&mut supervisor, Duration::from_millis(1_000))
        .await;
    let down = latest.get(80, 100, [10, 0, 0, 11]);
    assert_eq!(
        (down.state, down.admission),
        (HealthState::Down, Admission::Removed)
    );
    assert_eq!(
        down.last_result.as_ref().unwrap().detail,
        "connection refused"
    );
    assert_eq!(
        latest.get(80, 100, [10, 0, 0, 12]).admission,
        Admission::Weight(0),
        "inhibit_on_failure keeps it with weight 0"
    );
    // The other service follows the same check.
    assert_eq!(
        latest.get(80, 101, [10, 0, 0, 11]).admission,
        Admission::Removed
    );
    // Nothing is up: the sorry server serves.
    let sorry = latest.get(80, 100, [10, 0, 0, 99]);
    assert_eq!(
        (sorry.state, sorry.admission),
        (HealthState::SorryActive, Admission::Weight(1))
    );

    fake.set_failing([10, 0, 0, 12], false);
    latest.follow(&mut supervisor, Duration::from_secs(3)).await;
    assert_eq!(
        latest.get(80, 100, [10, 0, 0, 12]).admission,
        Admission::Weight(4)
    );
    let sorry = latest.get(80, 100, [10, 0, 0, 99]);
    assert_eq!(
        (sorry.state, sorry.admission),
        (HealthState::SorryStandby, Admission::Removed)
    );
    assert_eq!(
        latest.get(80, 100, [10, 0, 0, 11]).admission,
        Admission::Removed
    );
    supervisor.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn each_services_quorum_is_published_before_the_updates_that_go_with_it() {
    let fake = FakeProber::new(Duration::from_millis(10));
    let (mut supervisor, mut latest) = start(TWO_SERVICES, &fake, Options::default());
    let quorum = |supervisor: &Supervisor, vip: u8| {
        supervisor
            .quorums()
            .iter()
            .find(|(key, _)| key.address() == Ipv4Addr::new(10, 0, 0, vip))
            .map(|(_, &quorum)| quorum)
    };
    assert_eq!(quorum(&supervisor, 100), Some(true));
    assert_eq!(quorum(&supervisor, 101), Some(true));
    // 10.0.0.101 has only 10.0.0.11: it loses its quorum with it. 10.0.0.100 keeps 10.0.0.12.
    fake.set_failing([10, 0, 0, 11], true);
    let deadline = Instant::now() + Duration::from_secs(3);
    while latest.get(80, 101, [10, 0, 0, 11]).state == HealthState::Up {
        let updates = tokio::time::timeout_at(deadline, supervisor.updates())
            .await
            .expect("10.0.0.11 goes down")
            .expect("a batch");
        latest.apply(updates);
    }
    assert_eq!(
        quorum(&supervisor, 101),
        Some(false),
        "as soon as its batch is read"
    );
    assert_eq!(quorum(&supervisor, 100), Some(true));
    fake.set_failing([10, 0, 0, 11], false);
    latest.follow(&mut supervisor, Duration::from_secs(3)).await;
    assert_eq!(quorum(&supervisor, 101), Some(true), "gained back");
    supervisor.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn alpha_servers_start_down_before_any_check() {
    let fake = FakeProber::new(Duration::from_millis(10));
    let text = TWO_SERVICES.replacen("delay_loop = 2\n", "delay_loop = 2\nalpha = true\n", 1);
    let (mut supervisor, mut latest) = start(&text, &fake, Options::default());
    assert_eq!(
        latest.get(80, 100, [10, 0, 0, 11]).admission,
        Admission::Removed
    );
    assert_eq!(
        latest.get(80, 100, [10, 0, 0, 99]).state,
        HealthState::SorryActive
    );
    latest
        .follow(&mut supervisor, Duration::from_millis(500))
        .await;
    assert_eq!(
        latest.get(80, 100, [10, 0, 0, 11]).admission,
        Admission::Weight(1)
    );
    supervisor.shutdown().await;
}

const RELOADED: &str = r#"
[director]
interface = "eth0"

[[virtual_server]]
address = "10.0.0.100"
port = 80
delay_loop = 10

[[virtual_server.real_server]]
address = "10.0.0.11"
[virtual_server.real_server.TCP_CHECK]
retry = 0

[[virtual_server.real_server]]
address = "10.0.0.12"
[virtual_server.real_server.TCP_CHECK]
retry = 0
connect_timeout = 1
"#;

#[tokio::test(start_paused = true)]
async fn a_reload_keeps_the_state_and_timers_of_unchanged_checks() {
    let fake = FakeProber::new(Duration::from_millis(10));
    fake.set_failing([10, 0, 0, 11], true);
    let (mut supervisor, mut latest) = start(RELOADED, &fake, Options::default());
    latest.follow(&mut supervisor, Duration::from_secs(3)).await;
    assert_eq!(latest.get(80, 100, [10, 0, 0, 11]).state, HealthState::Down);

    // Change 10.0.0.12's check, add a real server, keep 10.0.0.11's check as it was.
    let edited = RELOADED.replace("connect_timeout = 1", "connect_timeout = 2")
        + "\n[[virtual_server.real_server]]\naddress = \"10.0.0.13\"\n\
           [virtual_server.real_server.TCP_CHECK]\nretry = 0\n";
    supervisor
        .reload(&config::parse(&edited, "t.toml").unwrap())
        .await;
    latest = Latest::default();
    latest.follow(&mut supervisor, Duration::from_secs(9)).await;
    // 10.0.0.11 is still down without a new failure, and its timer still says 10 s.
    assert_eq!(latest.get(80, 100, [10, 0, 0, 11]).state, HealthState::Down);
    assert_eq!(fake.calls_to("10.0.0.11:80"), vec![0, 10]);
    // The changed and the new checks started at the reload.
    assert_eq!(fake.calls_to("10.0.0.12:80"), vec![0, 3]);
    assert_eq!(fake.calls_to("10.0.0.13:80"), vec![3]);
    supervisor.shutdown().await;
}

/// A service with forty real servers, each with a `TCP_CHECK` every 60 s.
fn forty_tcp_checked_servers() -> String {
    let mut text = String::from(
        "[director]\ninterface = \"eth0\"\n[[virtual_server]]\naddress = \"10.0.0.100\"\n\
         port = 80\ndelay_loop = 60\n",
    );
    for i in 1..=40 {
        text += &format!(
            "[[virtual_server.real_server]]\naddress = \"10.0.1.{i}\"\n\
             [virtual_server.real_server.TCP_CHECK]\n"
        );
    }
    text
}

#[tokio::test(start_paused = true)]
async fn checks_run_with_bounded_concurrency() {
    let text = forty_tcp_checked_servers();
    let fake = FakeProber::new(Duration::from_secs(1));
    let options = Options {
        max_concurrent_checks: 4,
        ..Options::default()
    };
    let (mut supervisor, mut latest) = start(&text, &fake, options);
    latest
        .follow(&mut supervisor, Duration::from_secs(12))
        .await;
    assert_eq!(fake.max_in_flight.load(Ordering::SeqCst), 4);
    assert_eq!(
        supervisor.stats().checks_completed.load(Ordering::Relaxed),
        40
    );
    assert!(latest.0.values().all(|status| status.last_result.is_some()));
    supervisor.shutdown().await;
}

/// Waits (real time, bounded) until `path` exists, and returns its contents.
async fn wait_for_file(path: &std::path::Path) -> String {
    for _ in 0..200 {
        if let Ok(text) = std::fs::read_to_string(path) {
            if text.ends_with('\n') {
                return text;
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{} was never written", path.display());
}

#[tokio::test]
async fn notifiers_run_on_transitions_and_omega_runs_them_at_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let notify = dir.path().join("notify.sh");
    std::fs::write(
        &notify,
        "#!/bin/sh\nprintf '%s %s %s\\n' \"$LVS_EVENT\" \"$LVS_REAL_SERVER\" \"$LVS_REASON\" > \"$1\"\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&notify, std::fs::Permissions::from_mode(0o755)).unwrap();
    let file = |name: &str| dir.path().join(name);
    let text = format!(
        r#"
[director]
interface = "eth0"

[[virtual_server]]
address = "10.0.0.100"
port = 80
delay_loop = 0.05
omega = true
quorum_down = ["{n}", "{quorum}"]

[[virtual_server.real_server]]
address = "10.0.0.11"
notify_down = ["{n}", "{down11}"]
[virtual_server.real_server.TCP_CHECK]
retry = 0

[[virtual_server.real_server]]
address = "10.0.0.12"
notify_down = ["{n}", "{down12}"]
[virtual_server.real_server.TCP_CHECK]
retry = 0
"#,
        n = notify.display(),
        quorum = file("quorum").display(),
        down11 = file("down11").display(),
        down12 = file("down12").display(),
    );
    let fake = FakeProber::new(Duration::from_millis(1));
    fake.set_failing([10, 0, 0, 11], true);
    let (supervisor, _latest) = start(&text, &fake, Options::default());
    assert_eq!(
        wait_for_file(&file("down11")).await,
        "down 10.0.0.11 connection refused\n"
    );
    assert!(!file("down12").exists(), "10.0.0.12 is up");
    // At shutdown, omega runs the down notifier of the server still up, and quorum_down.
    supervisor.shutdown().await;
    assert_eq!(
        std::fs::read_to_string(file("down12")).unwrap(),
        "shutdown  \n"
    );
    assert_eq!(
        std::fs::read_to_string(file("quorum")).unwrap(),
        "shutdown  \n"
    );
}

/// A restarted director's remembered states replace the ones each check starts with: an alpha
/// server that was up stays up, a server that was down stays out until its check passes; and
/// every state is kept in the memory file, which follows the changes.
#[tokio::test(start_paused = true)]
async fn remembered_states_replace_the_starting_ones_and_are_kept_in_a_file() {
    let fake = FakeProber::new(Duration::from_millis(10));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("netns-1-eth0.health");
    let service = ServiceMapKey::new(Ipv4Addr::from([10, 0, 0, 100]).into(), 80u16, 6);
    let options = Options {
        memory: Some(file.clone()),
        remembered: HashMap::from([
            ((service, Ipv4Addr::new(10, 0, 0, 11).into()), true),
            ((service, Ipv4Addr::new(10, 0, 0, 12).into()), false),
        ]),
        ..Options::default()
    };
    let text = TWO_SERVICES.replacen("delay_loop = 2\n", "delay_loop = 2\nalpha = true\n", 1);
    let (mut supervisor, mut latest) = start(&text, &fake, options);
    assert_eq!(
        latest.get(80, 100, [10, 0, 0, 11]).admission,
        Admission::Weight(1),
        "up before the restart: not taken out by alpha"
    );
    assert_eq!(
        latest.get(80, 100, [10, 0, 0, 12]).admission,
        Admission::Weight(0),
        "down before the restart: inhibited until its check passes"
    );
    let kept = std::fs::read_to_string(&file).unwrap();
    assert!(kept.contains("up tcp 10.0.0.100:80 10.0.0.11\n"), "{kept}");
    assert!(
        kept.contains("down tcp 10.0.0.100:80 10.0.0.12\n"),
        "{kept}"
    );

    latest.follow(&mut supervisor, Duration::from_secs(5)).await;
    assert_eq!(
        latest.get(80, 100, [10, 0, 0, 12]).admission,
        Admission::Weight(4),
        "back once its check passed"
    );
    let kept = std::fs::read_to_string(&file).unwrap();
    assert!(kept.contains("up tcp 10.0.0.100:80 10.0.0.12\n"), "{kept}");
    supervisor.shutdown().await;
}

/// The director's way: the supervisor on a thread of its own, on the real clock. Its checks
/// run there (not on the test's runtime), a failing server is reported down, and a shutdown
/// waits for the thread's loop to end.
#[tokio::test]
async fn a_supervisor_on_its_own_thread_checks_reports_and_stops() {
    let fake = Arc::new(FakeProber {
        hold: Duration::from_millis(1),
        ..FakeProber::default()
    });
    fake.set_failing([10, 0, 0, 12], true);
    let config = config::parse(TWO_SERVICES, "t.toml").unwrap_or_else(|e| panic!("{e}"));
    let test_thread = std::thread::current().id();
    let (mut supervisor, initial) = Supervisor::start_on_own_thread(
        &config,
        Arc::new(OnThread(Shared(fake.clone()), test_thread)),
        Options::default(),
    );
    let mut latest = Latest::default();
    latest.apply(initial);
    // A failing check with `retry = 1` is down after its first attempt and one retry 1 s
    // later; allow for a slow machine.
    let deadline = Instant::now() + Duration::from_secs(10);
    while latest.get(80, 100, [10, 0, 0, 12]).state != HealthState::Down {
        let batch = tokio::time::timeout_at(deadline, supervisor.updates())
            .await
            .expect("the failing server is reported down within 10 s")
            .expect("the supervisor runs");
        latest.apply(batch);
    }
    assert_eq!(latest.get(80, 100, [10, 0, 0, 11]).state, HealthState::Up);
    assert!(supervisor.stats().checks_completed.load(Ordering::Relaxed) >= 2);
    tokio::time::timeout(Duration::from_secs(10), supervisor.shutdown())
        .await
        .expect("the supervisor's thread ends at shutdown");
    assert!(
        !fake.calls.lock().unwrap().is_empty(),
        "the checks ran on the supervisor's thread"
    );
}

/// Fails the test (through a panic in the check, which the supervisor logs and drops) if a
/// check runs on the given thread.
struct OnThread(Shared, std::thread::ThreadId);

impl Prober for OnThread {
    fn probe(&self, check: Arc<Check>) -> BoxFuture<'static, Outcome> {
        assert_ne!(
            std::thread::current().id(),
            self.1,
            "a check ran on the director's thread"
        );
        self.0.probe(check)
    }
}

const DATAGRAM_CHECKS: &str = r#"
[director]
interface = "eth0"

[[virtual_server]]
address = "10.0.0.100"
port = 53
protocol = "udp"
delay_loop = 5

[[virtual_server.real_server]]
address = "10.0.0.11"
[virtual_server.real_server.DNS_CHECK]
name = "example.test"

[[virtual_server.real_server]]
address = "10.0.0.12"
[virtual_server.real_server.UDP_CHECK]
require_reply = true

[[virtual_server.real_server]]
address = "10.0.0.13"
[virtual_server.real_server.PING_CHECK]
"#;

/// keepalived's DNS_CHECK retries 3 times, `delay_loop` apart, before the server goes down;
/// UDP_CHECK and PING_CHECK retry once, a second later, as the other network checkers.
#[tokio::test(start_paused = true)]
async fn datagram_checks_follow_keepalived_s_retries() {
    let fake = FakeProber::new(Duration::from_millis(10));
    for last in [11, 12, 13] {
        fake.set_failing([10, 0, 0, last], true);
    }
    let (mut supervisor, mut latest) = start(DATAGRAM_CHECKS, &fake, Options::default());
    latest
        .follow(&mut supervisor, Duration::from_millis(1_500))
        .await;
    assert_eq!(fake.calls_to("10.0.0.12:53"), vec![0, 1]);
    assert_eq!(fake.calls_to("PING_CHECK 10.0.0.13"), vec![0, 1]);
    for last in [12, 13] {
        assert_eq!(
            latest.get(53, 100, [10, 0, 0, last]).state,
            HealthState::Down
        );
    }
    latest
        .follow(&mut supervisor, Duration::from_millis(13_000))
        .await;
    assert_eq!(
        fake.calls_to("10.0.0.11:53 SOA example.test"),
        vec![0, 5, 10]
    );
    assert_eq!(
        latest.get(53, 100, [10, 0, 0, 11]).state,
        HealthState::Up,
        "three failures are not yet enough"
    );
    latest
        .follow(&mut supervisor, Duration::from_millis(1_000))
        .await;
    assert_eq!(
        fake.calls_to("10.0.0.11:53 SOA example.test"),
        vec![0, 5, 10, 15]
    );
    let down = latest.get(53, 100, [10, 0, 0, 11]);
    assert_eq!(
        (down.state, down.admission),
        (HealthState::Down, Admission::Removed)
    );
    assert_eq!(
        down.checker.as_deref(),
        Some("DNS_CHECK 10.0.0.11:53 SOA example.test")
    );
    supervisor.shutdown().await;
}

/// Forty servers whose checks pass one after another, a result every 10 ms: the results
/// are published in batches at least `RESULT_PACE` apart, not one batch per check, and
/// none is lost.
#[tokio::test(start_paused = true)]
async fn new_last_results_alone_are_published_at_the_pace() {
    let text = forty_tcp_checked_servers();
    let fake = FakeProber::new(Duration::from_millis(10));
    let options = Options {
        max_concurrent_checks: 1,
        ..Options::default()
    };
    let (mut supervisor, mut latest) = start(&text, &fake, options);
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut published = Vec::new();
    while let Ok(Some(updates)) = tokio::time::timeout_at(deadline, supervisor.updates()).await {
        published.push(Instant::now());
        latest.apply(updates);
    }
    assert!(latest.0.values().all(|status| status.last_result.is_some()));
    assert!(published.len() < 40, "{} batches", published.len());
    for pair in published.windows(2) {
        assert!(pair[1] - pair[0] >= RESULT_PACE, "{:?}", pair[1] - pair[0]);
    }
    supervisor.shutdown().await;
}

/// A checker that panics fails its check, and the check runs again after `delay_loop`.
#[tokio::test(start_paused = true)]
async fn a_checker_that_panics_fails_its_check_and_runs_again() {
    struct Panicking(AtomicUsize);
    impl Prober for Panicking {
        fn probe(&self, _check: Arc<Check>) -> BoxFuture<'static, Outcome> {
            let first = self.0.fetch_add(1, Ordering::SeqCst) == 0;
            Box::pin(async move {
                if first {
                    panic!("a checker's bug");
                }
                Outcome::pass("connected")
            })
        }
    }
    let text = "[director]\ninterface = \"eth0\"\n[[virtual_server]]\n\
                address = \"10.0.0.100\"\nport = 80\ndelay_loop = 2\n\
                [[virtual_server.real_server]]\naddress = \"10.0.1.1\"\n\
                [virtual_server.real_server.TCP_CHECK]\n";
    let config = config::parse(text, "t.toml").unwrap();
    let prober = Arc::new(Panicking(AtomicUsize::new(0)));
    let (mut supervisor, initial) = Supervisor::start(&config, prober.clone(), Options::default());
    let mut latest = Latest::default();
    latest.apply(initial);
    latest
        .follow(&mut supervisor, Duration::from_millis(4_500))
        .await;
    assert!(prober.0.load(Ordering::SeqCst) >= 2, "not run again");
    let status = latest.get(80, 100, [10, 0, 1, 1]);
    assert_eq!(status.last_result.as_ref().unwrap().detail, "connected");
    supervisor.shutdown().await;
}
