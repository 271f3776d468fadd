//! The replay window a backup keeps for each master: which of the last [`WINDOW`] sequence
//! numbers it has taken. A message is new if its sequence is above every one seen, or inside
//! the window and not seen yet (datagrams may arrive out of order); anything else is a
//! replay. Only a message that decoded whole and authenticated is recorded, so a forged or
//! malformed one cannot move the window.

/// How many sequence numbers behind the highest one a message may be and still be taken.
pub const WINDOW: u64 = 64;

/// The sequence numbers taken from one master.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayWindow {
    /// The highest sequence taken; none before the first message.
    highest: Option<u64>,
    /// Bit `i` is set when `highest - i` was taken.
    seen: u64,
}

impl ReplayWindow {
    /// Whether a message with this sequence would be new.
    pub fn is_new(&self, sequence: u64) -> bool {
        match self.highest {
            None => true,
            Some(highest) if sequence > highest => true,
            Some(highest) => {
                let age = highest - sequence;
                age < WINDOW && self.seen & (1 << age) == 0
            }
        }
    }

    /// Records a message as taken. Call it only for a message that [`is_new`](Self::is_new)
    /// accepted and that decoded whole.
    pub fn record(&mut self, sequence: u64) {
        match self.highest {
            Some(highest) if sequence <= highest => {
                let age = highest - sequence;
                if age < WINDOW {
                    self.seen |= 1 << age;
                }
            }
            Some(highest) => {
                let shift = sequence - highest;
                self.seen = if shift >= WINDOW {
                    0
                } else {
                    self.seen << shift
                };
                self.seen |= 1;
                self.highest = Some(sequence);
            }
            None => {
                self.seen = 1;
                self.highest = Some(sequence);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_late_repeated_and_too_old() {
        let mut window = ReplayWindow::default();
        assert!(window.is_new(1000));
        window.record(1000);
        assert!(!window.is_new(1000), "a repeat");
        assert!(window.is_new(1001));
        // Out of order but inside the window: taken once.
        assert!(window.is_new(990));
        window.record(990);
        assert!(!window.is_new(990));
        // A jump forward keeps what is still inside the window.
        window.record(1010);
        assert!(!window.is_new(1000));
        assert!(!window.is_new(990));
        assert!(window.is_new(1005));
        assert!(window.is_new(1010 - (WINDOW - 1)));
        assert!(!window.is_new(1010 - WINDOW), "older than the window");
        // A jump beyond the window forgets everything before it.
        window.record(1010 + WINDOW + 5);
        assert!(!window.is_new(1010));
        assert!(window.is_new(1010 + WINDOW + 4));
    }

    #[test]
    fn the_ends_of_the_number_range() {
        let mut window = ReplayWindow::default();
        window.record(0);
        assert!(!window.is_new(0));
        window.record(u64::MAX);
        assert!(!window.is_new(u64::MAX));
        assert!(!window.is_new(0));
        assert!(window.is_new(u64::MAX - 1));
    }
}
