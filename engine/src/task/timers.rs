//! A task's timers: the set of registered `(kind, time)` pairs, kept in memory for
//! scheduling and in the internal store `__timers` (so they are in a changelog and survive
//! restarts and moves). Keys are `[kind][time as big-endian u64 with the sign bit flipped]`,
//! which sorts by kind, then time.

use std::collections::BTreeSet;

use bytes::Bytes;

use crate::host::TimerKind;

/// Name of the internal store holding timers.
pub const TIMERS_STORE: &str = "__timers";

fn kind_byte(kind: TimerKind) -> u8 {
    match kind {
        TimerKind::StreamTime => 0,
        TimerKind::WallClock => 1,
    }
}

/// The store key of a timer.
pub fn encode(kind: TimerKind, time: i64) -> Bytes {
    let mut k = Vec::with_capacity(9);
    k.push(kind_byte(kind));
    k.extend_from_slice(&((time as u64) ^ (1 << 63)).to_be_bytes());
    Bytes::from(k)
}

/// The timer a store key holds, if it is one.
pub fn decode(key: &[u8]) -> Option<(TimerKind, i64)> {
    if key.len() != 9 {
        return None;
    }
    let kind = match key[0] {
        0 => TimerKind::StreamTime,
        1 => TimerKind::WallClock,
        _ => return None,
    };
    let mut b = [0u8; 8];
    b.copy_from_slice(&key[1..]);
    Some((kind, (u64::from_be_bytes(b) ^ (1 << 63)) as i64))
}

/// Registered timers, by clock.
#[derive(Debug, Default)]
pub struct TimerSet {
    stream: BTreeSet<i64>,
    wall: BTreeSet<i64>,
}

impl TimerSet {
    fn set(&mut self, kind: TimerKind) -> &mut BTreeSet<i64> {
        match kind {
            TimerKind::StreamTime => &mut self.stream,
            TimerKind::WallClock => &mut self.wall,
        }
    }

    /// Adds a timer; false if it was already there.
    pub fn insert(&mut self, kind: TimerKind, time: i64) -> bool {
        self.set(kind).insert(time)
    }

    /// Removes and returns the earliest timer of `kind` due at `now`.
    pub fn pop_due(&mut self, kind: TimerKind, now: i64) -> Option<i64> {
        let set = self.set(kind);
        let first = *set.first()?;
        if first <= now { set.pop_first() } else { None }
    }

    /// The earliest wall-clock timer.
    pub fn next_wall(&self) -> Option<i64> {
        self.wall.first().copied()
    }

    pub fn len(&self) -> usize {
        self.stream.len() + self.wall.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_sort_by_time() {
        for t in [i64::MIN, -5, 0, 7, i64::MAX] {
            assert_eq!(
                decode(&encode(TimerKind::WallClock, t)),
                Some((TimerKind::WallClock, t))
            );
        }
        assert!(encode(TimerKind::StreamTime, -5) < encode(TimerKind::StreamTime, 3));
        assert!(encode(TimerKind::StreamTime, i64::MAX) < encode(TimerKind::WallClock, i64::MIN));
        assert_eq!(decode(b"short"), None);
    }

    #[test]
    fn due_timers_pop_in_order() {
        let mut s = TimerSet::default();
        assert!(s.insert(TimerKind::StreamTime, 20));
        assert!(s.insert(TimerKind::StreamTime, 10));
        assert!(!s.insert(TimerKind::StreamTime, 10));
        s.insert(TimerKind::WallClock, 5);
        assert_eq!(s.pop_due(TimerKind::StreamTime, 15), Some(10));
        assert_eq!(s.pop_due(TimerKind::StreamTime, 15), None);
        assert_eq!(s.next_wall(), Some(5));
        assert_eq!(s.len(), 2);
    }
}
