//! A headless Chromium driven over the DevTools protocol, for tests that look at the status
//! page as a person would: what the page shows, after it has refreshed itself, without a
//! reload.
//!
//! The protocol runs over a pair of pipes (`--remote-debugging-pipe`: the browser reads
//! commands on its fd 3 and writes answers and events on its fd 4, each message a JSON object
//! ended by a NUL byte), so no port is opened and no WebSocket client is needed. The browser
//! runs in a network namespace (`ip netns exec`), so it reaches what listens there, such as
//! the director's status listener on loopback.

use std::{
    fs::File,
    io::{BufRead as _, BufReader, Write as _},
    os::{
        fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
        unix::process::CommandExt as _,
    },
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc::{Receiver, RecvTimeoutError, channel},
    thread,
    time::{Duration, Instant},
};

use base64::Engine as _;
use serde_json::{Value, json};

/// How long one protocol command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

/// The browser's command line name on Debian.
pub const CHROMIUM: &str = "chromium";

pub struct Browser {
    child: Child,
    commands: File,
    answers: Receiver<Value>,
    next_id: u64,
    /// The page's session (a target attached in flat mode).
    session: Option<String>,
}

/// Two pipes: (our write end, the browser's read end) and (the browser's write end, our read
/// end).
fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe2: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: pipe2 succeeded, so both are open descriptors that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

impl Browser {
    /// Starts Chromium headless in `namespace`, with a fresh profile under `profile`. Running
    /// as root needs `--no-sandbox`; nothing else is loaded than what the test opens.
    pub fn launch(namespace: &str, profile: &Path) -> Result<Self, String> {
        let (command_read, command_write) = pipe()?;
        let (answer_read, answer_write) = pipe()?;
        let (child_in, child_out) = (command_read.as_raw_fd(), answer_write.as_raw_fd());
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", namespace, CHROMIUM])
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-sync",
                "--hide-scrollbars",
                "--remote-debugging-pipe",
                "--window-size=1100,900",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: only async-signal-safe calls (fcntl, dup2) between fork and exec. The ends
        // are first moved above 10 so that placing them at 3 and 4 cannot overwrite either.
        unsafe {
            command.pre_exec(move || {
                let high_in = libc::fcntl(child_in, libc::F_DUPFD_CLOEXEC, 10);
                let high_out = libc::fcntl(child_out, libc::F_DUPFD_CLOEXEC, 10);
                if high_in < 0
                    || high_out < 0
                    || libc::dup2(high_in, 3) < 0
                    || libc::dup2(high_out, 4) < 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .map_err(|e| format!("starting {CHROMIUM} (scripts/bootstrap.sh installs it): {e}"))?;
        drop((command_read, answer_write));

        // A thread reads the answers, so that every wait has a timeout.
        let (send, answers) = channel();
        let mut reader = BufReader::new(File::from(answer_read));
        thread::spawn(move || {
            let mut message = Vec::new();
            loop {
                message.clear();
                match reader.read_until(0, &mut message) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                message.pop();
                if let Ok(value) = serde_json::from_slice::<Value>(&message) {
                    if send.send(value).is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Self {
            child,
            commands: File::from(command_write),
            answers,
            next_id: 0,
            session: None,
        })
    }

    /// Sends one command (to the page's session once there is one) and waits for its answer.
    fn call(&mut self, method: &str, params: Value, to_page: bool) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if to_page {
            let session = self.session.clone().ok_or("no page is open")?;
            message["sessionId"] = session.into();
        }
        let mut bytes = message.to_string().into_bytes();
        bytes.push(0);
        self.commands
            .write_all(&bytes)
            .map_err(|e| format!("{method}: writing to the browser: {e}"))?;
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let answer = match self.answers.recv_timeout(left) {
                Ok(answer) => answer,
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!("{method}: no answer within {COMMAND_TIMEOUT:?}"));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(format!("{method}: the browser exited"));
                }
            };
            if answer["id"] != id {
                continue; // an event, or a late answer
            }
            if let Some(error) = answer.get("error") {
                return Err(format!("{method}: {error}"));
            }
            return Ok(answer["result"].clone());
        }
    }

    /// Opens `url` in a new page and waits until it has loaded.
    pub fn open(&mut self, url: &str) -> Result<(), String> {
        let target = self.call("Target.createTarget", json!({"url": "about:blank"}), false)?;
        let attached = self.call(
            "Target.attachToTarget",
            json!({"targetId": target["targetId"], "flatten": true}),
            false,
        )?;
        self.session = attached["sessionId"].as_str().map(str::to_owned);
        self.call("Page.enable", json!({}), true)?;
        self.call("Page.navigate", json!({"url": url}), true)?;
        self.wait_for(
            "document.readyState === 'complete'",
            Duration::from_secs(10),
        )
        .map(|_| ())
    }

    /// Shows the page as a phone of `width` CSS pixels would, or a desktop window.
    pub fn viewport(&mut self, width: u32, height: u32, mobile: bool) -> Result<(), String> {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
            true,
        )
        .map(|_| ())
    }

    /// The value of a JavaScript expression in the page (promises are awaited).
    pub fn evaluate(&mut self, expression: &str) -> Result<Value, String> {
        let result = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            true,
        )?;
        if let Some(exception) = result.get("exceptionDetails") {
            return Err(format!("{expression}: {exception}"));
        }
        Ok(result["result"]["value"].clone())
    }

    /// Evaluates `expression` every 200 ms until it is truthy (and returns it), or `timeout`.
    pub fn wait_for(&mut self, expression: &str, timeout: Duration) -> Result<Value, String> {
        let started = Instant::now();
        let mut last = Value::Null;
        while started.elapsed() < timeout {
            last = self.evaluate(expression)?;
            let truthy = match &last {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            if truthy {
                return Ok(last);
            }
            thread::sleep(Duration::from_millis(200));
        }
        Err(format!(
            "not true within {timeout:?}: {expression} (last: {last})"
        ))
    }

    /// A PNG of what the page shows, the whole page when `full_page`.
    pub fn screenshot(&mut self, full_page: bool) -> Result<Vec<u8>, String> {
        let shot = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": full_page}),
            true,
        )?;
        let data = shot["data"].as_str().ok_or("no screenshot data")?;
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| format!("screenshot: {e}"))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A polite close first; the kill makes sure, and the wait reaps it.
        let _ = self
            .commands
            .write_all(b"{\"id\":0,\"method\":\"Browser.close\"}\0");
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
