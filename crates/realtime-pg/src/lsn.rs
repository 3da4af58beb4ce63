//! WAL positions (`XXX/XXXXXXXX` in SQL).

use std::fmt;

/// A WAL log sequence number: a byte position in the write-ahead log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl Lsn {
    /// `0/0`: "no position"; as a `START_REPLICATION` start it means "where the slot is".
    pub const ZERO: Lsn = Lsn(0);
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xffff_ffff)
    }
}

impl std::str::FromStr for Lsn {
    type Err = ();
    fn from_str(s: &str) -> Result<Lsn, ()> {
        let (hi, lo) = s.split_once('/').ok_or(())?;
        let hi = u64::from_str_radix(hi, 16).map_err(|_| ())?;
        let lo = u64::from_str_radix(lo, 16).map_err(|_| ())?;
        if hi > u32::MAX as u64 || lo > u32::MAX as u64 {
            return Err(());
        }
        Ok(Lsn((hi << 32) | lo))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trip() {
        let lsn: Lsn = "16/B374D848".parse().unwrap();
        assert_eq!(lsn, Lsn(0x16_B374_D848));
        assert_eq!(lsn.to_string(), "16/B374D848");
        assert_eq!(Lsn::ZERO.to_string(), "0/0");
        assert!("16B374D848".parse::<Lsn>().is_err());
        assert!("1/100000000".parse::<Lsn>().is_err());
        assert!("x/1".parse::<Lsn>().is_err());
    }
}
