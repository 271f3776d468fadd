//! The health-checking task: it schedules checks, runs them with bounded concurrency, feeds
//! their results to the state machines, runs notifiers, and publishes what changed.
//!
//! It is one tokio task that owns all health state; checks run in tasks of their own (at most
//! one attempt per check at a time, at most `max_concurrent_checks` at once), so neither a
//! slow real server nor a burst of checks can hold up the director's event loop, which only
//! receives batches of updates. Updates are coalesced per real server while the director has
//! not taken them yet, so a slow reader never makes the supervisor wait or queue without end.
//!
//! A reload keeps every check whose definition did not change, with its state and its place
//! in the timer queue: a flapping or edited server does not reset anybody else's timers.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    future::{Future, poll_fn},
    net::IpAddr,
    panic::AssertUnwindSafe,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use futures::{FutureExt as _, StreamExt as _, future::BoxFuture, stream::FuturesUnordered};
use lvs_common::keys::ServiceMapKey;
use tokio::{
    sync::{Semaphore, mpsc, oneshot},
    task::JoinSet,
};
use tokio_util::time::{DelayQueue, delay_queue};
use tracing::{info, warn};

use crate::{
    health::{
        Admission, CheckResult, Failure, HealthState, HealthStatus, Outcome, dns,
        http::{self, TlsConfigs},
        memory, misc, ping,
        plan::{self, MemberRef, Plan, ServicePlan},
        script::{self, ScriptEnd},
        state::{CheckState, Member, Pool, omega_notifiers},
        tcp, udp,
    },
    logic::config::{
        Config,
        health::{Check, Probe, Script},
    },
};

/// Runs one attempt of a check. The real one probes the network or runs a program; tests
/// use a fake.
pub trait Prober: Send + Sync + 'static {
    fn probe(&self, check: Arc<Check>) -> BoxFuture<'static, Outcome>;
}

/// The real checkers.
#[derive(Default)]
pub struct Checkers {
    tls: Arc<TlsConfigs>,
}

impl Prober for Checkers {
    // Each checker's future is boxed on its own: one future over all the checkers would be
    // as large as the largest (HTTP's, with hyper's connection and TLS in it), and every
    // TCP_CHECK would allocate and copy that much.
    fn probe(&self, check: Arc<Check>) -> BoxFuture<'static, Outcome> {
        let timeout = check.timing.connect_timeout;
        match &check.probe {
            Probe::Tcp(endpoint) => {
                let endpoint = *endpoint;
                Box::pin(async move { tcp::probe(&endpoint, timeout).await })
            }
            Probe::Http(_) => {
                let tls = self.tls.clone();
                Box::pin(async move {
                    let Probe::Http(probe) = &check.probe else {
                        unreachable!("an HTTP probe was matched")
                    };
                    http::probe(probe, timeout, &tls).await
                })
            }
            Probe::Misc(_) => Box::pin(async move {
                let Probe::Misc(probe) = &check.probe else {
                    unreachable!("a MISC probe was matched")
                };
                misc::probe(probe).await
            }),
            Probe::Udp(_) => Box::pin(async move {
                let Probe::Udp(probe) = &check.probe else {
                    unreachable!("a UDP probe was matched")
                };
                udp::probe(probe, timeout).await
            }),
            Probe::Dns(_) => Box::pin(async move {
                let Probe::Dns(probe) = &check.probe else {
                    unreachable!("a DNS probe was matched")
                };
                dns::probe(probe, timeout).await
            }),
            Probe::Ping(_) => Box::pin(async move {
                let Probe::Ping(probe) = &check.probe else {
                    unreachable!("a PING probe was matched")
                };
                ping::probe(probe, timeout).await
            }),
        }
    }
}

