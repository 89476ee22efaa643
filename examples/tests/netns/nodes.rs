//! The `minotaur-node` processes, one per namespace, started as deployed:
//! each on its own address with the others as seeds, the cookie from the
//! environment. Their output goes to one log file per node, kept across
//! restarts, which a failing run leaves in place.

use super::net::Network;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The cluster port of every node (each has an address of its own).
pub const CLUSTER_PORT: u16 = 7100;
/// The HTTP port of every node.
pub const HTTP_PORT: u16 = 8100;
/// How long a node may take to print its ready line.
const READY: Duration = Duration::from_secs(20);

/// One node: its process while it runs.
pub struct NodeProcess {
    /// From 1: the host it runs on.
    pub index: usize,
    pub name: String,
    /// Its HTTP endpoint's base URL.
    pub url: String,
    child: Option<Child>,
    log: PathBuf,
}

impl NodeProcess {
    /// A node not started yet.
    pub fn new(index: usize, net: &Network, logs: &Path) -> Self {
        NodeProcess {
            index,
            name: format!("n{index}"),
            url: format!("http://{}:{HTTP_PORT}", net.addr(index)),
            child: None,
            log: logs.join(format!("n{index}.log")),
        }
    }

    /// Whether its process runs (stopped counts as running).
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// Starts it in its namespace, with every other host as a seed, and
    /// waits for its ready line.
    pub async fn start(&mut self, net: &Network, hosts: usize, cookie: &str) -> Result<(), String> {
        let listen = format!("{}:{CLUSTER_PORT}", net.addr(self.index));
        let http = format!("{}:{HTTP_PORT}", net.addr(self.index));
        let seeds: Vec<String> = (1..=hosts)
            .filter(|&j| j != self.index)
            .map(|j| format!("{}:{CLUSTER_PORT}", net.addr(j)))
            .collect();
        let ns = net.ns(self.index);
        // `MINOTAUR_NODE_BIN` runs another build (a release one, say).
        let bin = std::env::var("MINOTAUR_NODE_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_minotaur-node").to_string());
        let mut command = Command::new("ip");
        // `ip netns exec` enters the namespace and execs the node: the
        // child's pid is the node's, so signals reach it directly.
        command
            .args(["netns", "exec", &ns, &bin])
            .args(["--name", &self.name, "--listen", &listen, "--http", &http])
            .args(["--seed", &seeds.join(","), "--log-level", "info"])
            .env("MINOTAUR_COOKIE", cookie)
            .env("MINOTAUR_OPERATOR_TOKEN", crate::load::OPERATOR_TOKEN)
            .env("MINOTAUR_PLAYER_KEY", crate::load::PLAYER_KEY)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // SAFETY: prctl(PR_SET_PDEATHSIG) only sets a flag of the child,
        // and is async-signal-safe; it survives the exec of `ip` and of the
        // node. A harness killed before its cleanup takes its nodes along.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command
            .spawn()
            .map_err(|e| format!("{}: could not start: {e}", self.name))?;
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("{}: {e}", self.log.display()))?;
        let _ = writeln!(log, "---- {} starting", self.name);
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        copy_lines(stderr, log.try_clone().map_err(|e| e.to_string())?, None);
        copy_lines(stdout, log, Some(ready_tx));
        self.child = Some(child);
        match tokio::time::timeout(READY, ready_rx).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(format!(
                "{} printed no ready line within {READY:?} (log: {})",
                self.name,
                self.log.display()
            )),
        }
    }

    /// Sends `signal` to its process.
    pub fn signal(&self, signal: libc::c_int) -> Result<(), String> {
        let pid = self
            .child
            .as_ref()
            .and_then(Child::id)
            .ok_or_else(|| format!("{} does not run", self.name))?;
        let pid = libc::pid_t::try_from(pid).map_err(|e| e.to_string())?;
        // SAFETY: kill(2) only sends a signal; `pid` is our own child, not
        // waited for yet, so the id cannot have been reused.
        if unsafe { libc::kill(pid, signal) } != 0 {
            return Err(format!(
                "{}: kill: {}",
                self.name,
                std::io::Error::last_os_error()
            ));
        }
        Ok(())
    }

    /// Kills it (SIGKILL) and reaps it.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Sends SIGTERM and waits up to `wait` for it to leave and exit by
    /// itself; answers whether it exited cleanly.
    pub async fn terminate(&mut self, wait: Duration) -> Result<(), String> {
        self.signal(libc::SIGTERM)?;
        let mut child = self.child.take().ok_or("not running")?;
        match tokio::time::timeout(wait, child.wait()).await {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => Err(format!("{} exited with {status} on SIGTERM", self.name)),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => {
                let _ = child.kill().await;
                Err(format!(
                    "{} did not exit within {wait:?} of SIGTERM",
                    self.name
                ))
            }
        }
    }
}

/// Copies `from`'s lines into `log`; tells `ready` at the ready line.
fn copy_lines(
    from: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    mut log: std::fs::File,
    mut ready: Option<tokio::sync::oneshot::Sender<()>>,
) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(from).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = writeln!(log, "{line}");
            if line.starts_with("minotaur-node ready:") {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(());
                }
            }
        }
    });
}
