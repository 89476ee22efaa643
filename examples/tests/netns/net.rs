//! The test hosts: one network namespace per node, each with its own
//! address on a private bridge that the harness (in the root namespace)
//! reaches too, and the faults the kernel injects into them: delay, loss
//! and reordering (`tc netem`, or where the kernel has no netem, as on
//! this project's CI machines, `nft` and an `htb` qdisc: see
//! [`Network::impair`]), and `nft` rules for partitions. Everything
//! made here is named after the harness's process id and removed when the
//! [`Network`] is dropped; what a killed run left behind is removed by the
//! next run.

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

/// Prefix of every namespace and interface name a run makes.
const PREFIX: &str = "mn";

/// Delay, loss and reordering on one host's interface.
#[derive(Debug, Clone, Copy)]
pub struct Impairment {
    pub delay_ms: u32,
    pub jitter_ms: u32,
    pub loss_pct: u32,
    pub reorder_pct: u32,
}

/// The private network of one run.
pub struct Network {
    /// Unique to the run: the harness's process id, in hex.
    run: String,
    /// The first three octets of the run's /24.
    subnet: [u8; 3],
    hosts: usize,
    /// Whether the kernel has the netem qdisc.
    pub netem: bool,
}

/// Runs `args`, answering its stdout or an error that names the command
/// and carries its stderr.
pub fn run(args: &[&str]) -> Result<String, String> {
    run_with_input(args, None)
}

fn run_with_input(args: &[&str], input: Option<&str>) -> Result<String, String> {
    let mut command = Command::new(args[0]);
    command
        .args(&args[1..])
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .map_err(|e| format!("`{}` did not start: {e}", args.join(" ")))?;
    if let Some(input) = input {
        use std::io::Write;
        let mut stdin = child.stdin.take().ok_or("no stdin")?;
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| format!("`{}`: writing its input: {e}", args.join(" ")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("`{}`: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Why this machine cannot run the harness, if it cannot: not root, or a
/// tool missing.
pub fn missing_capability() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("the harness creates network namespaces, which takes root".into());
    }
    for (tool, package) in [("ip", "iproute2"), ("tc", "iproute2"), ("nft", "nftables")] {
        let found = Command::new(tool)
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !found {
            return Some(format!(
                "`{tool}` is missing: install it with `apt-get install -y {package}`"
            ));
        }
    }
    None
}

impl Network {
    /// Makes `hosts` namespaces on a new bridge. Removes first what runs
    /// that no longer exist left behind.
    pub fn create(hosts: usize) -> Result<Network, String> {
        remove_leftovers();
        let pid = std::process::id();
        let used = run(&["ip", "-4", "-o", "addr", "show"])?;
        // A /24 in 10.0.0.0/8 from the process id, skipping any in use.
        let mut subnet = [10, 100 + ((pid >> 8) % 100) as u8, (pid & 0xff) as u8];
        while used.contains(&format!(" {}.{}.{}.", subnet[0], subnet[1], subnet[2])) {
            subnet[2] = subnet[2].wrapping_add(1);
        }
        let mut network = Network {
            run: format!("{pid:x}"),
            subnet,
            hosts,
            netem: false,
        };
        network.build()?;
        let ns = network.ns(1);
        let probe = [
            "ip", "netns", "exec", &ns, "tc", "qdisc", "add", "dev", "lo", "root",
        ];
        network.netem = run(&[&probe[..], &["netem", "delay", "1ms"]].concat()).is_ok();
        if network.netem {
            run(&[
                "ip", "netns", "exec", &ns, "tc", "qdisc", "del", "dev", "lo", "root",
            ])?;
        }
        Ok(network)
    }

    fn build(&self) -> Result<(), String> {
        let bridge = self.bridge();
        run(&["ip", "link", "add", &bridge, "type", "bridge"])?;
        let harness = format!("{}/24", self.harness_addr());
        run(&["ip", "addr", "add", &harness, "dev", &bridge])?;
        run(&["ip", "link", "set", &bridge, "up"])?;
        for i in 1..=self.hosts {
            let ns = self.ns(i);
            let (outer, inner) = (self.outer_if(i), self.inner_if(i));
            run(&["ip", "netns", "add", &ns])?;
            run(&[
                "ip", "link", "add", &outer, "type", "veth", "peer", "name", &inner, "netns", &ns,
            ])?;
            run(&["ip", "link", "set", &outer, "master", &bridge, "up"])?;
            let addr = format!("{}/24", self.addr(i));
            run(&["ip", "-n", &ns, "addr", "add", &addr, "dev", &inner])?;
            run(&["ip", "-n", &ns, "link", "set", &inner, "up"])?;
            run(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(())
    }

    /// The namespace of host `i` (from 1).
    pub fn ns(&self, i: usize) -> String {
        format!("{PREFIX}{}n{i}", self.run)
    }

    /// The address of host `i` (from 1).
    pub fn addr(&self, i: usize) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, i as u8)
    }

    /// The harness's own address on the bridge.
    pub fn harness_addr(&self) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, 254)
    }

    fn bridge(&self) -> String {
        format!("{PREFIX}{}br", self.run)
    }

    fn outer_if(&self, i: usize) -> String {
        format!("{PREFIX}{}h{i}", self.run)
    }

    fn inner_if(&self, i: usize) -> String {
        format!("{PREFIX}{}p{i}", self.run)
    }

    /// Delays and reorders what host `i` sends, and loses packets. With
    /// netem, as `impairment` says, on what it sends. Without it, as near
    /// as the kernel allows: nft drops a `loss_pct` share of what arrives
    /// (so that, as on a wire, the sender is not told), and sends a
    /// `reorder_pct` share of what leaves through a slow htb class, where
    /// those packets wait about `delay_ms` per kilobyte, behind each
    /// other, while the rest overtake them: delay, jitter and reordering.
    pub fn impair(&self, i: usize, impairment: Impairment) -> Result<(), String> {
        let (ns, dev) = (self.ns(i), self.inner_if(i));
        let tc = ["ip", "netns", "exec", &ns, "tc"];
        let Impairment {
            delay_ms,
            jitter_ms,
            loss_pct,
            reorder_pct,
        } = impairment;
        if self.netem {
            let (delay, jitter) = (format!("{delay_ms}ms"), format!("{jitter_ms}ms"));
            let (loss, reorder) = (format!("{loss_pct}%"), format!("{reorder_pct}%"));
            return run(&[
                &tc[..],
                &[
                    "qdisc", "replace", "dev", &dev, "root", "netem", "delay", &delay, &jitter,
                ],
                &["loss", &loss, "reorder", &reorder, "50%"],
            ]
            .concat())
            .map(drop);
        }
        // A kilobyte (8 kbit) takes `delay_ms` at this rate.
        let slow = format!("{}kbit", 8_000 / delay_ms.max(1));
        run(&[
            &tc[..],
            &[
                "qdisc", "replace", "dev", &dev, "root", "handle", "1:", "htb", "default", "10",
            ],
        ]
        .concat())?;
        run(&[
            &tc[..],
            &[
                "class", "add", "dev", &dev, "parent", "1:", "classid", "1:10", "htb", "rate",
                "1gbit",
            ],
        ]
        .concat())?;
        run(&[
            &tc[..],
            &[
                "class", "add", "dev", &dev, "parent", "1:", "classid", "1:20", "htb", "rate",
                &slow, "ceil", &slow,
            ],
        ]
        .concat())?;
        self.rules(
            i,
            &format!(
                "table inet minotaur_fault {{
                    chain input {{
                        type filter hook input priority 0; policy accept;
                        numgen random mod 100 < {loss_pct} drop
                    }}
                    chain output {{
                        type filter hook output priority 0; policy accept;
                        numgen random mod 100 < {reorder_pct} meta priority set 1:20
                    }}
                }}\n"
            ),
        )
    }

    /// Host `i` drops what comes from the hosts `from` (`inbound`), and,
    /// unless the partition is one-way, what it sends to them.
    pub fn cut(&self, i: usize, from: &[usize], one_way: bool) -> Result<(), String> {
        let peers: Vec<String> = from.iter().map(|&j| self.addr(j).to_string()).collect();
        let peers = peers.join(", ");
        let output = if one_way {
            String::new()
        } else {
            format!("ip daddr {{ {peers} }} drop")
        };
        self.rules(
            i,
            &format!(
                "table inet minotaur_fault {{
                    chain input {{
                        type filter hook input priority 0; policy accept;
                        ip saddr {{ {peers} }} drop
                    }}
                    chain output {{
                        type filter hook output priority 0; policy accept;
                        {output}
                    }}
                }}\n"
            ),
        )
    }

    /// Host `i` drops everything, the harness's traffic included, as a
    /// host that lost power: its peers' connections stay open, unanswered.
    pub fn blackhole(&self, i: usize) -> Result<(), String> {
        self.rules(
            i,
            "table inet minotaur_fault {
                chain input {
                    type filter hook input priority 0; policy drop;
                }
                chain output {
                    type filter hook output priority 0; policy drop;
                }
            }\n",
        )
    }

    fn rules(&self, i: usize, ruleset: &str) -> Result<(), String> {
        let ns = self.ns(i);
        run_with_input(
            &["ip", "netns", "exec", &ns, "nft", "-f", "-"],
            Some(ruleset),
        )
        .map(drop)
    }

    /// Removes every fault from host `i`.
    pub fn heal(&self, i: usize) -> Result<(), String> {
        let (ns, dev) = (self.ns(i), self.inner_if(i));
        run(&["ip", "netns", "exec", &ns, "nft", "flush", "ruleset"])?;
        // No netem there is no error worth reporting.
        let _ = run(&[
            "ip", "netns", "exec", &ns, "tc", "qdisc", "del", "dev", &dev, "root",
        ]);
        Ok(())
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        remove_run(&self.run);
    }
}

