//! The shared helpers themselves: a private redis-server starts and answers.

use crate::support;

#[test]
fn a_private_redis_server_starts_and_answers() {
    let redis = support::RedisServer::start(&[]);
    redis.cli(&["SET", "k", "v"]);
    assert_eq!(redis.cli(&["GET", "k"]).trim(), "v");
}
