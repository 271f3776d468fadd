//! A MAC address.

use std::fmt;

use serde::Serialize;

/// A MAC address that prints and serializes as `aa:bb:cc:dd:ee:ff`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_and_serializes_in_lower_case_hex_with_colons() {
        let mac = MacAddr([0x02, 0xab, 0, 1, 0x10, 0xff]);
        assert_eq!(mac.to_string(), "02:ab:00:01:10:ff");
        assert_eq!(
            serde_json::to_string(&mac).expect("serializes"),
            "\"02:ab:00:01:10:ff\""
        );
    }
}
