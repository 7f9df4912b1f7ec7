//! Money as integer micro-dollars: exact sums, no floats. Parsed from and written as decimal strings
//! (`"5.00"`), the way budgets appear in the admin API and config.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An amount in millionths of a US dollar.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Usd(pub i64);

pub const MICROS: i64 = 1_000_000;

impl Usd {
    pub fn micros(self) -> i64 {
        self.0
    }

    /// Parses `"12"`, `"12.5"`, `"0.000001"`; at most 6 decimals, non-negative.
    pub fn parse(s: &str) -> Result<Usd, String> {
        let s = s.trim();
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        if !digits(int) || (!frac.is_empty() && !digits(frac)) || frac.len() > 6 || s.ends_with('.') {
            return Err(format!(
                "`{s}` is not a non-negative decimal amount with at most 6 decimals"
            ));
        }
        let whole: i64 = int.parse().map_err(|_| format!("`{s}` is too large"))?;
        let mut f = frac.to_string();
        while f.len() < 6 {
            f.push('0');
        }
        let part: i64 = f.parse().unwrap_or(0);
        whole
            .checked_mul(MICROS)
            .and_then(|w| w.checked_add(part))
            .map(Usd)
            .ok_or_else(|| format!("`{s}` is too large"))
    }
}

impl fmt::Display for Usd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let frac = format!("{:06}", abs % MICROS as u64);
        let frac = frac.trim_end_matches('0');
        let frac = if frac.len() < 2 {
            format!("{frac:0<2}")
        } else {
            frac.to_string()
        };
        write!(f, "{sign}{}.{frac}", abs / MICROS as u64)
    }
}

impl Serialize for Usd {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Usd {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Usd, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            S(String),
            I(u64),
        }
        match Raw::deserialize(d)? {
            Raw::S(s) => Usd::parse(&s).map_err(serde::de::Error::custom),
            Raw::I(i) => Usd::parse(&i.to_string()).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_exactly() {
        assert_eq!(Usd::parse("5.00").unwrap(), Usd(5_000_000));
        assert_eq!(Usd::parse("0.000001").unwrap(), Usd(1));
        assert_eq!(Usd::parse("12").unwrap().to_string(), "12.00");
        assert_eq!(Usd(1_234_500).to_string(), "1.2345");
        assert_eq!(Usd(-500_000).to_string(), "-0.50");
        for bad in ["", "-1", "1.", ".5", "1.0000001", "abc", "1e3"] {
            assert!(Usd::parse(bad).is_err(), "{bad}");
        }
        let v: Usd = serde_json::from_str("\"0.10\"").unwrap();
        assert_eq!(v, Usd(100_000));
    }
}