/// Limits of the supervisor.
#[derive(Clone, Debug)]
pub struct Options {
    /// Check attempts running at once, over all checks.
    pub max_concurrent_checks: usize,
    /// Notifier programs running at once.
    pub max_concurrent_notifiers: usize,
    /// How long a notifier may run before it is killed.
    pub notifier_timeout: Duration,
    /// Where the up/down state of every checked real server is kept (`memory`), rewritten
    /// on every change; none to keep it nowhere.
    pub memory: Option<std::path::PathBuf>,
    /// The states to start with (a restarted director's), in place of each check's own
    /// starting state (up, or down with `alpha`).
    pub remembered: HashMap<memory::MemberKey, bool>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            max_concurrent_checks: 256,
            max_concurrent_notifiers: 16,
            notifier_timeout: Duration::from_secs(30),
            memory: None,
            remembered: HashMap::new(),
        }
    }
}

/// A change in the health of one real server (or sorry server) of one service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthUpdate {
    pub service: ServiceMapKey,
    pub address: IpAddr,
    pub status: HealthStatus,
}

enum Command {
    Reload(Box<Config>),
    Shutdown(oneshot::Sender<()>),
}

/// Counters for benchmarks and status.
#[derive(Debug, Default)]
pub struct Stats {
    pub checks_completed: AtomicU64,
}

/// Whether each service under health checking has its quorum (keepalived's `quorum`),
/// as the supervisor last decided. Services health checking leaves out (no checker and no
/// sorry server) are not in it: nothing can take their quorum away.
pub type Quorums = HashMap<ServiceMapKey, bool>;

/// The handle the director holds.
pub struct Supervisor {
    updates: mpsc::Receiver<Vec<HealthUpdate>>,
    commands: mpsc::Sender<Command>,
    running: Running,
    stats: Arc<Stats>,
    quorums: Arc<Mutex<Quorums>>,
}

/// Where the supervisor runs, to wait for its end.
enum Running {
    /// A task on the runtime that started it.
    Task(tokio::task::JoinHandle<()>),
    /// A thread of its own; the sender is dropped when the supervisor's loop has returned.
    Thread(oneshot::Receiver<()>),
}

impl Supervisor {
    /// Starts checking in a task on the current runtime. Returns the handle and the initial
    /// health of every real server under checking (alpha servers start down), to apply
    /// before the data plane is first written.
    pub fn start(
        config: &Config,
        prober: Arc<dyn Prober>,
        options: Options,
    ) -> (Self, Vec<HealthUpdate>) {
        let (engine, initial, unstarted, ends) = Self::prepare(config, prober, &options);
        let task = tokio::spawn(engine.run(ends.commands, ends.updates));
        (unstarted.running(Running::Task(task)), initial)
    }

