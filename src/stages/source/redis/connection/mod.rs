//! Talking to Redis: the client settings and one connection per database
//! (`connect`), a connection that survives drops (`reconnect`), a cluster's masters
//! (`cluster`), the lean pipelined connection of the hot path (`packed`, with its
//! hand-written RESP parser `resp`), and what Redis's error replies mean (`errors`).

pub(super) mod cluster;
pub(super) mod connect;
pub(super) mod errors;
pub(super) mod packed;
pub(super) mod reconnect;
pub(super) mod resp;
