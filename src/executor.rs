//! The generic stage executor (placeholder until it lands).
