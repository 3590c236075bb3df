//! One node's keyspace subscription: `PSUBSCRIBE __keyspace@N__:PATTERN` for each
//! selected database and rule, every event's key added to the pending set. A dropped
//! subscription (`CLIENT KILL TYPE pubsub`, the output buffer limit, a restart, a
//! network cut) is opened again, the flags checked again, and only then a resync
//! marked due: every change after that moment arrives as an event, every change
//! before it is read by the resync.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::super::connection::connect::Connector;
use super::notify;
use crate::backoff::Doubling;
use crate::record::KeyType;
use crate::stages::source::redis::change_source::pending::{LiveState, PendingKey, Reason, TypeMask};

/// One channel pattern and the types its keys may have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// `__keyspace@N__:PATTERN` (`@*` for every database).
    pub channel: Vec<u8>,
    pub types: TypeMask,
}

/// The database and key of a keyspace channel `__keyspace@N__:key`.
pub fn parse_channel(channel: &[u8]) -> Option<(u32, Vec<u8>)> {
    let rest = channel.strip_prefix(b"__keyspace@")?;
    let end = rest.iter().position(|b| !b.is_ascii_digit())?;
    let database = std::str::from_utf8(&rest[..end]).ok()?.parse().ok()?;
    let key = rest[end..].strip_prefix(b"__:")?;
    Some((database, key.to_vec()))
}

/// What a subscriber needs.
pub struct Subscriber {
    pub node: usize,
    pub connector: Arc<Connector>,
    pub subscriptions: Vec<Subscription>,
    pub check_notifications: bool,
    pub configure_server: bool,
}

const BACKOFF: Doubling = Doubling::new(Duration::from_millis(100), Duration::from_secs(5));

impl Subscriber {
    /// Subscribes, tells `ready` (the first subscription's outcome: an error stops the
    /// start), then follows until `stop`, subscribing again after every drop.
    pub async fn run(
        self,
        state: Arc<LiveState>,
        ready: oneshot::Sender<anyhow::Result<Vec<String>>>,
        stop: CancellationToken,
    ) {
        let types: HashMap<Vec<u8>, TypeMask> = self
            .subscriptions
            .iter()
            .map(|s| (s.channel.clone(), s.types))
            .collect();
        let mut ready = Some(ready);
        let mut backoff = BACKOFF;
        loop {
            let subscribed = tokio::select! {
                _ = stop.cancelled() => return,
                subscribed = self.subscribe() => subscribed,
            };
            let (mut pubsub, notes) = match subscribed {
                Ok(subscribed) => subscribed,
                Err(error) => {
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(Err(error));
                        return;
                    }
                    if error.downcast_ref::<NotificationsOff>().is_some() {
                        state.fail(format!("{error:#}"));
                        return;
                    }
                    tracing::warn!(
                        "live: cannot subscribe again to Redis at {}: {error:#}; retrying",
                        self.connector.endpoint()
                    );
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(backoff.current()) => {}
                    }
                    backoff.double();
                    continue;
                }
            };
            backoff.reset();
            match ready.take() {
                Some(ready) => {
                    let _ = ready.send(Ok(notes));
                }
                None => {
                    for note in notes {
                        tracing::warn!("live: {note}");
                    }
                    state.mark_dirty(Reason::SubscriptionDropped);
                }
            }
            let mut messages = pubsub.on_message();
            loop {
                let message = tokio::select! {
                    _ = stop.cancelled() => return,
                    message = messages.next() => message,
                };
                let Some(message) = message else { break };
                let channel: Vec<u8> = message.get_channel().unwrap_or_default();
                let Some((database, key)) = parse_channel(&channel) else {
                    continue;
                };
                let pattern: Vec<u8> = message.get_pattern().unwrap_or_default();
                let mask = types.get(&pattern).copied().unwrap_or(TypeMask::ANY);
                state.add(
                    PendingKey {
                        node: self.node,
                        database,
                        key,
                    },
                    mask,
                );
            }
            tracing::warn!(
                "live: the subscription to Redis at {} dropped; subscribing again, then a resync",
                self.connector.endpoint()
            );
        }
    }

    /// Which JSON keys the subscriptions may deliver (their events need the `d` flag).
    fn json_keys(&self) -> notify::JsonKeys {
        let selects = |s: &&Subscription| s.types.allows(KeyType::Json);
        if self
            .subscriptions
            .iter()
            .filter(selects)
            .any(|s| s.types != TypeMask::ANY)
        {
            notify::JsonKeys::Selected
        } else if self.subscriptions.iter().any(|s| s.types == TypeMask::ANY) {
            notify::JsonKeys::IfLoaded
        } else {
            notify::JsonKeys::No
        }
    }

    /// Checks the server's flags (adding the missing ones when allowed), then opens the
    /// subscription and waits for every pattern to be confirmed.
    async fn subscribe(&self) -> anyhow::Result<(redis::aio::PubSub, Vec<String>)> {
        let mut notes = Vec::new();
        if self.check_notifications {
            let mut control = self.connector.connect(0).await?;
            super::super::wait_until_loaded(&self.connector, &mut control).await?;
            match notify::ensure(&self.connector, &mut control, self.configure_server, self.json_keys()).await {
                Ok(note) => notes.extend(note),
                Err(error) => return Err(anyhow::Error::new(NotificationsOff(format!("{error:#}")))),
            }
        }
        let mut pubsub = self
            .connector
            .pubsub()
            .await
            .map_err(|e| anyhow::anyhow!(self.connector.describe(&e, "opening the keyspace subscription")))?;
        for subscription in &self.subscriptions {
            pubsub.psubscribe(&subscription.channel).await.map_err(|e| {
                anyhow::anyhow!(self.connector.describe(
                    &e,
                    &format!("PSUBSCRIBE {}", String::from_utf8_lossy(&subscription.channel))
                ))
            })?;
        }
        Ok((pubsub, notes))
    }
}

/// The server does not publish the notifications live mode needs (and may not be
/// configured): the run stops.
#[derive(Debug)]
pub struct NotificationsOff(pub String);

impl std::fmt::Display for NotificationsOff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotificationsOff {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyspace_channels_give_the_database_and_the_binary_key() {
        assert_eq!(parse_channel(b"__keyspace@0__:user:1"), Some((0, b"user:1".to_vec())));
        assert_eq!(
            parse_channel(b"__keyspace@15__:a__:b\xff"),
            Some((15, b"a__:b\xff".to_vec()))
        );
        assert_eq!(parse_channel(b"__keyspace@3__:"), Some((3, Vec::new())));
        assert_eq!(parse_channel(b"__keyevent@0__:set"), None);
        assert_eq!(parse_channel(b"__keyspace@x__:k"), None);
    }
}
