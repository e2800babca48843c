//! The acks the client driver sends for a received batch: the core is
//! asked for its acks after every datagram of the batch, as if they had
//! come one by one, and [`PendingAcks`] keeps them until the batch is done
//! and picks which go out (see [`PendingAcks::selected`]; the driver is
//! [`super::client`]).

use std::time::Instant;

use super::qlog::ClientQlog;
use crate::proto::client::Client;
use crate::proto::recovery::ACK_NEWS_STRIDE;
use crate::proto::wire::MAX_DATAGRAM_LEN;

/// Acks sent per received batch: the last two the core wrote (same
/// timestamp: the server reads the second as a plain ack), so that a batch
/// is answered unless both are lost.
pub(super) const ACKS_PER_BATCH: usize = 2;

/// Datagrams the client core wrote while a received batch was being fed
/// to it, back to back, sent once the batch is done. The buffers keep
/// their capacity: no allocation per datagram after the first batches.
#[derive(Debug, Default)]
pub(super) struct PendingAcks {
    bytes: Vec<u8>,
    /// Where each datagram ends in `bytes`.
    ends: Vec<usize>,
    /// What [`Client::last_ack_news`] said after each.
    news: Vec<u32>,
    /// Which to send, reused by [`selected`](Self::selected).
    send: Vec<bool>,
}

impl PendingAcks {
    /// Takes everything the core has to send now (handing the trace of
    /// each ack to `qlog`, tagged with its place in the batch).
    pub(super) fn take_from(
        &mut self,
        client: &mut Client,
        now: Instant,
        mut qlog: Option<&mut ClientQlog>,
    ) {
        loop {
            let off = self.bytes.len();
            self.bytes.resize(off + MAX_DATAGRAM_LEN, 0);
            match client.poll_transmit(now, &mut self.bytes[off..]) {
                Some(n) => {
                    self.bytes.truncate(off + n);
                    self.ends.push(off + n);
                    self.news.push(client.last_ack_news());
                    if let Some(q) = qlog.as_deref_mut() {
                        q.hold(client, Some(self.ends.len() - 1));
                    }
                }
                None => {
                    self.bytes.truncate(off);
                    return;
                }
            }
        }
    }

    /// The datagrams to send, in the order written: the last `last`, and
    /// every earlier one after which [`ACK_NEWS_STRIDE`] changes to the
    /// held ranges came. Each ack lists only the newest ranges and the
    /// latest fills, so at 10% loss a batch of a few thousand datagrams
    /// holds more news than its last ack can carry: dropping every ack but
    /// the last two would leave the server blind to the ranges between,
    /// and it would resend them. Clean, acks carry no news and only the
    /// last two go.
    pub(super) fn selected(&mut self, last: usize) -> impl Iterator<Item = (usize, &[u8])> {
        let n = self.ends.len();
        self.send.clear();
        self.send.resize(n, false);
        let mut since = 0u32;
        for j in (0..n).rev() {
            if j + last >= n {
                self.send[j] = true;
                continue;
            }
            since = since.saturating_add(self.news[j + 1]);
            if since >= ACK_NEWS_STRIDE {
                self.send[j] = true;
                since = 0;
            }
        }
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(self.ends.iter())
            .zip(self.send.iter())
            .enumerate()
            .filter(|(_, (_, &send))| send)
            .map(|(slot, ((a, &b), _))| (slot, &self.bytes[a..b]))
    }

    /// Whether ack `slot` of the batch was picked by the last
    /// [`selected`](Self::selected).
    pub(super) fn was_selected(&self, slot: usize) -> bool {
        self.send.get(slot) == Some(&true)
    }

    pub(super) fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
        self.news.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch of acks, each one byte (its position), with `news` each.
    fn batch(news: &[u32]) -> PendingAcks {
        let mut p = PendingAcks::default();
        for (i, &n) in news.iter().enumerate() {
            p.bytes.push(i as u8);
            p.ends.push(i + 1);
            p.news.push(n);
        }
        p
    }

    fn sent(p: &mut PendingAcks) -> Vec<u8> {
        p.selected(ACKS_PER_BATCH).map(|(_, d)| d[0]).collect()
    }

    #[test]
    fn clean_batches_send_only_their_last_two_acks() {
        let mut p = batch(&[0; 40]);
        assert_eq!(sent(&mut p), vec![38, 39]);
        let mut one = batch(&[5]);
        assert_eq!(sent(&mut one), vec![0]);
        assert_eq!(sent(&mut PendingAcks::default()), Vec::<u8>::new());
    }

    #[test]
    fn an_earlier_ack_goes_when_later_news_would_push_its_own_out() {
        // One change per ack: every ACK_NEWS_STRIDE-th ack back from the
        // last two goes too, so no run of unsent acks holds a stride.
        let n = 100;
        let mut p = batch(&vec![1; n]);
        let got = sent(&mut p);
        let stride = i64::from(ACK_NEWS_STRIDE);
        // 98 - 24k: each sent ack has exactly a stride of news after it.
        let mut want: Vec<u8> = (1..)
            .map(|k| 98 - stride * k)
            .take_while(|&i| i >= 0)
            .map(|i| i as u8)
            .collect();
        want.reverse();
        want.extend([98, 99]);
        assert_eq!(got, want);
        for pair in got.windows(2) {
            let gap: u32 = p.news[usize::from(pair[0]) + 1..=usize::from(pair[1])]
                .iter()
                .sum();
            assert!(gap <= ACK_NEWS_STRIDE, "{got:?}");
        }
        // A burst of news in one ack sends the one before it.
        let mut q = batch(&[0, 0, 0, 30, 0, 0]);
        assert_eq!(sent(&mut q), vec![2, 4, 5]);
    }
}
