//! The Redis source: connects (TLS, ACL), resolves the databases, then reads every
//! database concurrently on its own connection, pipelining SCAN pages' reads, and
//! sends one batch per page (or per part of a page of big values, bounded in bytes).
//! Binary-safe; survives dropped connections.
//!
//! Folders: `connection/` (client settings, TLS, reconnects, cluster, the lean RESP
//! connection, error replies), `read/` (databases, SCAN walks, a page's inspection
//! and values, chunked collections, typed values), `change_source/` (live mode:
//! keyspace subscriptions, the pending set, the follow phase's source). Files:
//! `check` (config checks, pure) and `glob` (the Redis glob syntax check it uses).

pub mod change_source;
mod check;
mod connection;
mod glob;
mod read;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use redis::aio::MultiplexedConnection;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

use crate::config::model::{DatabaseSelection, RedisSourceConfig};
use crate::config::FieldError;
use crate::record::Batch;
use crate::stages::{SourceReport, StageContext};

pub use connection::connect::read_password_file;
use connection::connect::{self, Connector};
use connection::reconnect::{DbConnection, RestartCounts};
use connection::{cluster, reconnect};
use read::databases;
use read::page::FetchSettings;
use read::reader::{read_database, DatabaseReport, ReadSettings};
use read::scan::ScanSpec;

/// Databases read at the same time, each on its own connection.
pub const DATABASES_AT_ONCE: usize = 8;

/// A checked Redis source, ready to run.
pub struct RedisSource {
    config: RedisSourceConfig,
    /// The rules as scans; empty means "read the configured databases whole".
    rules: Vec<ScanSpec>,
    /// Ask every key's `TTL` (some later stage reads `ttl`).
    ttl_needed: bool,
}

impl RedisSource {
    /// Checks the configuration (rules, globs, TLS files, tuning values); no I/O.
    pub fn build(config: &RedisSourceConfig) -> Result<Self, Vec<FieldError>> {
        let rules = check::check(config)?;
        Ok(RedisSource {
            config: config.clone(),
            rules,
            ttl_needed: true,
        })
    }

    /// Whether records carry `ttl`; when nothing reads it, `TTL` is not asked, which
    /// saves one command of the four per key. On by default.
    pub fn set_ttl_needed(&mut self, needed: bool) {
        self.ttl_needed = needed;
    }

    /// Connects, resolves the databases, sets `ctx.estimated_total`, and reads every
    /// selected key, sending one batch per SCAN page. Stops early, without error, when
    /// `ctx.cancel` fires.
    pub async fn run(self, out: mpsc::Sender<Batch>, ctx: StageContext) -> anyhow::Result<SourceReport> {
        let connector = Arc::new(Connector::new(&self.config).map_err(anyhow::Error::msg)?);
        let mut report = SourceReport::default();

        // Which databases, and what to scan in each, checked before anything is read.
        let mut control = connector.connect(0).await?;
        wait_until_loaded(&connector, &mut control).await?;
        let masters = cluster::masters(&connector, &mut control, &self.config.host).await?;
        let plan = self
            .plan(&connector, &mut control, masters.as_deref(), &mut report)
            .await?;
        // Managed Redis sometimes disables MEMORY: then sizes are not asked (null in
        // documents, said in a note), and limits are checked as with `size_in_bytes: false`.
        let mut size_in_bytes = self.config.size_in_bytes;
        if size_in_bytes && !memory_usage_available(&connector, &mut control).await? {
            size_in_bytes = false;
            report.notes.push(format!(
                "MEMORY USAGE is not available on Redis at {}: size_in_bytes is null in every document (set size_in_bytes: false to say so)",
                connector.endpoint()
            ));
        }
        let targets = self.targets(&connector, &mut control, masters.as_deref(), plan).await?;
        ctx.estimated_total.store(targets.estimate, Ordering::Relaxed);
        drop(control);

        let settings = Arc::new(ReadSettings {
            fetch: FetchSettings {
                size_in_bytes,
                ttl: self.ttl_needed,
                max_value_bytes: self.config.max_value_bytes.0,
                chunk_size: self.config.chunk_size,
            },
            scan_count: self.config.scan_count,
            pages_in_flight: self.config.pages_in_flight,
            bytes_in_flight: ReadSettings::bytes_in_flight_semaphore(),
        });
        let tasks = spawn_reads(targets.list, settings, out, &ctx);
        let read = collect_reads(tasks, &mut report).await?;
        if !targets.cluster_nodes.is_empty() && !ctx.cancel.is_cancelled() {
            let views_after = own_views(&targets.cluster_nodes).await?;
            cluster::check_after_read(&targets.views_before, &views_after).map_err(anyhow::Error::msg)?;
        }
        if read.json_missing > 0 {
            report.notes.push(format!(
                "{} RedisJSON (ReJSON-RL) keys skipped: the server does not answer JSON.GET (RedisJSON module missing)",
                read.json_missing
            ));
        }
        restart_notes(read.dropped, &mut report);
        Ok(report)
    }
}

