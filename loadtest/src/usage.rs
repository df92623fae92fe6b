//! CPU and memory of the server under test and of this client.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use crate::Error;
use crate::target_kurento::KurentoTarget;

/// CPU seconds (user + system) this process has used.
pub fn own_cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given; all-zero is a valid rusage.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// CPU seconds and resident bytes of process `pid`, from /proc.
pub fn proc_usage(pid: u32) -> Result<(f64, u64), Error> {
    let read = |file: &str| {
        let path = format!("/proc/{pid}/{file}");
        std::fs::read_to_string(&path).map_err(|source| Error::Io { path, source })
    };
    let stat = read("stat")?;
    Ok((
        parse_stat_cpu(&stat, clock_ticks()),
        parse_status_rss(&read("status")?),
    ))
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// utime + stime (fields 14 and 15 of /proc/PID/stat) in seconds. The command name (field 2)
/// may hold spaces and parentheses, so fields are counted from its closing parenthesis.
fn parse_stat_cpu(stat: &str, ticks_per_s: f64) -> f64 {
    let after = stat.rfind(')').map_or("", |i| &stat[i + 1..]);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // `after` starts at field 3 (state): utime is field 14, stime field 15.
    (field(11) + field(12)) as f64 / ticks_per_s
}

/// VmRSS of /proc/PID/status, in bytes.
fn parse_status_rss(status: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// UDP datagrams the kernel dropped for lack of receive / send buffer space, machine-wide (in
/// this network namespace), from /proc/net/snmp. A rise during the window says that a process
/// on this machine, client or server, did not keep up: loss that is not the server's doing.
pub fn udp_buffer_drops() -> Option<(u64, u64)> {
    parse_snmp_udp(&std::fs::read_to_string("/proc/net/snmp").ok()?)
}

fn parse_snmp_udp(snmp: &str) -> Option<(u64, u64)> {
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let names: Vec<&str> = udp.next()?.split_whitespace().collect();
    let values: Vec<&str> = udp.next()?.split_whitespace().collect();
    let get = |name: &str| {
        let i = names.iter().position(|n| *n == name)?;
        values.get(i)?.parse::<u64>().ok()
    };
    Some((get("RcvbufErrors")?, get("SndbufErrors")?))
}

/// The kernel's receive-buffer drop counter of each UDP socket a process holds (the `drops`
/// column of /proc/PID/net/udp and udp6, in that process's network namespace), by socket inode.
/// Unlike [`udp_buffer_drops`] it says whose socket overflowed: the server's (it did not read
/// fast enough) or the client's.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SocketDrops(HashMap<u64, u64>);

impl SocketDrops {
    /// The counters of `pid`'s UDP sockets now; `None` if its /proc entry cannot be read.
    pub fn of(pid: u32) -> Option<Self> {
        let inodes: HashSet<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .ok()?
            .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
            .filter_map(|target| socket_inode(&target.to_string_lossy()))
            .collect();
        let mut drops = HashMap::new();
        for table in ["udp", "udp6"] {
            // A kernel without IPv6 has no udp6 table.
            let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
                continue;
            };
            drops.extend(
                parse_proc_net_udp(&text)
                    .into_iter()
                    .filter(|(inode, _)| inodes.contains(inode)),
            );
        }
        Some(SocketDrops(drops))
    }

    /// Drops since `before` over the sockets held now (one opened since counts from zero), and
    /// how many sockets that is.
    pub fn since(&self, before: &SocketDrops) -> (u64, usize) {
        let total = self
            .0
            .iter()
            .map(|(inode, n)| n.saturating_sub(before.0.get(inode).copied().unwrap_or(0)))
            .sum();
        (total, self.0.len())
    }
}

/// The inode of an fd link's target `socket:[12345]`.
fn socket_inode(target: &str) -> Option<u64> {
    target
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// (inode, drops) of each row of /proc/net/udp or udp6: `sl local rem st tx:rx tr:when retrnsmt
/// uid timeout inode ref pointer drops`.
fn parse_proc_net_udp(table: &str) -> Vec<(u64, u64)> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            Some((fields.get(9)?.parse().ok()?, fields.get(12)?.parse().ok()?))
        })
        .collect()
}

