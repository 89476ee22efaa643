//! In-process test clusters.
