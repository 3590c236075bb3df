//! The integration tests, in one test binary: one module per part of the tool, all
//! against real services (a private `redis-server` per test, the Elasticsearch that
//! `scripts/services start` runs), never mocks. One binary links once, where a file per
//! part linked one executable each.
//!
//! Run them all with `scripts/test`; one module with `cargo test --test it validate::`,
//! one test by its name. Tests that need a service the machine may lack (the RedisJSON
//! module) are `#[ignore]`d with the reason: `cargo test` lists them as ignored, and
//! `scripts/test` runs them with `--include-ignored` where the service exists.
//! How to run, update snapshots and read the results: `docs/TESTING.md`.

mod support;

mod alias;
mod architecture;
mod change_aware;
mod cli;
mod deploy;
mod es_sink;
mod helm;
mod image;
mod live;
mod live_alias;
mod mapping_update;
mod ndjson_sink;
mod redis_json;
mod redis_restart;
mod redis_source;
mod reference;
mod run;
mod run_lifecycle;
mod secrets;
mod serve;
mod serve_hardening;
mod serve_live;
mod services;
mod support_smoke;
mod transforms;
mod trust;
mod usability_alias;
mod usability_run;
mod usability_validate;
mod validate;
mod verify;
mod yaml_limits;