/// Where the server's figures come from.
pub enum ServerMeter {
    /// /proc of a local process (`--server-pid`).
    Proc(u32),
    /// The Kurento ServerManager: `getUsedMemory`, and `getUsedCpu` sampled every second by a
    /// background task into a running total of CPU seconds. The sampler has a connection of its
    /// own: a server may answer one connection's requests in order, and a `getUsedCpu` that
    /// holds the connection for a second must not delay the sessions' signalling.
    Kurento {
        target: Arc<KurentoTarget>,
        cpu_total: Arc<Mutex<f64>>,
    },
    None,
}

impl ServerMeter {
    pub async fn kurento(url: &str, target: Arc<KurentoTarget>) -> Result<Self, Error> {
        let sampler = KurentoTarget::connect(url).await?;
        let cores = sampler.cpu_count().await?;
        let cpu_total = Arc::new(Mutex::new(0.0));
        let total = cpu_total.clone();
        let running = Arc::downgrade(&target);
        tokio::spawn(async move {
            // Runs as long as the scenario holds its own connection.
            while running.strong_count() > 0 {
                match sampler.used_cpu_seconds(1000, cores).await {
                    Ok(s) => *total.lock().unwrap_or_else(|e| e.into_inner()) += s,
                    Err(_) => break,
                }
            }
            sampler.close().await;
        });
        Ok(Self::Kurento { target, cpu_total })
    }

    /// The server's process id, where the figures come from /proc.
    pub fn pid(&self) -> Option<u32> {
        match self {
            ServerMeter::Proc(pid) => Some(*pid),
            _ => None,
        }
    }

    /// CPU seconds used so far (a running total: only differences mean something) and
    /// resident bytes now; `None` where the server cannot tell.
    pub async fn sample(&self) -> (Option<f64>, Option<u64>) {
        match self {
            ServerMeter::Proc(pid) => match proc_usage(*pid) {
                Ok((cpu, rss)) => (Some(cpu), Some(rss)),
                Err(e) => {
                    tracing::warn!("{e}");
                    (None, None)
                }
            },
            ServerMeter::Kurento { target, cpu_total } => {
                let cpu = *cpu_total.lock().unwrap_or_else(|e| e.into_inner());
                (Some(cpu), target.used_memory().await.ok())
            }
            ServerMeter::None => (None, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_stat_with_a_hostile_command_name() {
        let stat = "1234 (ja nus) (x)) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 50 0 0 20 0 9 0 100 1000 200";
        assert!((parse_stat_cpu(stat, 100.0) - 3.0).abs() < 1e-9);
        assert_eq!(parse_stat_cpu("garbage", 100.0), 0.0);
    }

    #[test]
    fn parses_udp_buffer_drops() {
        let snmp = "Ip: Forwarding\nIp: 1\nUdp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\nUdp: 10 0 3 20 3 7\nUdpLite: InDatagrams\nUdpLite: 0\n";
        assert_eq!(parse_snmp_udp(snmp), Some((3, 7)));
        assert_eq!(parse_snmp_udp("Udp: RcvbufErrors\n"), None);
    }

    #[test]
    fn parses_per_socket_drops() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
   80: 0100007F:9C4F 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 41234 2 0000000000000000 17\n\
  201: 00000000:0044 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 999 2 0000000000000000 0\n";
        assert_eq!(parse_proc_net_udp(table), vec![(41234, 17), (999, 0)]);
        assert_eq!(socket_inode("socket:[41234]"), Some(41234));
        assert_eq!(socket_inode("/dev/null"), None);
        let before = SocketDrops(HashMap::from([(1, 5), (2, 0)]));
        let after = SocketDrops(HashMap::from([(1, 9), (3, 2)]));
        assert_eq!(after.since(&before), (6, 2));
    }

    #[test]
    fn counts_its_own_udp_sockets() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let drops = SocketDrops::of(std::process::id()).expect("own /proc entry");
        assert!(drops.since(&SocketDrops::default()).1 >= 1);
        drop(socket);
    }

    #[test]
    fn parses_vmrss() {
        let status = "Name:\tjanus\nVmPeak:\t  9000 kB\nVmRSS:\t   2048 kB\n";
        assert_eq!(parse_status_rss(status), 2048 * 1024);
        assert_eq!(parse_status_rss(""), 0);
    }

    #[test]
    fn reads_its_own_process() {
        let (cpu, rss) = proc_usage(std::process::id()).expect("own /proc entry");
        assert!(cpu >= 0.0);
        assert!(rss > 0);
        assert!(own_cpu_seconds() >= 0.0);
    }
}
