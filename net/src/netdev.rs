//! A container's network I/O for `stats`: the byte counters of its
//! network namespace's interfaces (`/proc/<pid>/net/dev`), loopback
//! excepted, as docker's NET I/O column sums the container's interfaces.

/// `(received, sent)` bytes over every interface but `lo` in the text of
/// a `/proc/<pid>/net/dev`. Pure.
pub fn net_dev_totals(text: &str) -> (u64, u64) {
    let mut rx = 0u64;
    let mut tx = 0u64;
    for line in text.lines() {
        let Some((name, counters)) = line.split_once(':') else {
            continue;
        };
        if name.trim() == "lo" {
            continue;
        }
        let f: Vec<u64> = counters
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        // receive: bytes packets errs drop fifo frame compressed multicast;
        // transmit: bytes ...
        if f.len() >= 16 {
            rx = rx.saturating_add(f[0]);
            tx = tx.saturating_add(f[8]);
        }
    }
    (rx, tx)
}

/// `(received, sent)` bytes of the network namespace of process `pid`,
/// loopback excepted; `None` if it cannot be read (the process is gone).
pub fn net_io(pid: u32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).ok()?;
    Some(net_dev_totals(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_left_out_and_the_rest_summed() {
        let text = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0
  eth0:    1500      12    0    0    0     0          0         0      648       8    0    0    0     0       0          0
  eth1:     500       2    0    0    0     0          0         0        2       1    0    0    0     0       0          0
";
        assert_eq!(net_dev_totals(text), (2000, 650));
        assert_eq!(net_dev_totals(""), (0, 0));
    }
}