/// What to read: each database of the server, or database 0 of each master, with
/// its scans; the estimate of what is to come; on a cluster, each master's own
/// account of its slots, compared again after the read.
struct Targets {
    list: Vec<(Arc<Connector>, u32, Vec<ScanSpec>)>,
    estimate: u64,
    cluster_nodes: Vec<Arc<Connector>>,
    views_before: Vec<(String, cluster::OwnView)>,
}

/// What the reads of every database gave besides the report's key counts.
struct Reads {
    /// RedisJSON keys skipped for want of the module.
    json_missing: u64,
    /// Databases whose connection dropped or whose server restarted while they were read.
    dropped: BTreeMap<(String, u32), (RestartCounts, u64)>,
}

impl RedisSource {
    /// The scans of each database: a cluster's (database 0 only), the rules', or the
    /// whole of each selected database; checked against the server before anything is read.
    async fn plan(
        &self,
        connector: &Connector,
        control: &mut MultiplexedConnection,
        masters: Option<&[cluster::ClusterNode]>,
        report: &mut SourceReport,
    ) -> anyhow::Result<BTreeMap<u32, Vec<ScanSpec>>> {
        let mut plan: BTreeMap<u32, Vec<ScanSpec>> = BTreeMap::new();
        if let Some(masters) = masters {
            plan.insert(0, self.cluster_scans(connector)?);
            report.notes.push(format!(
                "Redis at {} is a cluster node: read the cluster's {} ({}), each for the keys of its own slots",
                connector.endpoint(),
                match masters.len() {
                    1 => "only master".to_owned(),
                    n => format!("{n} masters"),
                },
                masters.iter().map(|m| m.endpoint()).collect::<Vec<_>>().join(", ")
            ));
        } else if self.rules.is_empty() {
            let databases = match &self.config.database {
                DatabaseSelection::All => {
                    let resolved = databases::resolve_all(connector, control).await?;
                    report.notes.extend(resolved.notes);
                    resolved.databases
                }
                DatabaseSelection::List(list) => {
                    databases::check_listed(connector, control, list).await?;
                    list.clone()
                }
            };
            for db in databases {
                plan.entry(db).or_default().push(ScanSpec {
                    database: db,
                    pattern: None,
                    key_type: None,
                });
            }
        } else {
            for spec in &self.rules {
                plan.entry(spec.database).or_default().push(spec.clone());
            }
            let listed: Vec<u32> = plan.keys().copied().collect();
            databases::check_listed(connector, control, &listed).await?;
        }
        Ok(plan)
    }

    /// What to read, and the estimate of what is to come (a database this user may
    /// not SELECT stops the run here, before anything is read). On a cluster, each
    /// master's own account of its slots too, compared again after the read: a slot
    /// moved meanwhile may have taken keys from a master not yet read to one already read.
    async fn targets(
        &self,
        connector: &Arc<Connector>,
        control: &mut MultiplexedConnection,
        masters: Option<&[cluster::ClusterNode]>,
        mut plan: BTreeMap<u32, Vec<ScanSpec>>,
    ) -> anyhow::Result<Targets> {
        let mut targets = Targets {
            list: Vec::new(),
            estimate: 0,
            cluster_nodes: Vec::new(),
            views_before: Vec::new(),
        };
        let Some(masters) = masters else {
            let databases: Vec<u32> = plan.keys().copied().collect();
            targets.estimate = databases::estimate_keys(connector, control, &databases).await?;
            targets
                .list
                .extend(plan.into_iter().map(|(db, specs)| (connector.clone(), db, specs)));
            return Ok(targets);
        };
        let specs = plan.remove(&0).unwrap_or_default();
        for master in masters {
            let config = RedisSourceConfig {
                host: master.host.clone(),
                port: master.port,
                ..self.config.clone()
            };
            let node = Arc::new(Connector::new(&config).map_err(anyhow::Error::msg)?);
            let mut node_control = node.connect(0).await?;
            targets.estimate += databases::estimate_keys(&node, &mut node_control, &[0]).await?;
            let view = cluster::own_view(&node, &mut node_control).await?;
            targets.views_before.push((node.endpoint().to_owned(), view));
            targets.cluster_nodes.push(node.clone());
            targets.list.push((node, 0, specs.clone()));
        }
        cluster::check_before_read(masters, &targets.views_before).map_err(anyhow::Error::msg)?;
        Ok(targets)
    }
}

