//! The inter-Region link: a userspace TCP proxy in front of each Region's Valkey that every
//! cross-Region connection goes through — replication and cross-Region client traffic alike, as in
//! AWS. (The kernel here has no netem; a proxy shapes the same things at the byte-stream level.)
//!
//! Modes: `up` passes bytes; `down` refuses new connections and cuts open ones (a dead link or a
//! dark Region); `blackhole` accepts and holds connections but forwards nothing (packets vanish,
//! clients hang until their own timeouts); `degraded` delays every chunk and, with probability
//! `loss`, stalls it as long as a TCP retransmission would (loss on a TCP link shows as latency
//! spikes and stalls, not as missing bytes).

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum LinkMode {
    #[default]
    Up,
    Down,
    Blackhole,
    Degraded {
        #[serde(default)]
        delay_ms: u64,
        #[serde(default)]
        loss: f64,
    },
}

/// How long a "lost" chunk stalls: about one TCP retransmission timeout on a healthy path.
const RETRANSMIT_STALL: Duration = Duration::from_millis(250);

/// Serves `listener`, forwarding every connection to `target` under the link's current mode.
pub async fn serve(listener: TcpListener, target: SocketAddr, mode: watch::Receiver<LinkMode>) {
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            continue;
        };
        let mode = mode.clone();
        tokio::spawn(async move {
            if *mode.borrow() == LinkMode::Down {
                return; // dropping the socket refuses the connection
            }
            let Ok(outbound) = TcpStream::connect(target).await else {
                return;
            };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            let (ri, wi) = inbound.into_split();
            let (ro, wo) = outbound.into_split();
            let a = tokio::spawn(pump(ri, wo, mode.clone()));
            let b = tokio::spawn(pump(ro, wi, mode));
            // When either direction ends, end both, as a TCP reset would.
            tokio::select! {
                _ = a => {},
                _ = b => {},
            }
        });
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut mode: watch::Receiver<LinkMode>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            changed = mode.changed() => {
                if changed.is_err() || *mode.borrow() == LinkMode::Down {
                    return;
                }
                continue;
            }
        };
        // Apply the mode to this chunk; re-check after every wait, the mode may change meanwhile.
        loop {
            let current = *mode.borrow();
            match current {
                LinkMode::Up => break,
                LinkMode::Down => return,
                LinkMode::Blackhole => {
                    if mode.changed().await.is_err() {
                        return;
                    }
                }
                LinkMode::Degraded { delay_ms, loss } => {
                    let mut wait = Duration::from_millis(delay_ms);
                    if loss > 0.0 && rand::random::<f64>() < loss {
                        wait += RETRANSMIT_STALL;
                    }
                    tokio::time::sleep(wait).await;
                    break;
                }
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
