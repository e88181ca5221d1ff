//! Notifications this process claims as it accepts them, handed to its own deliveries in
//! memory.
//!
//! When a delivery slot is free at commit time, a notification is inserted already claimed
//! (under a lease, exactly as a claim would leave it) and given to the dispatcher without a
//! claim: one row update, one query and one wake-up fewer per notification. A crash between
//! the commit and the delivery leaves the row claimed; its lease runs out and any process
//! claims it again, as with any claimed row. Slots are shared with the dispatcher's own
//! claims, so `queue.concurrency` still bounds the rows claimed and not yet recorded.

use std::sync::Arc;
use std::time::Duration;

use rand::RngExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use super::Notification;
use super::queue::Lease;

/// Rows claimed in one commit, each with the delivery slot reserved for it.
pub(crate) struct Claimed {
    /// The rows as a claim returns them.
    pub rows: Vec<Notification>,
    /// One slot per row, taken before the commit.
    pub permits: Vec<OwnedSemaphorePermit>,
    /// The tag the rows carry.
    pub claim: i64,
}

/// The accepting side: reserves slots and hands claimed rows over.
#[derive(Clone, Debug)]
pub struct Handoff {
    slots: Arc<Semaphore>,
    tx: mpsc::UnboundedSender<Claimed>,
    lease: Duration,
}

/// The delivering side: the slots every delivery of this process takes, and the rows
/// handed over.
#[derive(Debug)]
pub struct Inbox {
    pub(crate) slots: Arc<Semaphore>,
    pub(crate) rx: mpsc::UnboundedReceiver<Claimed>,
}

/// `concurrency` delivery slots shared by the two sides; claims hold for `lease`.
pub fn channel(concurrency: usize, lease: Duration) -> (Handoff, Inbox) {
    let slots = Arc::new(Semaphore::new(concurrency));
    // Unbounded but never long: every row in it holds one of the slots.
    let (tx, rx) = mpsc::unbounded_channel();
    (
        Handoff {
            slots: slots.clone(),
            tx,
            lease,
        },
        Inbox { slots, rx },
    )
}

impl Handoff {
    /// Up to `wanted` free slots, taken now; none when every slot is busy (the rows are then
    /// queued, and claimed in turn with the backlog).
    pub(crate) fn reserve(&self, wanted: usize) -> Vec<OwnedSemaphorePermit> {
        take_slots(&self.slots, wanted)
    }

    /// A new lease for rows claimed at `now`.
    pub(crate) fn lease(&self, now: i64) -> Lease {
        Lease {
            now,
            until: now + self.lease.as_millis() as i64,
            tag: rand::rng().random(),
        }
    }

    /// Gives committed rows to the dispatcher; if it has stopped, their leases run out and
    /// they are claimed again.
    pub(crate) fn send(&self, claimed: Claimed) {
        if claimed.rows.is_empty() {
            return;
        }
        let _ = self.tx.send(claimed);
    }
}

/// Up to `wanted` permits of `slots`, without waiting.
pub(crate) fn take_slots(slots: &Arc<Semaphore>, wanted: usize) -> Vec<OwnedSemaphorePermit> {
    let mut permits = Vec::new();
    while permits.len() < wanted {
        match slots.clone().try_acquire_owned() {
            Ok(permit) => permits.push(permit),
            Err(_) => break,
        }
    }
    permits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserving_never_takes_more_slots_than_there_are() {
        let (handoff, inbox) = channel(3, Duration::from_secs(60));
        let first = handoff.reserve(2);
        let second = handoff.reserve(5);
        assert_eq!((first.len(), second.len()), (2, 1));
        assert_eq!(inbox.slots.available_permits(), 0);
        drop(first);
        assert_eq!(inbox.slots.available_permits(), 2);
    }

    #[test]
    fn a_lease_lasts_as_configured() {
        let (handoff, _inbox) = channel(1, Duration::from_secs(60));
        let lease = handoff.lease(1_000);
        assert_eq!((lease.now, lease.until), (1_000, 61_000));
    }
}
