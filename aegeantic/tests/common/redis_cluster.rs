//! A real Redis Cluster on loopback: `redis-server --cluster-enabled yes` processes on free
//! ports, joined by `redis-cli --cluster create`, each killed by its PID when dropped.
//! Include it next to `redis_server.rs`, whose servers it starts.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::redis_server::{free_port, RedisServer};

pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
    config_files: Vec<String>,
}

/// How long a node may not answer before the others count it failed: short, so that a
/// failover test takes seconds, not the default 15 s.
pub const NODE_TIMEOUT_MS: u64 = 500;

impl RedisCluster {
    /// Three masters, each with `replicas` replicas.
    pub fn start(replicas: usize) -> Self {
        let count = 3 * (1 + replicas);
        let mut nodes = Vec::with_capacity(count);
        let mut config_files = Vec::with_capacity(count);
        for _ in 0..count {
            // The cluster bus would be the port plus 10000, which may be taken or past
            // 65535: give it a free port of its own.
            let bus = free_port();
            let file = format!("aegeantic-cluster-{bus}.conf");
            let _ = std::fs::remove_file(format!("/tmp/{file}"));
            let args: Vec<String> = [
                "--cluster-enabled",
                "yes",
                "--cluster-port",
                &bus.to_string(),
                "--cluster-config-file",
                &file,
                "--cluster-node-timeout",
                &NODE_TIMEOUT_MS.to_string(),
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            nodes.push(RedisServer::start_with_args(&args));
            config_files.push(format!("/tmp/{file}"));
        }
        let cluster = RedisCluster {
            nodes,
            config_files,
        };
        let status = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(cluster.addresses())
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli must be installed: ./test.sh installs it");
        assert!(status.success(), "redis-cli --cluster create failed");
        cluster.wait_until(Duration::from_secs(20), |cluster| {
            cluster.live().all(|node| {
                node.command("CLUSTER INFO").contains("cluster_state:ok")
                    && cluster.replicas_synced(node, replicas)
            })
        });
        cluster
    }

    /// `127.0.0.1:port` of every node.
    pub fn addresses(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port))
            .collect()
    }

    /// A `redis://` URL per node, the form `RateLimiter::redis_cluster` takes.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The port of the master that serves `key`'s slot now, as the live nodes see it.
    pub fn master_of(&self, key: &str) -> u16 {
        let node = self.live().next().expect("a live node");
        let slot: u16 = reply_number(&node.command(&format!("CLUSTER KEYSLOT {key}"))) as u16;
        for line in node.command("CLUSTER NODES").lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let serves = fields[8..].iter().any(|range| {
                let mut ends = range
                    .split('-')
                    .map(|n| n.parse::<u16>().unwrap_or(u16::MAX));
                let low = ends.next().unwrap_or(u16::MAX);
                let high = ends.next().unwrap_or(low);
                (low..=high).contains(&slot)
            });
            if serves {
                let port = fields[1].split(['@', ':']).nth(1).unwrap();
                return port.parse().unwrap();
            }
        }
        panic!("no master serves slot {slot}");
    }

    /// The node on `port`.
    pub fn node(&mut self, port: u16) -> &mut RedisServer {
        self.nodes
            .iter_mut()
            .find(|node| node.port == port)
            .expect("a node of this cluster")
    }

    /// Polls `ready` every 20 ms until it holds, for at most `limit`.
    pub fn wait_until(&self, limit: Duration, ready: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + limit;
        while !ready(self) {
            assert!(Instant::now() < deadline, "the cluster did not get ready");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn live(&self) -> impl Iterator<Item = &RedisServer> {
        self.nodes.iter().filter(|node| node.is_running())
    }

    /// A master's replicas are all online and in sync; a replica's link is up.
    fn replicas_synced(&self, node: &RedisServer, replicas: usize) -> bool {
        let info = node.command("INFO replication");
        if info.contains("role:master") {
            info.matches("state=online").count() >= replicas
        } else {
            info.contains("master_link_status:up")
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
        for file in &self.config_files {
            let _ = std::fs::remove_file(file);
        }
    }
}

/// The number in an integer reply (`:42`).
fn reply_number(reply: &str) -> i64 {
    reply.trim().trim_start_matches(':').parse().unwrap()
}