/// What one database's read task gives: its endpoint and database, and its report
/// with the connection's restarts and reconnects (`None`: cancelled before its turn).
type ReadResult = (
    String,
    u32,
    anyhow::Result<Option<(DatabaseReport, RestartCounts, u64)>>,
);

/// Databases are read concurrently, each on its own connection, but at most
/// DATABASES_AT_ONCE at a time: one connection per database of a server with
/// hundreds would run out of file descriptors or of the server's `maxclients`
/// (managed plans allow a few dozen), and two cores gain nothing past a few.
fn spawn_reads(
    targets: Vec<(Arc<Connector>, u32, Vec<ScanSpec>)>,
    settings: Arc<ReadSettings>,
    out: mpsc::Sender<Batch>,
    ctx: &StageContext,
) -> JoinSet<ReadResult> {
    let at_once = Arc::new(Semaphore::new(DATABASES_AT_ONCE));
    let mut tasks = JoinSet::new();
    for (connector, db, specs) in targets {
        let endpoint = connector.endpoint().to_owned();
        let (settings, out, ctx, at_once) = (settings.clone(), out.clone(), ctx.clone(), at_once.clone());
        tasks.spawn(async move {
            let _turn = tokio::select! {
                biased;
                _ = ctx.cancel.cancelled() => return (endpoint, db, Ok(None)),
                turn = at_once.acquire_owned() => turn,
            };
            let read = async {
                let connection = Arc::new(DbConnection::open(connector, db).await?);
                let db_report = read_database(connection.clone(), specs, settings, out, ctx).await?;
                Ok::<_, anyhow::Error>(Some((db_report, connection.restart_counts(), connection.reconnects())))
            };
            (endpoint, db, read.await)
        });
    }
    tasks
}

/// Waits for every database's read, adding its key counts to `report`; the first
/// error stops the others.
async fn collect_reads(mut tasks: JoinSet<ReadResult>, report: &mut SourceReport) -> anyhow::Result<Reads> {
    let mut reads = Reads {
        json_missing: 0,
        dropped: BTreeMap::new(),
    };
    while let Some(joined) = tasks.join_next().await {
        let (endpoint, db, result) = joined.map_err(|e| anyhow::anyhow!("reading a Redis database stopped: {e}"))?;
        match result {
            Ok(Some((db_report, restarts, reconnects))) => {
                reads.json_missing += db_report.skips.json_module_missing;
                // A cluster's masters all hold database 0: their counts add up.
                let keys = report.keys.entry(db).or_default();
                for (key_type, n) in db_report.keys {
                    *keys.entry(key_type).or_default() += n;
                }
                if keys.is_empty() {
                    report.keys.remove(&db);
                }
                if restarts.restarts > 0 || reconnects > 0 {
                    reads.dropped.insert((endpoint, db), (restarts, reconnects));
                }
            }
            // Cancelled before its turn came.
            Ok(None) => {}
            Err(error) => {
                tasks.abort_all();
                return Err(error);
            }
        }
    }
    Ok(reads)
}

/// A note for each database whose server restarted or whose connection dropped.
fn restart_notes(dropped: BTreeMap<(String, u32), (RestartCounts, u64)>, report: &mut SourceReport) {
    for ((endpoint, db), (restarts, reconnects)) in dropped {
        if restarts.restarts > 0 {
            let mut note = format!("Redis at {endpoint} restarted while db {db} was read");
            if restarts.scans_started_over > 0 {
                note += ": its scan started over, so keys read before the restart were read again (sent twice)";
            }
            if restarts.reads_started_over > 0 {
                note += &format!(
                    "; {} collection(s) being read in chunks were read again from their first element",
                    restarts.reads_started_over
                );
            }
            report.notes.push(note);
        } else {
            report.notes.push(format!(
                "the connection to Redis at {endpoint} (db {db}) dropped {reconnects} time(s); the scan went on from its cursor",
            ));
        }
    }
}

