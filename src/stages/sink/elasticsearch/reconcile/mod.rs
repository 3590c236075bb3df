//! Keeping an index equal to Redis: content hashes and the `(_id, hash)` map of
//! change-aware sync (`content_hash`), and stale deletion (`stale`).

pub(super) mod compare;
pub(super) mod content_hash;
pub(super) mod stale;
