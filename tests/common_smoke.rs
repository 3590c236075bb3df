mod common;

#[test]
fn a_private_redis_server_starts_and_answers() {
    let redis = common::RedisServer::start(&[]);
    redis.cli(&["SET", "k", "v"]);
    assert_eq!(redis.cli(&["GET", "k"]).trim(), "v");
}