    /// Starts checking on a thread of its own, with a single-threaded runtime: what the
    /// director runs. A check is a few system calls and wake-ups, and on the director's
    /// multi-threaded runtime each wake-up may bounce between worker threads; on one thread
    /// of its own a check costs about half the CPU at a thousand real servers (see `cargo
    /// xtask bench`), and a burst of checks never takes a worker from the director's event
    /// loop. When no thread can be had, checking runs on the current runtime, as `start`.
    pub fn start_on_own_thread(
        config: &Config,
        prober: Arc<dyn Prober>,
        options: Options,
    ) -> (Self, Vec<HealthUpdate>) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(error) => {
                warn!(%error, "health checking runs on the director's runtime");
                return Self::start(config, prober, options);
            }
        };
        let (engine, initial, unstarted, ends) = Self::prepare(config, prober.clone(), &options);
        let (ended, ended_rx) = oneshot::channel::<()>();
        let spawned = std::thread::Builder::new()
            .name("lvs-health".into())
            .spawn(move || {
                runtime.block_on(engine.run(ends.commands, ends.updates));
                drop(ended);
            });
        match spawned {
            Ok(_) => (unstarted.running(Running::Thread(ended_rx)), initial),
            Err(error) => {
                // The engine went with the closure; a fresh one starts from the same config.
                warn!(%error, "health checking runs on the director's runtime");
                Self::start(config, prober, options)
            }
        }
    }

    /// The engine with its first plan, the initial health, the handle's side of the
    /// channels and the engine's.
    fn prepare(
        config: &Config,
        prober: Arc<dyn Prober>,
        options: &Options,
    ) -> (Engine, Vec<HealthUpdate>, Unstarted, EngineEnds) {
        let (updates_tx, updates) = mpsc::channel(4);
        let (commands, commands_rx) = mpsc::channel(4);
        let stats = Arc::new(Stats::default());
        let mut engine = Engine::new(prober, options, stats.clone());
        let quorums = engine.quorums.clone();
        engine.apply_plan(plan::plan(config), false);
        // What a previous director remembered counts for the checks it had, at start only:
        // checks a reload adds later start as their configuration says.
        engine.remembered.clear();
        let initial = engine.take_pending();
        let unstarted = Unstarted {
            updates,
            commands,
            stats,
            quorums,
        };
        let ends = EngineEnds {
            commands: commands_rx,
            updates: updates_tx,
        };
        (engine, initial, unstarted, ends)
    }

    /// The next batch of updates; `None` once the supervisor has stopped.
    pub async fn updates(&mut self) -> Option<Vec<HealthUpdate>> {
        self.updates.recv().await
    }

    /// Applies a new configuration: unchanged checks keep their state and timers.
    pub async fn reload(&self, config: &Config) {
        let _ = self
            .commands
            .send(Command::Reload(Box::new(config.clone())))
            .await;
    }

    /// Stops checking; with `omega`, runs the down notifiers first and waits for them
    /// (each bounded by the notifier timeout).
    pub async fn shutdown(self) {
        let (done, wait) = oneshot::channel();
        if self.commands.send(Command::Shutdown(done)).await.is_ok() {
            let _ = wait.await;
        }
        match self.running {
            Running::Task(task) => {
                let _ = task.await;
            }
            // Resolves (with an error) when the thread drops the sender at its end.
            Running::Thread(ended) => {
                let _ = ended.await;
            }
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Whether each checked service has its quorum now. A quorum changes only with an
    /// evaluation that also changes a member's status, so it is published before the batch
    /// of updates that follows, and a reader of that batch sees it here.
    pub fn quorums(&self) -> Quorums {
        self.quorums.lock().map(|q| q.clone()).unwrap_or_default()
    }
}

/// The engine's ends of the channels to its handle.
struct EngineEnds {
    commands: mpsc::Receiver<Command>,
    updates: mpsc::Sender<Vec<HealthUpdate>>,
}

/// The supervisor's handle before its loop runs somewhere.
struct Unstarted {
    updates: mpsc::Receiver<Vec<HealthUpdate>>,
    commands: mpsc::Sender<Command>,
    stats: Arc<Stats>,
    quorums: Arc<Mutex<Quorums>>,
}

impl Unstarted {
    fn running(self, running: Running) -> Supervisor {
        Supervisor {
            updates: self.updates,
            commands: self.commands,
            running,
            stats: self.stats,
            quorums: self.quorums,
        }
    }
}

/// One check's runtime state.
struct CheckEntry {
    /// The check itself: the one `Arc` that the engine's lookups identify it by.
    check: Arc<Check>,
    state: CheckState,
    /// Its entry in the timer queue, while it waits for its next attempt.
    queued: Option<delay_queue::Key>,
    /// The attempt running, if any (attempt numbers tell stale results apart after reloads).
    running: Option<u64>,
    last: Option<CheckResult>,
    followers: Vec<MemberRef>,
}

/// A service's runtime state.
struct ServiceRun {
    plan: ServicePlan,
    pool: Pool,
    /// What was last published for each member, and for the sorry server.
    members: Vec<HealthStatus>,
    sorry: Option<HealthStatus>,
}

/// A check's identity in the engine: the address of its one shared `Arc`. Looking a check
/// up by its whole definition would hash every field of it (URLs, paths, timings) twice per
/// attempt; a reload swaps each planned check for the running one it equals (see
/// `apply_plan`), so the address is enough. An `Arc` that a finished attempt still holds
/// keeps its address from being reused by another check.
fn id(check: &Arc<Check>) -> usize {
    Arc::as_ptr(check) as usize
}

/// How often updates that only carry a new last result are published: they are for the
/// status page, and publishing each on its own would wake the director once per check.
/// A change of state or admission is published at once.
const RESULT_PACE: Duration = Duration::from_millis(100);

/// One attempt of a check, run by the engine's own task among the others (no task of its
/// own: spawning one per check, with a permit to wait for, cost more than the check's own
/// work in user space).
struct Attempt {
    check: Arc<Check>,
    number: u64,
    started: tokio::time::Instant,
    probe: BoxFuture<'static, Outcome>,
}

impl Future for Attempt {
    type Output = Finished;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Finished> {
        let this = &mut *self;
        // A checker that panics fails its check instead of taking the engine down with it;
        // the check is scheduled again like after any other failure.
        let outcome = match std::panic::catch_unwind(AssertUnwindSafe(|| this.probe.poll_unpin(cx)))
        {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(outcome)) => outcome,
            Err(_) => {
                warn!(check = %this.check, "a health checker panicked");
                Outcome::Fail(Failure::Connect("the checker panicked".into()))
            }
        };
        Poll::Ready(Finished {
            check: this.check.clone(),
            attempt: this.number,
            outcome,
            at: SystemTime::now(),
            took: this.started.elapsed(),
        })
    }
}

