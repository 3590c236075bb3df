//! Live mode's Redis side: which channels to subscribe to (a pattern per selected
//! database, narrowed by each rule's `key_pattern`), on which nodes (the server, or
//! every master of a cluster: notifications are node-local), the check of
//! `notify-keyspace-events`, the watch for what sends no event (restarts, flushes),
//! and the source that reads changed keys.
//!
//! Files: `notify` (the flags), `subscribe` (one node's subscription), `server_watch`
//! (restarts and flushes), `changed_keys` (the follow phase's source), `pending`
//! (the set of changed keys waiting to be read, and the reasons a resync is due),
//! `flags` (notifications turned off while following).

mod changed_keys;
mod flags;
mod notify;
pub mod pending;
mod server_watch;
mod subscribe;

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::connection::cluster;
use super::connection::connect::Connector;
use super::read::page::FetchSettings;
use super::read::reader::ReadSettings;
use super::{check, memory_usage_available, wait_until_loaded};
use crate::config::model::{DatabaseSelection, LiveConfig, RedisSourceConfig};
pub use changed_keys::ChangeSource;
use pending::{LiveState, TypeMask};
use subscribe::{Subscriber, Subscription};

/// The Redis side of a live run, resolved against the server.
pub struct Follower {
    nodes: Vec<Arc<Connector>>,
    subscriptions: Vec<Subscription>,
    settings: Arc<ReadSettings>,
    live: LiveConfig,
    connections: changed_keys::Connections,
    cluster: bool,
    /// Lines for the summary (flags set, a cluster's masters).
    pub notes: Vec<String>,
}

/// The channel patterns of a source: one per rule (same database and pattern merged,
/// their types joined), else one per listed database, else every database.
pub fn subscriptions(config: &RedisSourceConfig, cluster: bool) -> Result<Vec<Subscription>, String> {
    let rules = check::check(config).map_err(|errors| {
        errors
            .into_iter()
            .map(|e| format!("{}: {}", e.pointer, e.message))
            .collect::<Vec<_>>()
            .join("; ")
    })?;
    let mut channels: BTreeMap<Vec<u8>, TypeMask> = BTreeMap::new();
    let mut add = |database: &str, pattern: &str, types: TypeMask| {
        let channel = format!("__keyspace@{database}__:{pattern}").into_bytes();
        let entry = channels.entry(channel).or_default();
        *entry = entry.union(types);
    };
    if !rules.is_empty() {
        for rule in &rules {
            add(
                &rule.database.to_string(),
                rule.pattern.as_deref().unwrap_or("*"),
                TypeMask::of(rule.key_type),
            );
        }
    } else if cluster {
        add("0", "*", TypeMask::ANY);
    } else {
        match &config.database {
            DatabaseSelection::All => add("*", "*", TypeMask::ANY),
            DatabaseSelection::List(list) => {
                for db in list {
                    add(&db.to_string(), "*", TypeMask::ANY);
                }
            }
        }
    }
    Ok(channels
        .into_iter()
        .map(|(channel, types)| Subscription { channel, types })
        .collect())
}

impl Follower {
    /// Finds the nodes to follow (the server, or a cluster's masters) and what to
    /// subscribe to; no subscription yet.
    pub async fn prepare(config: &RedisSourceConfig, live: &LiveConfig) -> anyhow::Result<Follower> {
        let connector = Arc::new(Connector::new(config).map_err(anyhow::Error::msg)?);
        let mut control = connector.connect(0).await?;
        wait_until_loaded(&connector, &mut control).await?;
        let masters = cluster::masters(&connector, &mut control, &config.host).await?;
        let mut notes = Vec::new();
        let nodes: Vec<Arc<Connector>> = match &masters {
            None => vec![connector.clone()],
            Some(masters) => {
                notes.push(format!(
                    "following the cluster's {} master(s) ({}), each subscribed on its own",
                    masters.len(),
                    masters.iter().map(|m| m.endpoint()).collect::<Vec<_>>().join(", ")
                ));
                masters
                    .iter()
                    .map(|m| {
                        Connector::new(&RedisSourceConfig {
                            host: m.host.clone(),
                            port: m.port,
                            ..config.clone()
                        })
                        .map(Arc::new)
                        .map_err(anyhow::Error::msg)
                    })
                    .collect::<anyhow::Result<_>>()?
            }
        };
        let subscriptions = subscriptions(config, masters.is_some()).map_err(anyhow::Error::msg)?;
        let size_in_bytes = config.size_in_bytes && memory_usage_available(&connector, &mut control).await?;
        let settings = Arc::new(ReadSettings {
            fetch: FetchSettings {
                size_in_bytes,
                ttl: true,
                max_value_bytes: config.max_value_bytes.0,
                chunk_size: config.chunk_size,
            },
            scan_count: config.scan_count,
            pages_in_flight: config.pages_in_flight,
            bytes_in_flight: ReadSettings::bytes_in_flight_semaphore(),
        });
        Ok(Follower {
            nodes,
            subscriptions,
            settings,
            live: live.clone(),
            connections: Default::default(),
            cluster: masters.is_some(),
            notes,
        })
    }

