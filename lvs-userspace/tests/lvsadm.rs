//! The `lvsadm` binary end to end against a fake daemon on a temporary socket (no root):
//! what it sends, what it prints, and its exit status.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    os::unix::net::UnixListener,
    path::PathBuf,
    process::{Command, Output, Stdio},
    thread::JoinHandle,
};

/// A temporary directory for one test's socket, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("lvsadm-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn socket(&self) -> PathBuf {
        self.0.join("lvs.sock")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A daemon that answers one request with `answer` and returns the request line.
fn fake_daemon(socket: &PathBuf, answer: &'static str) -> JoinHandle<String> {
    let listener = UnixListener::bind(socket).unwrap();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut line = String::new();
        BufReader::new(&stream).read_line(&mut line).unwrap();
        stream.write_all(answer.as_bytes()).unwrap();
        stream.write_all(b"\n").unwrap();
        line
    })
}

fn lvsadm(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lvsadm"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

const SNAPSHOT: &str = r#"{"snapshot":{"connection_table_size":4096,"timeouts":{"tcp":900,"tcp_fin":120,"udp":300},"services":[{"service":{"protocol":"tcp","address":"10.0.0.1","port":80},"config":{"scheduler":"wlc","sched_flags":{"fallback":false,"port":false},"persistence":null},"stats":{"conns":0,"inpkts":0,"outpkts":0,"inbytes":0,"outbytes":0},"rates":{"cps":0,"inpps":0,"outpps":0,"inbps":0,"outbps":0},"real_servers":[{"server":{"address":"10.0.0.11","forward":"route","weight":1,"u_threshold":0,"l_threshold":0},"port":80,"active_conns":2,"inactive_conns":3,"persistent_conns":0,"stats":{"conns":0,"inpkts":0,"outpkts":0,"inbytes":0,"outbytes":0},"rates":{"cps":0,"inpps":0,"outpps":0,"inbps":0,"outbps":0}}]}]}}"#;

#[test]
fn lists_what_the_daemon_sends_in_ipvsadm_layout() {
    let dir = TempDir::new("list");
    let socket = dir.socket();
    let daemon = fake_daemon(&socket, SNAPSHOT);
    let output = lvsadm(&["-Ln", "--socket", socket.to_str().unwrap()], "");
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        "IP Virtual Server version 1.2.1 (size=4096)\n\
         Prot LocalAddress:Port Scheduler Flags\n  \
         -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n\
         TCP  10.0.0.1:80 wlc\n  \
         -> 10.0.0.11:80                 Route   1      2          3         \n"
    );
    assert_eq!(
        daemon.join().unwrap(),
        "{\"command\":\"snapshot\",\"connections\":false}\n"
    );
}

#[test]
fn a_refused_change_prints_the_daemons_message_and_fails() {
    let dir = TempDir::new("refused");
    let socket = dir.socket();
    let daemon = fake_daemon(
        &socket,
        r#"{"error":{"message":"Service already exists","change":0}}"#,
    );
    let output = lvsadm(
        &[
            "-A",
            "-t",
            "10.0.0.1:80",
            "-s",
            "rr",
            "--socket",
            socket.to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(text(&output.stderr), "Service already exists\n");
    assert_eq!(
        daemon.join().unwrap(),
        "{\"command\":\"apply\",\"changes\":[{\"op\":\"add_service\",\"service\":{\"protocol\":\"tcp\",\"address\":\"10.0.0.1\",\"port\":80},\"config\":{\"scheduler\":\"rr\",\"sched_flags\":{\"fallback\":false,\"port\":false},\"persistence\":null}}]}\n"
    );
}

#[test]
fn reload_asks_the_daemon_and_prints_what_it_says() {
    let dir = TempDir::new("reload");
    let socket = dir.socket();
    let daemon = fake_daemon(
        &socket,
        r#"{"done":{"message":"reloaded /etc/lvs/lvs.toml: 1 services"}}"#,
    );
    let output = lvsadm(&["--reload", "--socket", socket.to_str().unwrap()], "");
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        "reloaded /etc/lvs/lvs.toml: 1 services\n"
    );
    assert_eq!(daemon.join().unwrap(), "{\"command\":\"reload\"}\n");

    // A file the daemon refuses: its reason on stderr, a failure exit.
    std::fs::remove_file(&socket).unwrap();
    let daemon = fake_daemon(
        &socket,
        r#"{"error":{"message":"/etc/lvs/lvs.toml:3: weight: invalid type"}}"#,
    );
    let output = lvsadm(&["--reload", "--socket", socket.to_str().unwrap()], "");
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        text(&output.stderr),
        "/etc/lvs/lvs.toml:3: weight: invalid type\n"
    );
    daemon.join().unwrap();
}

#[test]
fn a_restore_refused_by_the_daemon_names_the_line() {
    let dir = TempDir::new("restore");
    let socket = dir.socket();
    let daemon = fake_daemon(
        &socket,
        r#"{"error":{"message":"Service not defined","change":1}}"#,
    );
    let rules = "# rules\n-A -t 10.0.0.1:80 -s wlc\n\n-a -t 10.0.0.2:80 -r 10.0.0.11:80 -g -w 1\n";
    let output = lvsadm(&["-R", "--socket", socket.to_str().unwrap()], rules);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        text(&output.stderr),
        "line 4: Service not defined\nlvsadm: nothing was restored\n"
    );
    assert!(daemon.join().unwrap().contains("\"add_server\""));
}

