//! Axial hex coordinates: the geometry the rules are written in.
//!
//! A hex is `(q, r)`; the implicit third cube coordinate is `s = -q - r`.
//! See <https://www.redblobgames.com/grids/hexagons/> for the conventions used.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::ops::Add;

/// A hex cell (or a displacement between cells) in axial coordinates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Hex {
    /// Column axis.
    pub q: i32,
    /// Row axis.
    pub r: i32,
}

impl Hex {
    /// The centre of the world.
    pub const ORIGIN: Hex = Hex { q: 0, r: 0 };

    /// The six unit directions, clockwise from "east".
    pub const DIRECTIONS: [Hex; 6] = [
        Hex { q: 1, r: 0 },
        Hex { q: 1, r: -1 },
        Hex { q: 0, r: -1 },
        Hex { q: -1, r: 0 },
        Hex { q: -1, r: 1 },
        Hex { q: 0, r: 1 },
    ];

    /// Builds a hex from its axial coordinates.
    pub const fn new(q: i32, r: i32) -> Self {
        Hex { q, r }
    }

    /// Number of steps from the origin (the length of this vector).
    pub fn length(self) -> u64 {
        steps(self.q as i64, self.r as i64)
    }

    /// Number of steps between two hexes.
    pub fn distance(self, other: Hex) -> u64 {
        steps(
            self.q as i64 - other.q as i64,
            self.r as i64 - other.r as i64,
        )
    }

    /// The hexes exactly `radius` steps from `self`, in ring order.
    pub fn ring(self, radius: u32) -> Vec<Hex> {
        if radius == 0 {
            return vec![self];
        }
        let mut out = Vec::with_capacity(6 * radius as usize);
        let r = radius as i32;
        let mut cur = self + Hex::new(Hex::DIRECTIONS[4].q * r, Hex::DIRECTIONS[4].r * r);
        for dir in Hex::DIRECTIONS {
            for _ in 0..radius {
                out.push(cur);
                cur = cur + dir;
            }
        }
        out
    }
}

// Computed in i64 so that hostile coordinates near i32's limits cannot wrap.
fn steps(dq: i64, dr: i64) -> u64 {
    (dq.unsigned_abs() + dr.unsigned_abs() + (dq + dr).unsigned_abs()) / 2
}

impl Add for Hex {
    type Output = Hex;
    fn add(self, rhs: Hex) -> Hex {
        Hex::new(self.q.saturating_add(rhs.q), self.r.saturating_add(rhs.r))
    }
}

impl fmt::Display for Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({}, {})", self.q, self.r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(Hex::ORIGIN.distance(Hex::new(2, -1)), 2);
        assert_eq!(Hex::new(1, 1).distance(Hex::new(-1, -1)), 4);
        for d in Hex::DIRECTIONS {
            assert_eq!(d.length(), 1);
        }
        assert_eq!(Hex::new(i32::MIN, i32::MIN).length(), 1 << 32);
    }

    #[test]
    fn rings_have_six_r_cells_at_distance_r() {
        for radius in 1..5 {
            let ring = Hex::ORIGIN.ring(radius);
            assert_eq!(ring.len(), 6 * radius as usize);
            assert!(ring.iter().all(|h| h.length() == radius as u64));
        }
    }
}