    /// Subscribes on every node (checking, or setting, `notify-keyspace-events`
    /// first) and starts watching for restarts and flushes. Returns once every node
    /// is subscribed; an error means the run cannot follow (flags missing, denied).
    pub async fn start(
        &mut self,
        state: &Arc<LiveState>,
        stop: &CancellationToken,
    ) -> anyhow::Result<Vec<JoinHandle<()>>> {
        let mut tasks = Vec::new();
        let mut waiting = Vec::new();
        for (node, connector) in self.nodes.iter().enumerate() {
            let (ready, subscribed) = oneshot::channel();
            let subscriber = Subscriber {
                node,
                connector: connector.clone(),
                subscriptions: self.subscriptions.clone(),
                check_notifications: self.live.check_notifications,
                configure_server: self.live.configure_server,
            };
            tasks.push(tokio::spawn(subscriber.run(state.clone(), ready, stop.clone())));
            tasks.push(tokio::spawn(server_watch::watch(
                connector.clone(),
                self.cluster,
                state.clone(),
                stop.clone(),
            )));
            if self.live.check_notifications {
                tasks.push(tokio::spawn(flags::watch(
                    connector.clone(),
                    self.live.configure_server,
                    state.clone(),
                    stop.clone(),
                )));
            }
            waiting.push(subscribed);
        }
        if !self.live.check_notifications {
            self.notes.push(flags::unwatched_note(self.live.reconcile_every.0));
        }
        for subscribed in waiting {
            let outcome = subscribed
                .await
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the keyspace subscription stopped before it started")));
            match outcome {
                Ok(notes) => self.notes.extend(notes),
                Err(error) => {
                    stop.cancel();
                    return Err(error);
                }
            }
        }
        Ok(tasks)
    }

    /// The source of one follow phase. `locates_by_key`: whether a gone key's
    /// document can be named from its key (else a resync deletes it).
    pub fn change_source(&self, state: &Arc<LiveState>, locates_by_key: bool) -> ChangeSource {
        ChangeSource {
            nodes: self.nodes.clone(),
            connections: self.connections.clone(),
            settings: self.settings.clone(),
            state: state.clone(),
            page: self.settings.scan_count.max(1) as usize,
            locates_by_key,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::KeyType;

    fn config(yaml: &str) -> RedisSourceConfig {
        crate::config::yaml::from_str(yaml).unwrap()
    }

    fn channels(config: &RedisSourceConfig, cluster: bool) -> Vec<String> {
        subscriptions(config, cluster)
            .unwrap()
            .into_iter()
            .map(|s| String::from_utf8(s.channel).unwrap())
            .collect()
    }

    #[test]
    fn rules_narrow_the_channels_and_join_their_types() {
        let c = config(
            "host: h\nrules:\n  - {database: 0, key_pattern: 'user:*', _type: HASH}\n  - {database: 0, key_pattern: 'user:*', _type: SET}\n  - {database: 2, _type: STRING}",
        );
        let subs = subscriptions(&c, false).unwrap();
        assert_eq!(channels(&c, false), ["__keyspace@0__:user:*", "__keyspace@2__:*"]);
        assert!(subs[0].types.allows(KeyType::Hash) && subs[0].types.allows(KeyType::Set));
        assert!(!subs[0].types.allows(KeyType::String));
        assert!(subs[1].types.allows(KeyType::String) && !subs[1].types.allows(KeyType::Hash));
    }

    #[test]
    fn databases_give_one_channel_each_or_every_database() {
        assert_eq!(channels(&config("host: h\ndatabase: '*'"), false), ["__keyspace@*__:*"]);
        assert_eq!(
            channels(&config("host: h\ndatabase: [1, 3]"), false),
            ["__keyspace@1__:*", "__keyspace@3__:*"]
        );
        assert_eq!(channels(&config("host: h\ndatabase: '*'"), true), ["__keyspace@0__:*"]);
    }
}
