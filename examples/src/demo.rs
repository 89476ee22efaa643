//! The in-process cluster demo (placeholder while it is written).
