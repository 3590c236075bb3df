//! Redis Cluster as a source. A node of a cluster holds only the keys of its own hash
//! slots, so reading the configured node alone would read part of the data and look
//! complete. The source asks `CLUSTER NODES` on the configured node: on a cluster it
//! reads every master that serves slots, each as a database 0 of its own, in
//! parallel (replicas hold copies: never read). On a server without cluster support
//! nothing changes.

use redis::aio::MultiplexedConnection;
use redis::{ErrorKind, RedisError, ServerErrorKind};

use super::connect::{is_connection_error, is_permission_denied, Connector};
use super::errors::is_unknown_command;

/// A master of the cluster that serves hash slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNode {
    pub host: String,
    pub port: u16,
    /// How many of the 16384 slots it serves.
    pub slots: u32,
}

impl ClusterNode {
    /// `host:port`, for messages.
    pub fn endpoint(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// The masters serving slots, from `CLUSTER NODES` asked of the node at `seed_host`
/// (whose own line may carry no address). A master flagged as failing still serves
/// slots no other node can give: that is an error, as reading around it would leave
/// its keys out.
pub fn parse_cluster_nodes(text: &str, seed_host: &str) -> Result<Vec<ClusterNode>, String> {
    let mut masters = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let fields = node_fields(line)?;
        let flags: Vec<&str> = fields[2].split(',').collect();
        if !flags.contains(&"master") {
            continue;
        }
        let mut slots = 0u32;
        for range in slot_fields(&fields) {
            let (first, last) = slot_range(range)
                .ok_or_else(|| format!("unexpected slot range {range:?} in CLUSTER NODES line: {line:?}"))?;
            slots += last - first + 1;
        }
        if slots == 0 {
            continue;
        }
        // `ip:port@cport` or `ip:port@cport,hostname`; the ip may be empty for the node
        // answering when it has not learned its own address.
        let address = fields[1].split(['@', ',']).next().unwrap_or_default();
        let (ip, port) = address
            .rsplit_once(':')
            .ok_or_else(|| format!("unexpected node address {:?} in CLUSTER NODES", fields[1]))?;
        let port: u16 = port
            .parse()
            .map_err(|_| format!("unexpected node address {:?} in CLUSTER NODES", fields[1]))?;
        let host = match ip {
            "" if flags.contains(&"myself") => seed_host.to_owned(),
            "" => {
                return Err(format!(
                    "cluster node {} serves {slots} slots but has no address",
                    fields[0]
                ))
            }
            ip => ip.trim_start_matches('[').trim_end_matches(']').to_owned(),
        };
        if flags.iter().any(|f| matches!(*f, "fail" | "noaddr" | "handshake")) {
            return Err(format!(
                "cluster master {host}:{port} serves {slots} slots but is flagged `{}`: its keys cannot be read now; run again once the cluster has failed over (cluster_state:ok)",
                fields[2]
            ));
        }
        masters.push(ClusterNode { host, port, slots });
    }
    if masters.is_empty() {
        return Err("CLUSTER NODES lists no master serving slots: the cluster is not set up yet (assign slots, e.g. `redis-cli --cluster create`)".to_owned());
    }
    masters.sort_by(|a, b| (&a.host, a.port).cmp(&(&b.host, b.port)));
    Ok(masters)
}

/// The space-separated fields of a `CLUSTER NODES` line: `id address flags master
/// ping-sent pong-recv config-epoch link-state slot...`.
fn node_fields(line: &str) -> Result<Vec<&str>, String> {
    let fields: Vec<&str> = line.split(' ').collect();
    if fields.len() < 8 {
        return Err(format!("unexpected CLUSTER NODES line: {line:?}"));
    }
    Ok(fields)
}

/// The slot fields of a line that this node serves: `0-5460` or `5461`, not the
/// `[slot->-node]` / `[slot-<-node]` marks of slots being migrated (still served
/// here until the move ends).
fn slot_fields<'a>(fields: &'a [&'a str]) -> impl Iterator<Item = &'a str> + 'a {
    fields[8..].iter().copied().filter(|f| !f.starts_with('['))
}

/// `0-5460` as `(0, 5460)`, `5461` as `(5461, 5461)`; `None` when it is neither.
fn slot_range(field: &str) -> Option<(u32, u32)> {
    let (first, last) = field.split_once('-').unwrap_or((field, field));
    let (first, last) = (first.parse().ok()?, last.parse().ok()?);
    (first <= last).then_some((first, last))
}

/// Whether `error` says the server has no cluster support (a standalone server).
fn is_standalone(error: &RedisError) -> bool {
    error.to_string().contains("cluster support disabled") || is_unknown_command(error)
}

/// The cluster's masters when the configured server is a cluster node, `None` when it
/// is a standalone server (or `CLUSTER` and `INFO` are both denied to this user, so
/// nothing tells: then it is read as one server). A cluster node whose user may not
/// list the nodes is an error, not a partial read.
pub async fn masters(
    connector: &Connector,
    control: &mut MultiplexedConnection,
    seed_host: &str,
) -> anyhow::Result<Option<Vec<ClusterNode>>> {
    let reply: Result<String, RedisError> = redis::cmd("CLUSTER").arg("NODES").query_async(control).await;
    match reply {
        Ok(text) => parse_cluster_nodes(&text, seed_host)
            .map(Some)
            .map_err(|e| anyhow::anyhow!("Redis at {}: {e}", connector.endpoint())),
        Err(error) if is_connection_error(&error) => Err(anyhow::anyhow!(connector.describe(&error, "CLUSTER NODES"))),
        Err(error) if is_standalone(&error) => Ok(None),
        Err(error) if is_permission_denied(&error) => {
            // Denied: a standalone server's ACL rarely grants CLUSTER; a cluster node
            // read alone would look complete and hold part of the keys.
            let info: Result<String, RedisError> = redis::cmd("INFO").arg("cluster").query_async(control).await;
            if info.is_ok_and(|text| text.contains("cluster_enabled:1")) {
                return Err(anyhow::anyhow!(
                    "Redis at {} is a cluster node, and it holds only the keys of its own slots; to find the other masters the user needs `CLUSTER NODES` (ACL `+cluster|nodes`): {}",
                    connector.endpoint(),
                    connector.describe(&error, "CLUSTER NODES")
                ));
            }
            tracing::debug!(
                "CLUSTER NODES denied on {}: read as a standalone server",
                connector.endpoint()
            );
            Ok(None)
        }
        Err(error) => Err(anyhow::anyhow!(connector.describe(&error, "CLUSTER NODES"))),
    }
}

/// What a master says of itself in `CLUSTER NODES` (its `myself` line): its id,
/// role, config epoch and slots, without the fields that change by themselves (ping
/// times, link state). Taken of every master before the read and again after it: any
/// difference means slots moved (or a failover) while the masters were read, and a
/// key moved from a master not yet read to one already read was read nowhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnView {
    /// `id flags master-id config-epoch`, as the line gives them.
    identity: String,
    /// The slot fields, migrations (`[slot->-id]`, `[slot-<-id]`) included.
    slots: Vec<String>,
}

