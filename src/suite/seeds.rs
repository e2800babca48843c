//! `seeds = [1, 2, 3]` or `seeds = { from = 0, count = 20 }` in a suite
//! file: one value of either shape, read by hand (serde's untagged enums
//! would answer a mistake with "data did not match any variant").

use std::collections::BTreeSet;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::profile::MAX_SEEDS;

/// `seeds = [1, 2, 3]` or `seeds = { from = 0, count = 20 }`.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum SeedsDef {
    /// `[1, 2, 3]`.
    List(Vec<u64>),
    /// `{ from = 0, count = 20 }`.
    Range { from: u64, count: u64 },
}

impl SeedsDef {
    /// The seeds, or why they cannot be.
    pub(super) fn check(&self) -> Result<Vec<u64>, String> {
        match self {
            SeedsDef::List(v) if v.is_empty() => Err("seeds must not be empty".to_string()),
            SeedsDef::List(v) if v.len() as u64 > MAX_SEEDS => {
                Err(format!("at most {MAX_SEEDS} seeds"))
            }
            SeedsDef::List(v) => {
                let distinct: BTreeSet<u64> = v.iter().copied().collect();
                if distinct.len() != v.len() {
                    return Err("seeds must not repeat".to_string());
                }
                Ok(v.clone())
            }
            SeedsDef::Range { count, .. } if *count == 0 || *count > MAX_SEEDS => Err(format!(
                "seeds.count must be between 1 and {MAX_SEEDS}, got {count}"
            )),
            SeedsDef::Range { from, count } => match from.checked_add(*count) {
                Some(end) => Ok((*from..end).collect()),
                None => Err("seeds.from + seeds.count overflows a 64-bit seed".to_string()),
            },
        }
    }
}

impl<'de> Deserialize<'de> for SeedsDef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct SeedsVisitor;
        impl<'de> Visitor<'de> for SeedsVisitor {
            type Value = SeedsDef;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a list of seeds such as [1, 2, 3] or a range such as { from = 0, count = 20 }",
                )
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<SeedsDef, A::Error> {
                let mut v = Vec::new();
                while let Some(s) = seq.next_element::<u64>()? {
                    v.push(s);
                }
                Ok(SeedsDef::List(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SeedsDef, A::Error> {
                let (mut from, mut count) = (None, None);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "from" if from.is_none() => from = Some(map.next_value::<u64>()?),
                        "count" if count.is_none() => count = Some(map.next_value::<u64>()?),
                        "from" | "count" => {
                            return Err(de::Error::custom(format!(
                                "duplicate key `{key}` in seeds"
                            )))
                        }
                        other => return Err(de::Error::unknown_field(other, &["from", "count"])),
                    }
                }
                let count = count.ok_or_else(|| de::Error::missing_field("count"))?;
                Ok(SeedsDef::Range {
                    from: from.unwrap_or(0),
                    count,
                })
            }
        }
        d.deserialize_any(SeedsVisitor)
    }
}