impl RedisSource {
    /// The scans of a cluster, whose nodes have database 0 only: the rules, or the
    /// whole database; a rule or `database` naming another database is an error (on
    /// a standalone server it would read something, here nothing).
    fn cluster_scans(&self, connector: &Connector) -> anyhow::Result<Vec<ScanSpec>> {
        let only_zero = |what: String| {
            anyhow::anyhow!(
                "Redis at {} is a cluster node, and a cluster has database 0 only: {what}",
                connector.endpoint()
            )
        };
        if !self.rules.is_empty() {
            if let Some(spec) = self.rules.iter().find(|spec| spec.database != 0) {
                return Err(only_zero(format!(
                    "a rule reads database {} (use `database: 0` in every rule)",
                    spec.database
                )));
            }
            return Ok(self.rules.clone());
        }
        match &self.config.database {
            DatabaseSelection::List(list) if list.iter().any(|&db| db != 0) => Err(only_zero(format!(
                "`database` lists {} (use `database: 0` or \"*\")",
                list.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
            ))),
            _ => Ok(vec![ScanSpec {
                database: 0,
                pattern: None,
                key_type: None,
            }]),
        }
    }
}

/// Every cluster master's own view of its slots, with its endpoint, each on a new
/// connection.
async fn own_views(nodes: &[Arc<Connector>]) -> anyhow::Result<Vec<(String, cluster::OwnView)>> {
    let mut views = Vec::with_capacity(nodes.len());
    for node in nodes {
        let mut connection = node.connect(0).await?;
        views.push((
            node.endpoint().to_owned(),
            cluster::own_view(node, &mut connection).await?,
        ));
    }
    Ok(views)
}

/// Waits while the server loads its data set (`PING` answers `LOADING`: it just
/// started, or a replica syncs), for at most [`reconnect::RECONNECT_BUDGET`]. The
/// probes that follow would take `LOADING` for a command this server lacks (a note
/// that `MEMORY USAGE` is not available, sizes null for the whole run). A user
/// denied `PING` goes on: the reads wait out `LOADING` themselves.
pub(super) async fn wait_until_loaded(
    connector: &Connector,
    control: &mut redis::aio::MultiplexedConnection,
) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + reconnect::RECONNECT_BUDGET;
    loop {
        let reply: Result<redis::Value, redis::RedisError> = redis::cmd("PING").query_async(control).await;
        match reply {
            Err(error) if connect::is_loading(&error) => {
                if std::time::Instant::now() >= deadline {
                    return Err(anyhow::anyhow!(
                        "{} (still loading after {} s)",
                        connector.describe(&error, "waiting for the data set to load"),
                        reconnect::RECONNECT_BUDGET.as_secs()
                    ));
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(error) if connect::is_connection_error(&error) => {
                return Err(anyhow::anyhow!(connector.describe(&error, "PING")));
            }
            _ => return Ok(()),
        }
    }
}

/// Whether this server answers `MEMORY USAGE` (asked of a key that need not exist:
/// a missing key gives nil, a disabled, renamed or denied command an error, a cluster
/// node whose slots do not hold the key `MOVED`). A user
/// whose ACL does not cover the probe's key name (`~user:*`) may still run the command
/// on its own keys: that refusal means "available".
pub(super) async fn memory_usage_available(
    connector: &Connector,
    control: &mut redis::aio::MultiplexedConnection,
) -> anyhow::Result<bool> {
    let reply: Result<redis::Value, redis::RedisError> = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg("redis-connector:probe")
        .query_async(control)
        .await;
    match reply {
        Ok(_) => Ok(true),
        Err(error) if connect::is_connection_error(&error) => {
            Err(anyhow::anyhow!(connector.describe(&error, "MEMORY USAGE")))
        }
        // A cluster that cannot serve keys now (CLUSTERDOWN) would make this look like
        // a missing command, and fail the first read anyway: say why, before reading.
        Err(error) if cluster::is_cluster_change(&error) && !cluster::is_redirect(&error) => {
            Err(anyhow::anyhow!(connector.describe(&error, "MEMORY USAGE")))
        }
        // A cluster node redirects the probe's key to its slot's master: it has the command.
        Err(error) => Ok(connect::is_key_permission_denied(&error) || cluster::is_redirect(&error)),
    }
}