impl OwnView {
    /// The `myself` line of `text` (a `CLUSTER NODES` reply).
    pub fn parse(text: &str) -> Result<OwnView, String> {
        let line = text
            .lines()
            .map(str::trim)
            .find(|line| {
                line.split(' ')
                    .nth(2)
                    .is_some_and(|flags| flags.split(',').any(|f| f == "myself"))
            })
            .ok_or("CLUSTER NODES has no `myself` line")?;
        let fields = node_fields(line)?;
        Ok(OwnView {
            identity: [fields[0], fields[2], fields[3], fields[6]].join(" "),
            slots: fields[8..].iter().map(|f| f.to_string()).collect(),
        })
    }

    /// A slot being moved to or from this node (`[5461->-id]`), if any.
    pub fn migration(&self) -> Option<&str> {
        self.slots.iter().find(|f| f.starts_with('[')).map(String::as_str)
    }

    /// The slots this node serves, as `(first, last)` ranges.
    fn ranges(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.slots
            .iter()
            .filter(|f| !f.starts_with('['))
            .filter_map(|range| slot_range(range))
            .map(|(first, last)| (first as usize, last as usize))
    }
}

/// Asks `node`, on `connection`, for its own view of the cluster.
pub async fn own_view(node: &Connector, connection: &mut MultiplexedConnection) -> anyhow::Result<OwnView> {
    let text: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query_async(connection)
        .await
        .map_err(|e| anyhow::anyhow!(node.describe(&e, "CLUSTER NODES")))?;
    OwnView::parse(&text).map_err(|e| anyhow::anyhow!("Redis at {}: {e}", node.endpoint()))
}

