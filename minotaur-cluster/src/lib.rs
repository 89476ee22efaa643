//! Minotaur nodes on ractor_cluster.
