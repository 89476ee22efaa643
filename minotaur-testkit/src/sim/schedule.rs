//! The fault schedule of one seed: which nodes start when, the load, and
//! the faults injected, all drawn from the seed before the run starts.

use rand::rngs::SmallRng;
use rand::Rng;
use std::time::Duration;

/// One scheduled step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Start a node.
    Start {
        /// Its name.
        name: String,
        /// The member it joins through (none for the first).
        seed: Option<String>,
    },
    /// Crash a node: links cut, sessions gone, nothing handed over.
    Crash(String),
    /// Start a crashed node again under the same name (a new incarnation).
    Restart(String),
    /// Leave gracefully: hand every session over, then stop.
    Leave(String),
    /// Close the link between two nodes (both sides see it close).
    CutLink(String, String),
    /// Both nodes dial each other at once (ractor_cluster then closes one of
    /// the two links).
    DialBoth(String, String),
    /// Hold everything sent between two nodes, in both directions, for a
    /// while; the link stays open.
    Stall(String, String, Duration),
    /// Stop a node from running anything for a while (its CPU is stalled).
    Freeze(String, Duration),
    /// Drop everything crossing between the groups, until healed.
    Partition(Vec<String>, Vec<String>),
    /// Drop everything sent from the first node to the second, until healed.
    CutOneWay(String, String),
    /// Remove every partition and one-way cut.
    Heal,
}

impl Step {
    /// Whether the guarantees cover this fault, with `staying` nodes
    /// running and not leaving: every crash, leave and link fault, but a
    /// split (a partition, a one-way cut, a stalled link, a frozen node)
    /// only with three members or more. With two, majority fencing is off
    /// by default and both sides serve on.
    pub fn covered(&self, staying: usize) -> bool {
        match self {
            Step::Partition(..) | Step::CutOneWay(..) | Step::Stall(..) | Step::Freeze(..) => {
                staying >= 3
            }
            _ => true,
        }
    }
}

/// One step of the plan.
#[derive(Debug, Clone)]
pub struct Planned {
    /// When it happens, if every fault before it came on time.
    pub at: Duration,
    /// What happens.
    pub step: Step,
    /// Whether it begins a fault (rather than starting the first nodes or
    /// ending a fault: a heal, a crashed node's restart).
    pub begins_fault: bool,
}

/// How faults follow each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// A fault begins only once the cluster settled after the one before
    /// (members linked and voting again, games re-replicated): the single
    /// faults the guarantees cover. Everything planned after it waits as
    /// long.
    Settled,
    /// Faults come at their planned times, settled or not: double faults
    /// the guarantees do not cover, to see how the cluster copes.
    Fixed,
}

/// The plan of one run.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Steps in the order they happen.
    pub steps: Vec<Planned>,
    /// Games created.
    pub games: usize,
    /// Writes sent.
    pub writes: usize,
    /// When the last fault is healed, if every fault came on time.
    pub calm_at: Duration,
}

/// The longest a partition or one-way cut lasts: long enough, at times, for
/// the majority to fence the members cut off and then give their seats up
/// (`failure_timeout * 3` after the fence) before they come back.
const LONGEST_SPLIT_MS: u64 = 4000;