/// Checks the masters' own views before the read, against the list of masters the
/// configured node gave: no slot is being moved, each master serves the slots that
/// list says (the list may lag behind a change the masters already know: a master
/// missing from it would not be read), and no slot is served twice.
pub fn check_before_read(masters: &[ClusterNode], views: &[(String, OwnView)]) -> Result<(), String> {
    const AGAIN: &str = "run again once it is over (cluster_state:ok, no slot migrating)";
    if let Some((endpoint, migration)) = views.iter().find_map(|(e, v)| Some((e, v.migration()?))) {
        return Err(format!(
            "cluster master {endpoint} is moving a slot ({migration}): resharding is in progress, and keys moved during the read could be read on no master; {AGAIN}"
        ));
    }
    let mut served = vec![0u8; 16384];
    for (master, (endpoint, view)) in masters.iter().zip(views) {
        let mut slots = 0;
        for (first, last) in view.ranges() {
            for slot in served.iter_mut().take(last + 1).skip(first) {
                *slot = slot.saturating_add(1);
                slots += 1;
            }
        }
        if slots != master.slots {
            return Err(format!(
                "cluster master {endpoint} serves {slots} slots by its own account but {} by the configured node's: the cluster is changing (resharding or a failover); {AGAIN}",
                master.slots
            ));
        }
    }
    if let Some(slot) = served.iter().position(|&n| n > 1) {
        return Err(format!(
            "slot {slot} is served by {} of the masters {} by their own account: the cluster is changing (resharding or a failover); {AGAIN}",
            served[slot],
            views.iter().map(|(e, _)| e.as_str()).collect::<Vec<_>>().join(", ")
        ));
    }
    Ok(())
}

/// Compares the masters' own views after the read with those before it; a master
/// whose slots, role or epoch changed means keys may have been missed.
pub fn check_after_read(before: &[(String, OwnView)], after: &[(String, OwnView)]) -> Result<(), String> {
    for ((endpoint, old), (_, new)) in before.iter().zip(after) {
        if old != new {
            let now = match new.migration() {
                Some(migration) => format!("is moving a slot ({migration})"),
                // A new role (a failover) says more than its slots; moved slots more
                // than the config epoch they bumped.
                None if old.identity.rsplit_once(' ').map(|r| r.0) != new.identity.rsplit_once(' ').map(|r| r.0) => {
                    format!("is now `{}` (was `{}`)", new.identity, old.identity)
                }
                None if old.slots != new.slots => {
                    format!("serves slots {} (was {})", new.slots.join(" "), old.slots.join(" "))
                }
                None => format!(
                    "is now `{}` (was `{}`): its config epoch changed",
                    new.identity, old.identity
                ),
            };
            return Err(format!(
                "the cluster changed while it was read: master {endpoint} {now}; keys moved between masters during the read may have been read on none of them, so this run is not complete: run again once resharding or the failover is over (cluster_state:ok)"
            ));
        }
    }
    Ok(())
}

/// Whether `error` redirects to another node (`MOVED`, `ASK`): the command exists.
pub fn is_redirect(error: &RedisError) -> bool {
    matches!(
        error.kind(),
        ErrorKind::Server(ServerErrorKind::Moved | ServerErrorKind::Ask)
    )
}