/// The end of one attempt.
struct Finished {
    check: Arc<Check>,
    attempt: u64,
    outcome: Outcome,
    at: SystemTime,
    /// How long the probe took.
    took: Duration,
}

struct Engine {
    prober: Arc<dyn Prober>,
    max_concurrent_checks: usize,
    notifier_permits: Arc<Semaphore>,
    notifier_timeout: Duration,
    /// Every check, by its `id`.
    checks: HashMap<usize, CheckEntry>,
    queue: DelayQueue<Arc<Check>>,
    /// The attempts running, at most `max_concurrent_checks`.
    attempts: FuturesUnordered<Attempt>,
    /// Attempts due while as many were running, in the order they fell due.
    waiting: VecDeque<(Arc<Check>, u64)>,
    notifiers: JoinSet<()>,
    services: Vec<ServiceRun>,
    pending: HashMap<(ServiceMapKey, IpAddr), HealthStatus>,
    /// Whether a pending update changes a state or an admission, to be published at once.
    urgent: bool,
    /// Numbers attempts across all checks, so that a result of a check removed by a reload
    /// can never pass for an attempt of a check added back later.
    last_attempt: u64,
    stats: Arc<Stats>,
    memory: Option<std::path::PathBuf>,
    remembered: HashMap<memory::MemberKey, bool>,
    /// Each service's quorum, shared with the handle.
    quorums: Arc<Mutex<Quorums>>,
}