#[test]
fn bad_command_lines_exit_2_without_asking_the_daemon() {
    let dir = TempDir::new("usage");
    let socket = dir.socket();
    let socket = socket.to_str().unwrap();
    let cases = [
        (
            vec!["-w", "5"],
            "Try `lvsadm -h' or 'lvsadm --help' for more information.\n",
        ),
        (
            vec!["-a", "-t", "10.0.0.1:80", "-r", "10.0.0.11", "-w", "65536"],
            "illegal weight specified\n",
        ),
        (
            vec!["-A", "-t", "10.0.0.1:80", "-s", "lblc"],
            "scheduler `lblc' is not supported by lvs (it has rr wrr lc wlc sed nq sh dh mh)\n",
        ),
        (
            vec!["--start-daemon", "primary"],
            "illegal start-daemon parameter specified\n",
        ),
        (
            vec!["--start-daemon", "master", "--syncid", "256"],
            "illegal syncid specified\n",
        ),
        (
            vec!["--start-daemon", "master", "--mcast-group", "10.0.0.1"],
            "invalid IPv4 mcast-group `10.0.0.1'\n",
        ),
        (
            vec!["--stop-daemon", "backup", "--mcast-ttl", "2"],
            "Illegal 'mcast-ttl' option with the 'stop-daemon' command\n",
        ),
        (
            vec!["-L", "--daemon", "--stats"],
            "options conflicts in the list command\n",
        ),
    ];
    for (mut args, expected) in cases {
        args.extend(["--socket", socket]);
        let output = lvsadm(&args, "");
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert_eq!(text(&output.stderr), expected, "{args:?}");
    }
    let output = lvsadm(&["-R", "--socket", socket], "-A -f 1\n");
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        text(&output.stderr),
        "line 1: firewall-mark services (-f) are not supported by lvs\nlvsadm: nothing was restored\n"
    );
}

#[test]
fn sync_daemons_are_started_stopped_and_listed_through_the_daemon() {
    let dir = TempDir::new("sync");
    let socket = dir.socket();
    let at = socket.to_str().unwrap();

    let daemon = fake_daemon(&socket, r#"{"ok":null}"#);
    let output = lvsadm(
        &[
            "--start-daemon",
            "master",
            "--mcast-interface",
            "eth1",
            "--syncid",
            "51",
            "--socket",
            at,
        ],
        "",
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        "",
        "ipvsadm prints nothing on success"
    );
    assert_eq!(
        daemon.join().unwrap(),
        "{\"command\":\"start_sync_daemon\",\"daemon\":{\"role\":\"master\",\"interface\":\"eth1\",\"sync_id\":51,\"group\":\"224.0.0.81\",\"port\":8848,\"ttl\":1,\"max_len\":1472}}\n"
    );

    // The daemon's refusal, such as a config without a key, is printed as it says it.
    std::fs::remove_file(&socket).unwrap();
    let daemon = fake_daemon(
        &socket,
        r#"{"error":{"message":"cannot start a sync daemon: /etc/lvs/lvs.toml has no [sync] key_file"}}"#,
    );
    let output = lvsadm(&["--start-daemon", "backup", "--socket", at], "");
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        text(&output.stderr),
        "cannot start a sync daemon: /etc/lvs/lvs.toml has no [sync] key_file\n"
    );
    daemon.join().unwrap();

    std::fs::remove_file(&socket).unwrap();
    let daemon = fake_daemon(&socket, r#"{"ok":null}"#);
    let output = lvsadm(&["--stop-daemon", "backup", "--socket", at], "");
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(
        daemon.join().unwrap(),
        "{\"command\":\"stop_sync_daemon\",\"role\":\"backup\"}\n"
    );

    std::fs::remove_file(&socket).unwrap();
    let daemon = fake_daemon(
        &socket,
        r#"{"daemons":{"sync_daemons":[{"role":"master","interface":"eth0","sync_id":1,"group":"224.0.0.81","port":8848,"ttl":1,"max_len":1472},{"role":"backup","interface":"eth0","sync_id":1,"group":"224.0.0.81","port":8848,"ttl":1,"max_len":1472}],"bgp":{"route_table":245,"hold_time":3,"vips":[{"address":"10.0.0.100","announced":true}]}}}"#,
    );
    let output = lvsadm(&["-L", "--daemon", "--socket", at], "");
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        "master sync daemon (mcast=eth0, syncid=1, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n\
         backup sync daemon (mcast=eth0, syncid=1, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n\
         bgp announces 10.0.0.100 (table=245, hold_time=3)\n"
    );
    assert_eq!(daemon.join().unwrap(), "{\"command\":\"sync_daemons\"}\n");
}

#[test]
fn a_missing_daemon_is_its_own_clear_message() {
    let dir = TempDir::new("missing");
    let socket = dir.socket();
    let output = lvsadm(&["-Ln", "--socket", socket.to_str().unwrap()], "");
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.starts_with(&format!(
            "lvsadm: cannot reach the lvs daemon at {}: ",
            socket.display()
        )) && stderr.ends_with("(is `lvs director` running?)\n"),
        "{stderr}"
    );
}