/// Whether `error` is a cluster redirection (`MOVED`, `ASK`) or a cluster that cannot
/// answer now (`CLUSTERDOWN`, `TRYAGAIN`): slots moved while the source read.
pub fn is_cluster_change(error: &RedisError) -> bool {
    matches!(
        error.kind(),
        ErrorKind::Server(
            ServerErrorKind::Moved | ServerErrorKind::Ask | ServerErrorKind::ClusterDown | ServerErrorKind::TryAgain
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODES: &str = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002,node-2.example master - 0 1426238316232 2 connected 5461-10922
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30003@31003 master - 0 1426238318243 3 connected 10923-16383
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca :30001@31001 myself,master - 0 0 1 connected 0-5459 5460 [5461-<-67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1]
6ec23923021cf3ffec47632106199cb7f496ce01 127.0.0.1:30005@31005 master - 0 1426238316232 5 connected
";

    #[test]
    fn masters_serving_slots_are_read_and_replicas_and_empty_masters_are_not() {
        let masters = parse_cluster_nodes(NODES, "redis.internal").unwrap();
        assert_eq!(
            masters,
            vec![
                ClusterNode {
                    host: "127.0.0.1".into(),
                    port: 30002,
                    slots: 5462
                },
                ClusterNode {
                    host: "127.0.0.1".into(),
                    port: 30003,
                    slots: 5461
                },
                // The answering node's own line has no ip: the configured host.
                ClusterNode {
                    host: "redis.internal".into(),
                    port: 30001,
                    slots: 5461
                },
            ]
        );
        assert_eq!(masters.iter().map(|m| m.slots).sum::<u32>(), 16384);
    }

    #[test]
    fn a_failing_master_with_slots_stops_the_read_with_what_to_do() {
        let text = NODES.replace("master - 0 1426238318243 3", "master,fail - 0 1426238318243 3");
        let error = parse_cluster_nodes(&text, "h").unwrap_err();
        assert!(
            error.starts_with("cluster master 127.0.0.1:30003 serves 5461 slots but is flagged `master,fail`"),
            "{error}"
        );
        assert!(error.contains("run again once the cluster has failed over"), "{error}");
    }

    #[test]
    fn a_cluster_without_slots_or_with_garbage_is_an_error() {
        let error = parse_cluster_nodes("abc :7000@17000 myself,master - 0 0 0 connected\n", "h").unwrap_err();
        assert!(error.contains("no master serving slots"), "{error}");
        let error = parse_cluster_nodes("abc 1.2.3.4:7000@17000 master - 0 0 0 connected 9-x\n", "h").unwrap_err();
        assert!(error.contains("unexpected slot range \"9-x\""), "{error}");
        assert!(parse_cluster_nodes("short line\n", "h").is_err());
    }

    fn view(line: &str) -> OwnView {
        OwnView::parse(&format!("{line}\n{}", NODES.lines().next().unwrap())).unwrap()
    }

    #[test]
    fn a_slot_migrating_or_a_stale_list_of_masters_before_the_read_stops_it() {
        let node = |port, slots| ClusterNode {
            host: "127.0.0.1".into(),
            port,
            slots,
        };
        let masters = [node(7000, 8192), node(7001, 8192)];
        let a = (
            "127.0.0.1:7000".to_owned(),
            view("a :7000@17000 myself,master - 0 0 1 connected 0-8191"),
        );
        let b = |slots: &str| {
            (
                "127.0.0.1:7001".to_owned(),
                view(&format!("b 1.2.3.4:7001@17001 myself,master - 0 0 2 connected {slots}")),
            )
        };
        let error = check_before_read(&masters, &[a.clone(), b("8192-16383 [8192->-a]")]).unwrap_err();
        assert!(
            error.starts_with("cluster master 127.0.0.1:7001 is moving a slot ([8192->-a]): resharding is in progress"),
            "{error}"
        );
        let error = check_before_read(&masters, &[a.clone(), b("8193-16383")]).unwrap_err();
        assert!(
            error.starts_with(
                "cluster master 127.0.0.1:7001 serves 8191 slots by its own account but 8192 by the configured node's"
            ),
            "{error}"
        );
        let error = check_before_read(&masters, &[a.clone(), b("8191-16382")]).unwrap_err();
        assert!(
            error.starts_with("slot 8191 is served by 2 of the masters 127.0.0.1:7000, 127.0.0.1:7001"),
            "{error}"
        );
        check_before_read(&masters, &[a, b("8192-16383")]).unwrap();
    }

    #[test]
    fn slots_moved_or_a_failover_during_the_read_make_it_incomplete() {
        let before = vec![(
            "127.0.0.1:7000".to_owned(),
            view("a :7000@17000 myself,master - 0 0 1 connected 0-16383"),
        )];
        // Ping times and link state change by themselves: not a change.
        let same = vec![(
            "127.0.0.1:7000".to_owned(),
            view("a :7000@17000 myself,master - 5 9 1 disconnected 0-16383"),
        )];
        check_after_read(&before, &same).unwrap();
        let moved = vec![(
            "127.0.0.1:7000".to_owned(),
            view("a :7000@17000 myself,master - 0 0 1 connected 1-16383"),
        )];
        let error = check_after_read(&before, &moved).unwrap_err();
        assert!(
            error.starts_with(
                "the cluster changed while it was read: master 127.0.0.1:7000 serves slots 1-16383 (was 0-16383)"
            ),
            "{error}"
        );
        let moved = vec![(
            "127.0.0.1:7000".to_owned(),
            view("a :7000@17000 myself,master - 0 0 7 connected 0-99 200-16383"),
        )];
        let error = check_after_read(&before, &moved).unwrap_err();
        assert!(
            error.contains("master 127.0.0.1:7000 serves slots 0-99 200-16383 (was 0-16383)"),
            "{error}"
        );
        let replica = vec![(
            "127.0.0.1:7000".to_owned(),
            view("a :7000@17000 myself,slave b 0 0 3 connected"),
        )];
        let error = check_after_read(&before, &replica).unwrap_err();
        assert!(
            error.contains("master 127.0.0.1:7000 is now `a myself,slave b 3` (was `a myself,master - 1`)"),
            "{error}"
        );
    }

    #[test]
    fn ipv6_nodes_keep_their_address() {
        let masters = parse_cluster_nodes("abc ::1:7000@17000 master - 0 0 0 connected 0-16383\n", "h").unwrap();
        assert_eq!(masters[0].host, "::1");
        assert_eq!(masters[0].endpoint(), "[::1]:7000");
    }
}