/// Removes run `run`'s namespaces (which takes their veth ends, and with
/// them the peers on the bridge) and its bridge.
fn remove_run(run_id: &str) {
    if let Ok(list) = run(&["ip", "netns", "list"]) {
        let ours = format!("{PREFIX}{run_id}n");
        for ns in list.lines().filter_map(|l| l.split_whitespace().next()) {
            if ns.starts_with(&ours) {
                // A run killed before its own cleanup left its nodes running.
                if let Ok(pids) = run(&["ip", "netns", "pids", ns]) {
                    for pid in pids.split_whitespace() {
                        let _ = run(&["kill", "-9", pid]);
                    }
                }
                let _ = run(&["ip", "netns", "del", ns]);
            }
        }
    }
    let _ = run(&["ip", "link", "del", &format!("{PREFIX}{run_id}br")]);
}

/// Removes what runs whose process is gone left behind.
fn remove_leftovers() {
    let Ok(list) = run(&["ip", "netns", "list"]) else {
        return;
    };
    let mut runs: Vec<String> = list
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|ns| ns.strip_prefix(PREFIX))
        .filter_map(|rest| rest.rsplit_once('n').map(|(run, _)| run.to_string()))
        .collect();
    runs.sort();
    runs.dedup();
    for run_id in runs {
        let alive = u32::from_str_radix(&run_id, 16)
            .is_ok_and(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists());
        if !alive {
            remove_run(&run_id);
        }
    }
}
