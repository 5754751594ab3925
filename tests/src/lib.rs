#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Harness for AgentCRM's system tests: a real `nats-server` on a free port with
//! its own store directory, and the `agentcrm` binary as a real process. Both are
//! killed when dropped.
//!
//! Tests that need NATS call [`NatsServer::start`]. Where no `nats-server` is
//! installed it returns `None` and the test skips with a message, except under
//! CI (`CI` set), where a missing server fails the test.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Where Debian and others install `nats-server`, besides `PATH`.
const NATS_SERVER_CANDIDATES: &[&str] = &[
    "/usr/sbin/nats-server",
    "/usr/local/sbin/nats-server",
    "/usr/bin/nats-server",
    "/usr/local/bin/nats-server",
];

/// The `nats-server` binary, if one is installed.
pub fn nats_server_binary() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("NATS_SERVER_BIN") {
        return Some(PathBuf::from(path));
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths).map(|dir| dir.join("nats-server")).collect::<Vec<_>>()
        })
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain(NATS_SERVER_CANDIDATES.iter().map(PathBuf::from))
        .find(|path| path.is_file())
}

/// A free TCP port on loopback (there is a small race until the server binds it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .unwrap_or(0)
}

/// Numbers the servers a test process starts, for their names.
static NEXT_SERVER: AtomicU64 = AtomicU64::new(0);

/// A `nats-server -js` of the test's own.
pub struct NatsServer {
    binary: PathBuf,
    port: u16,
    store: tempfile::TempDir,
    config: Option<PathBuf>,
    child: Option<Child>,
    /// Whether it listened once: a restart must keep the port.
    started: bool,
    /// Its `server_name`, unique to it: what listens on the port is checked
    /// to be this server, not another test's that got the same free port.
    name: String,
}

impl NatsServer {
    /// Starts a server, or returns `None` (after saying why) when none is installed
    /// outside CI.
    pub fn start() -> Option<Self> {
        Self::start_with_config(None)
    }

    /// Starts a server with a configuration file (accounts, permissions).
    pub fn start_with_config(config: Option<&Path>) -> Option<Self> {
        let Some(binary) = nats_server_binary() else {
            if std::env::var_os("CI").is_some() {
                panic!(
                    "nats-server is required under CI but was not found (apt-get install nats-server)"
                );
            }
            eprintln!(
                "SKIPPED: nats-server is not installed; install Debian's nats-server to run this test"
            );
            return None;
        };
        let store = tempfile::tempdir().ok()?;
        let mut server = Self {
            binary,
            port: free_port(),
            store,
            config: config.map(Path::to_path_buf),
            child: None,
            started: false,
            name: format!(
                "agentcrm-test-{}-{}",
                std::process::id(),
                NEXT_SERVER.fetch_add(1, Ordering::Relaxed)
            ),
        };
        server.spawn();
        Some(server)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn store_dir(&self) -> &Path {
        self.store.path()
    }

    /// Starts the server on its port and waits until it listens. A fresh
    /// server whose port was taken meanwhile (another test may have got the
    /// same free port) moves to a new one; a restart keeps its port.
    fn spawn(&mut self) {
        let fresh = !self.started;
        for _ in 0..5 {
            let mut command = Command::new(&self.binary);
            command.args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string(), "--store_dir"]);
            command.arg(self.store.path());
            command.args(["--server_name", &self.name]);
            if let Some(config) = &self.config {
                command.arg("-c").arg(config);
            }
            let mut child = command
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn nats-server");
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if self.answers_as_itself() {
                    self.child = Some(child);
                    self.started = true;
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
            if fresh {
                self.port = free_port();
            }
        }
        panic!("nats-server did not start listening on 127.0.0.1:{}", self.port);
    }

    /// Whether the server on the port is this one: a NATS server greets a
    /// client with an `INFO` line that names it.
    fn answers_as_itself(&self) -> bool {
        let Ok(stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut greeting = String::new();
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(stream), &mut greeting);
        greeting.contains(&format!("\"server_name\":\"{}\"", self.name))
    }

    /// SIGKILLs the server (no clean shutdown).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port with the same store directory.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits until something listens on the loopback port.
pub fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// The `agentcrm` binary built by this workspace (`cargo test --workspace` builds
/// it before running the tests).
pub fn agentcrm_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/agentcrm
    let profile_dir = exe.parent().and_then(Path::parent).expect("target directory");
    let binary = profile_dir.join("agentcrm");
    assert!(
        binary.is_file(),
        "{} is missing: run `cargo build -p agentcrm` first",
        binary.display()
    );
    binary
}

/// A running `agentcrm` process, SIGKILLed on drop.
pub struct Process {
    child: Child,
}

impl Process {
    /// Spawns `agentcrm` with `args`, stdout and stderr to the test's output.
    pub fn spawn(args: &[&str]) -> Self {
        let child = Command::new(agentcrm_binary())
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn agentcrm");
        Self { child }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no shutdown hook runs.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGINT, as Ctrl-C would, then waits for the exit status.
    pub fn interrupt(&mut self) -> Option<std::process::ExitStatus> {
        let pid = libc::pid_t::try_from(self.child.id()).ok()?;
        #[allow(unsafe_code)]
        // SAFETY: sending a signal to our own child process; no memory is touched.
        unsafe {
            libc::kill(pid, libc::SIGINT);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Runs `agentcrm` to completion and returns (status, stdout, stderr).
pub fn run_agentcrm(args: &[&str]) -> (std::process::ExitStatus, String, String) {
    let output = Command::new(agentcrm_binary())
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run agentcrm");
    (
        output.status,
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
