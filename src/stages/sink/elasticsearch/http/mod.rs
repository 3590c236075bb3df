//! Elasticsearch over HTTP: the client of one or several nodes (`client`), what the
//! bulk service needs of the network (`transport`), sending bulk requests and acting
//! on their answers (`service`), and what to retry (`retry`).

pub(super) mod client;
pub(super) mod recovery;
pub(super) mod retry;
pub(super) mod service;
pub(super) mod transport;