impl Engine {
    fn new(prober: Arc<dyn Prober>, options: &Options, stats: Arc<Stats>) -> Self {
        Self {
            prober,
            max_concurrent_checks: options.max_concurrent_checks.max(1),
            notifier_permits: Arc::new(Semaphore::new(options.max_concurrent_notifiers.max(1))),
            notifier_timeout: options.notifier_timeout,
            memory: options.memory.clone(),
            remembered: options.remembered.clone(),
            quorums: Arc::default(),
            checks: HashMap::new(),
            queue: DelayQueue::new(),
            attempts: FuturesUnordered::new(),
            waiting: VecDeque::new(),
            notifiers: JoinSet::new(),
            services: Vec::new(),
            pending: HashMap::new(),
            urgent: false,
            last_attempt: 0,
            stats,
        }
    }

    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        updates: mpsc::Sender<Vec<HealthUpdate>>,
    ) {
        // Publishing paces updates that carry only a new last result (`RESULT_PACE`).
        let pace = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(pace);
        loop {
            let publish = !self.pending.is_empty() && (self.urgent || pace.is_elapsed());
            let wait_for_pace = !self.pending.is_empty() && !publish;
            tokio::select! {
                Some(expired) = poll_fn(|cx| self.queue.poll_expired(cx)) => {
                    self.start_attempt(expired.into_inner());
                    // Whatever else fell due is taken now, rather than one per turn of the loop.
                    while let Some(Some(expired)) =
                        poll_fn(|cx| self.queue.poll_expired(cx)).now_or_never()
                    {
                        self.start_attempt(expired.into_inner());
                    }
                }
                Some(finished) = self.attempts.next() => {
                    self.finish(finished);
                    while let Some(Some(finished)) = self.attempts.next().now_or_never() {
                        self.finish(finished);
                    }
                    self.start_waiting();
                }
                Some(_) = self.notifiers.join_next() => {}
                command = commands.recv() => match command {
                    Some(Command::Reload(config)) => self.apply_plan(plan::plan(&config), true),
                    Some(Command::Shutdown(done)) => {
                        self.omega().await;
                        let _ = done.send(());
                        return;
                    }
                    // The handle is gone: nobody listens any more.
                    None => return,
                },
                () = &mut pace, if wait_for_pace => {}
                permit = updates.reserve(), if publish => match permit {
                    Ok(permit) => {
                        permit.send(self.take_pending());
                        pace.as_mut().reset(tokio::time::Instant::now() + RESULT_PACE);
                    }
                    Err(_) => self.pending.clear(),
                },
            }
        }
    }

    fn take_pending(&mut self) -> Vec<HealthUpdate> {
        self.urgent = false;
        if !self.pending.is_empty()
            && let Some(path) = &self.memory
            && let Err(error) = memory::write(path, &self.states())
        {
            tracing::warn!(%error, path = %path.display(), "keeping the health states failed");
        }
        self.pending
            .drain()
            .map(|((service, address), status)| HealthUpdate {
                service,
                address,
                status,
            })
            .collect()
    }

    /// The up/down state of every checked real server of every service.
    fn states(&self) -> HashMap<memory::MemberKey, bool> {
        let mut states = HashMap::new();
        for entry in self.checks.values() {
            for member in &entry.followers {
                if let Some(run) = self.services.get(member.service)
                    && let Some(plan) = run.plan.members.get(member.member)
                {
                    states.insert((run.plan.key, plan.address), entry.state.is_up());
                }
            }
        }
        states
    }

    /// Installs a plan: keeps the checks that did not change (state, timer and all), drops
    /// the others, schedules the new ones, and re-evaluates every service. `notify` is false
    /// at start, where nothing has changed yet from anybody's point of view.
    fn apply_plan(&mut self, plan: Plan, notify: bool) {
        let Plan {
            mut services,
            checks,
        } = plan;
        // A planned check equal to a running one is swapped for it, so that the engine finds
        // it by identity (`id`), and it keeps its state and timer.
        let running: HashMap<Arc<Check>, Arc<Check>> = self
            .checks
            .values()
            .map(|entry| (entry.check.clone(), entry.check.clone()))
            .collect();
        let canonical = |check: Arc<Check>| running.get(&check).cloned().unwrap_or(check);
        for service in &mut services {
            for member in &mut service.members {
                member.check = member.check.take().map(canonical);
            }
        }
        let checks: Vec<(Arc<Check>, Vec<MemberRef>)> = checks
            .into_iter()
            .map(|(check, followers)| (canonical(check), followers))
            .collect();
        let wanted: HashSet<usize> = checks.iter().map(|(check, _)| id(check)).collect();
        let removed: Vec<usize> = self
            .checks
            .keys()
            .filter(|check| !wanted.contains(check))
            .copied()
            .collect();
        for check in removed {
            if let Some(entry) = self.checks.remove(&check) {
                if let Some(key) = entry.queued {
                    self.queue.remove(&key);
                }
            }
        }
        for (check, followers) in checks {
            match self.checks.get_mut(&id(&check)) {
                Some(entry) => entry.followers = followers,
                None => {
                    let queued = Some(self.queue.insert(check.clone(), plan::first_delay(&check)));
                    // A check shared by several real servers starts down if any of them was
                    // remembered down: it must pass before any of them takes connections.
                    let remembered: Vec<bool> = followers
                        .iter()
                        .filter_map(|member| {
                            let service = services.get(member.service)?;
                            let address = service.members.get(member.member)?.address;
                            self.remembered.get(&(service.key, address)).copied()
                        })
                        .collect();
                    let state = if remembered.is_empty() {
                        CheckState::new(&check.timing)
                    } else {
                        CheckState::remembered(remembered.iter().all(|up| *up))
                    };
                    self.checks.insert(
                        id(&check),
                        CheckEntry {
                            check: check.clone(),
                            state,
                            queued,
                            running: None,
                            last: None,
                            followers,
                        },
                    );
                }
            }
        }
        let mut old: HashMap<ServiceMapKey, Pool> = self
            .services
            .drain(..)
            .map(|run| (run.plan.key, run.pool))
            .collect();
        for plan in services {
            let has_sorry = plan.sorry_server.is_some();
            // A service that stays keeps its quorum state, so a reload does not fire
            // quorum notifiers for nothing.
            let pool = match old.remove(&plan.key) {
                Some(mut pool) => {
                    pool.quorum = plan.quorum;
                    pool.hysteresis = plan.hysteresis;
                    pool.has_sorry_server = has_sorry;
                    pool
                }
                None => Pool::new(plan.quorum, plan.hysteresis, has_sorry),
            };
            self.services.push(ServiceRun {
                members: Vec::new(),
                sorry: None,
                plan,
                pool,
            });
        }
        for index in 0..self.services.len() {
            self.evaluate(index, notify, None);
        }
        self.publish_quorums();
    }

    /// Hands every service's quorum to the handle.
    fn publish_quorums(&self) {
        let quorums = self
            .services
            .iter()
            .map(|run| (run.plan.key, run.pool.has_quorum()))
            .collect();
        if let Ok(mut shared) = self.quorums.lock() {
            *shared = quorums;
        }
    }

    fn start_attempt(&mut self, check: Arc<Check>) {
        let Some(entry) = self.checks.get_mut(&id(&check)) else {
            return;
        };
        entry.queued = None;
        self.last_attempt += 1;
        let attempt = self.last_attempt;
        entry.running = Some(attempt);
        if self.attempts.len() < self.max_concurrent_checks {
            self.launch(check, attempt);
        } else {
            self.waiting.push_back((check, attempt));
        }
    }

    /// Starts attempts that waited for room, as long as there is room.
    fn start_waiting(&mut self) {
        while self.attempts.len() < self.max_concurrent_checks
            && let Some((check, attempt)) = self.waiting.pop_front()
        {
            // A reload may have removed the check while it waited.
            if self
                .checks
                .get(&id(&check))
                .is_some_and(|entry| entry.running == Some(attempt))
            {
                self.launch(check, attempt);
            }
        }
    }

    fn launch(&mut self, check: Arc<Check>, attempt: u64) {
        let probe = self.prober.probe(check.clone());
        self.attempts.push(Attempt {
            check,
            number: attempt,
            started: tokio::time::Instant::now(),
            probe,
        });
    }

    fn finish(&mut self, finished: Finished) {
        let Finished {
            check,
            attempt,
            outcome,
            at,
            took,
        } = finished;
        let Some(entry) = self.checks.get_mut(&id(&check)) else {
            return; // The check was removed by a reload while it ran.
        };
        if entry.running != Some(attempt) {
            return;
        }
        self.stats.checks_completed.fetch_add(1, Ordering::Relaxed);
        entry.running = None;
        let step = entry.state.record(&check.timing, &outcome);
        let last = CheckResult {
            passed: outcome.passed(),
            detail: outcome.to_string(),
            at_unix_ms: at
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            duration_ms: Some(took.as_millis() as u64),
        };
        entry.queued = Some(self.queue.insert(check.clone(), step.next));

        if step.changed.is_none() && !step.weight_changed {
            // Only the last result changed: publish it without re-deciding the pool.
            for member in &entry.followers {
                let run = &mut self.services[member.service];
                if let Some(status) = run.members.get_mut(member.member) {
                    status.last_result = Some(last.clone());
                    let address = run.plan.members[member.member].address;
                    self.pending.insert((run.plan.key, address), status.clone());
                }
            }
            entry.last = Some(last);
            return;
        }
        entry.last = Some(last);
        let followers = entry.followers.clone();
        if let Some(up) = step.changed {
            self.log_transition(&check, &followers, up, &outcome);
            for member in &followers {
                self.notify_member(*member, up, &outcome);
            }
        }
        let services: HashSet<usize> = followers.iter().map(|m| m.service).collect();
        for service in services {
            self.evaluate(service, true, Some(&outcome));
        }
    }

    /// Re-decides a service's pool and publishes what changed.
    fn evaluate(&mut self, index: usize, notify: bool, reason: Option<&Outcome>) {
        let run = &self.services[index];
        let members: Vec<Member> = run
            .plan
            .members
            .iter()
            .map(|m| {
                let state = m.check.as_ref().and_then(|c| self.checks.get(&id(c)));
                Member {
                    weight: m.weight,
                    inhibit_on_failure: m.inhibit_on_failure,
                    up: state.is_none_or(|s| s.state.is_up()),
                    dynamic_weight: state.and_then(|s| s.state.weight()),
                }
            })
            .collect();
        let run = &mut self.services[index];
        let verdict = run.pool.evaluate(&members);
        let mut statuses = Vec::with_capacity(members.len());
        for ((plan, member), admission) in run
            .plan
            .members
            .iter()
            .zip(&members)
            .zip(&verdict.admissions)
        {
            let entry = plan.check.as_ref().and_then(|c| self.checks.get(&id(c)));
            let status = HealthStatus {
                state: if member.up {
                    HealthState::Up
                } else {
                    HealthState::Down
                },
                admission: *admission,
                checker: plan.check.as_ref().map(|c| c.to_string()),
                last_result: entry.and_then(|e| e.last.clone()),
            };
            let before = run.members.get(statuses.len());
            if before.is_some_and(|b| b.admission != status.admission) {
                info!(
                    service = %run.plan.name,
                    real_server = %plan.address,
                    admission = ?status.admission,
                    "real server admission changed"
                );
            }
            if before != Some(&status) {
                // A new member, or a new state or admission, is for the director to act on
                // now; a new last result alone can wait for the pace.
                self.urgent |= before
                    .is_none_or(|b| b.state != status.state || b.admission != status.admission);
                self.pending
                    .insert((run.plan.key, plan.address), status.clone());
            }
            statuses.push(status);
        }
        run.members = statuses;
        if let (Some(address), Some(admission)) = (run.plan.sorry_server, verdict.sorry_server) {
            let status = HealthStatus {
                state: if admission == Admission::Removed {
                    HealthState::SorryStandby
                } else {
                    HealthState::SorryActive
                },
                admission,
                checker: None,
                last_result: None,
            };
            if run.sorry.as_ref() != Some(&status) {
                if run.sorry.is_some() || status.state == HealthState::SorryActive {
                    info!(
                        service = %run.plan.name,
                        sorry_server = %address,
                        state = status.state.name(),
                        "sorry server {}",
                        if status.state == HealthState::SorryActive { "in" } else { "out" }
                    );
                }
                self.urgent = true;
                self.pending.insert((run.plan.key, address), status.clone());
                run.sorry = Some(status);
            }
        }
        if let Some(gained) = verdict.quorum_changed {
            self.publish_quorums();
            let run = &self.services[index];
            let why = reason
                .map(ToString::to_string)
                .unwrap_or_else(|| "configuration".into());
            if gained {
                info!(service = %run.plan.name, live_weight = verdict.live_weight, quorum = run.plan.quorum, "quorum gained");
            } else {
                warn!(service = %run.plan.name, live_weight = verdict.live_weight, quorum = run.plan.quorum, reason = %why, "quorum lost");
            }
            let script = if gained {
                run.plan.quorum_up.clone()
            } else {
                run.plan.quorum_down.clone()
            };
            if let (true, Some(script)) = (notify, script) {
                let env = vec![
                    (
                        "LVS_EVENT",
                        if gained { "quorum_up" } else { "quorum_down" }.to_owned(),
                    ),
                    ("LVS_SERVICE", run.plan.name.clone()),
                ];
                self.spawn_notifier(script, env);
            }
        }
    }

    fn log_transition(&self, check: &Check, followers: &[MemberRef], up: bool, outcome: &Outcome) {
        for member in followers {
            let run = &self.services[member.service];
            let address = run.plan.members[member.member].address;
            if up {
                info!(service = %run.plan.name, real_server = %address, checker = %check, result = %outcome, "real server up");
            } else {
                warn!(service = %run.plan.name, real_server = %address, checker = %check, reason = %outcome, "real server down");
            }
        }
    }

    fn notify_member(&mut self, member: MemberRef, up: bool, outcome: &Outcome) {
        let run = &self.services[member.service];
        let plan = &run.plan.members[member.member];
        let script = if up {
            &plan.notify_up
        } else {
            &plan.notify_down
        };
        if let Some(script) = script.clone() {
            let env = vec![
                ("LVS_EVENT", if up { "up" } else { "down" }.to_owned()),
                ("LVS_SERVICE", run.plan.name.clone()),
                ("LVS_REAL_SERVER", plan.address.to_string()),
                ("LVS_REASON", outcome.to_string()),
            ];
            self.spawn_notifier(script, env);
        }
    }

    fn spawn_notifier(&mut self, script: Script, env: Vec<(&'static str, String)>) {
        let permits = self.notifier_permits.clone();
        let timeout = self.notifier_timeout;
        self.notifiers.spawn(async move {
            let _permit = permits.acquire_owned().await;
            match script::run(&script, &env, timeout).await {
                ScriptEnd::Exited(0) => {}
                end => warn!(notifier = %script, ?end, "a notifier did not succeed"),
            }
        });
    }

    /// keepalived's omega: at shutdown, the down notifiers of the servers that are up, and
    /// the quorum-down notifier of services that have their quorum, for services that ask.
    async fn omega(&mut self) {
        let mut scripts = Vec::new();
        for run in &self.services {
            let members: Vec<(bool, Option<&Script>)> = run
                .plan
                .members
                .iter()
                .zip(&run.members)
                .map(|(plan, status)| (status.state == HealthState::Up, plan.notify_down.as_ref()))
                .collect();
            for script in omega_notifiers(
                run.plan.omega,
                &members,
                run.pool.has_quorum(),
                run.plan.quorum_down.as_ref(),
            ) {
                scripts.push((script.clone(), run.plan.name.clone()));
            }
        }
        for (script, service) in scripts {
            let env = vec![
                ("LVS_EVENT", "shutdown".to_owned()),
                ("LVS_SERVICE", service),
            ];
            self.spawn_notifier(script, env);
        }
        self.attempts.clear();
        self.waiting.clear();
        // Every notifier is bounded by its own timeout, so this wait is bounded too.
        while self.notifiers.join_next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests;