/// Draws a schedule of 1 to `most_faults` faults for a run with
/// `failure_timeout`.
pub fn draw(rng: &mut SmallRng, failure_timeout: Duration, most_faults: usize) -> Schedule {
    let ms = Duration::from_millis;
    let initial = rng.random_range(3..=5usize);
    let mut steps = vec![(
        ms(0),
        Step::Start {
            name: "n1".into(),
            seed: None,
        },
        false,
    )];
    // The others join through n1, several at once.
    for i in 2..=initial {
        steps.push((
            ms(rng.random_range(1..=150)),
            Step::Start {
                name: format!("n{i}"),
                seed: Some("n1".into()),
            },
            false,
        ));
    }
    let mut up: Vec<String> = (1..=initial).map(|i| format!("n{i}")).collect();
    let mut down: Vec<String> = Vec::new();
    let mut next_name = initial + 1;
    let mut t = ms(1500);
    let faults = rng.random_range(1..=most_faults.max(1));
    for _ in 0..faults {
        let pick =
            |rng: &mut SmallRng, from: &[String]| from[rng.random_range(0..from.len())].clone();
        let two = |rng: &mut SmallRng, from: &[String]| {
            let a = rng.random_range(0..from.len());
            let mut b = rng.random_range(0..from.len() - 1);
            if b >= a {
                b += 1;
            }
            (from[a].clone(), from[b].clone())
        };
        let kind = rng.random_range(0..12);
        let first = steps.len();
        let mut healed = t;
        match kind {
            0 | 1 if up.len() > 2 => {
                let victim = pick(rng, &up);
                up.retain(|n| n != &victim);
                steps.push((t, Step::Crash(victim.clone()), false));
                if rng.random_bool(0.5) {
                    let back = t + ms(rng.random_range(100..=1200));
                    steps.push((back, Step::Restart(victim.clone()), false));
                    up.push(victim);
                } else {
                    down.push(victim);
                }
            }
            2 if up.len() > 2 => {
                let leaver = pick(rng, &up);
                up.retain(|n| n != &leaver);
                steps.push((t, Step::Leave(leaver), false));
            }
            3 if next_name <= 9 => {
                // Joins at once, through one seed.
                let seed = pick(rng, &up);
                for _ in 0..rng.random_range(1..=2) {
                    if next_name > 9 {
                        break;
                    }
                    let name = format!("n{next_name}");
                    next_name += 1;
                    steps.push((
                        t + ms(rng.random_range(0..=20)),
                        Step::Start {
                            name: name.clone(),
                            seed: Some(seed.clone()),
                        },
                        false,
                    ));
                    up.push(name);
                }
            }
            4 if !down.is_empty() => {
                let back = down.remove(0);
                steps.push((t, Step::Restart(back.clone()), false));
                up.push(back);
            }
            5 => {
                let (a, b) = two(rng, &up);
                steps.push((t, Step::CutLink(a, b), false));
            }
            6 => {
                let (a, b) = two(rng, &up);
                steps.push((t, Step::DialBoth(a, b), false));
            }
            7 => {
                let (a, b) = two(rng, &up);
                let d = ms(rng.random_range(10..=(failure_timeout.as_millis() as u64 * 3)));
                steps.push((t, Step::Stall(a, b, d), false));
            }
            8 => {
                let n = pick(rng, &up);
                let d = ms(rng.random_range(10..=(failure_timeout.as_millis() as u64 * 3)));
                steps.push((t, Step::Freeze(n, d), false));
            }
            9 | 10 => {
                let mut shuffled = up.clone();
                for i in (1..shuffled.len()).rev() {
                    shuffled.swap(i, rng.random_range(0..=i));
                }
                let cut = rng.random_range(1..shuffled.len());
                let right = shuffled.split_off(cut);
                steps.push((t, Step::Partition(shuffled, right), false));
                let heal = t + ms(rng.random_range(300..=LONGEST_SPLIT_MS));
                steps.push((heal, Step::Heal, false));
                healed = heal;
            }
            _ => {
                let (a, b) = two(rng, &up);
                steps.push((t, Step::CutOneWay(a, b), false));
                let heal = t + ms(rng.random_range(300..=LONGEST_SPLIT_MS));
                steps.push((heal, Step::Heal, false));
                healed = heal;
            }
        }
        // (A join of two lists its first at the fault's time or later.)
        if let Some(begin) = steps[first..].iter().map(|(at, ..)| *at).min() {
            if let Some(s) = steps[first..].iter_mut().find(|(at, ..)| *at == begin) {
                s.2 = true;
            }
        }
        // The next fault comes after this one healed.
        t = (t + ms(rng.random_range(1500..=2200))).max(healed + ms(200));
    }
    steps.push((t, Step::Heal, false));
    steps.sort_by_key(|(at, ..)| *at);
    let steps = steps
        .into_iter()
        .map(|(at, step, begins_fault)| Planned {
            at,
            step,
            begins_fault,
        })
        .collect();
    Schedule {
        steps,
        games: rng.random_range(4..=16),
        writes: rng.random_range(20..=80),
        calm_at: t,
    }
}
