//! Unit tests of [`super`]: the series a pipeline, a live pipeline, a reload
//! and the process add to `/metrics`.

use super::*;

#[test]
fn a_pipeline_s_series_exist_at_zero_and_go_when_it_is_removed() {
    let metrics = Metrics::new();
    metrics.add_pipeline("users");
    let text = metrics.encode();
    assert!(
        text.contains("redis_connector_pipeline_runs_total{pipeline=\"users\",outcome=\"ok\"} 0"),
        "{text}"
    );
    assert!(text.contains("redis_connector_pipeline_documents_total{pipeline=\"users\",operation=\"written\"} 0"));
    assert!(text.contains("redis_connector_config_reloads_total{result=\"failure\"} 0"));
    assert!(text.contains("redis_connector_build_info{version=\""));
    metrics.remove_pipeline("users");
    assert!(!metrics.encode().contains("pipeline=\"users\""));
}

#[test]
fn a_live_pipeline_s_series_add_what_is_new_and_go_with_it() {
    let metrics = Metrics::new();
    metrics.add_pipeline("users");
    metrics.live_started("users");
    let text = metrics.encode();
    assert!(
        text.contains("redis_connector_pipeline_live_resyncs_total{pipeline=\"users\",reason=\"overflow\"} 0"),
        "{text}"
    );
    assert!(
        text.contains("redis_connector_pipeline_live_lag_seconds{pipeline=\"users\"} 0.0"),
        "{text}"
    );
    let sample = LiveSample {
        lag_seconds: 0.25,
        pending: 3,
        new_events: 5,
        new_dropped: 0,
        new_upserts: 2,
        new_deletes: 1,
    };
    metrics.live_sample("users", sample);
    metrics.live_sample(
        "users",
        LiveSample {
            new_events: 1,
            ..sample
        },
    );
    metrics.live_resync("users", Reason::Flush);
    let text = metrics.encode();
    assert!(
        text.contains("redis_connector_pipeline_live_events_total{pipeline=\"users\"} 6"),
        "{text}"
    );
    assert!(
        text.contains("redis_connector_pipeline_live_pending_keys{pipeline=\"users\"} 3"),
        "{text}"
    );
    assert!(
        text.contains("redis_connector_pipeline_documents_total{pipeline=\"users\",operation=\"deleted\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("redis_connector_pipeline_live_resyncs_total{pipeline=\"users\",reason=\"flush\"} 1"),
        "{text}"
    );
    metrics.remove_pipeline("users");
    assert!(!metrics.encode().contains("pipeline=\"users\""));
}

#[test]
fn reloads_count_by_result() {
    let metrics = Metrics::new();
    metrics.reloaded(false, 0.0);
    let text = metrics.encode();
    assert!(
        text.contains("redis_connector_config_reloads_total{result=\"failure\"} 1"),
        "{text}"
    );
    assert!(text.contains("redis_connector_config_last_reload_successful 0"));
    metrics.reloaded(true, 1234.5);
    let text = metrics.encode();
    assert!(
        text.contains("redis_connector_config_last_reload_success_timestamp_seconds 1234.5"),
        "{text}"
    );
}
