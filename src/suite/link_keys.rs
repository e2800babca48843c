//! Reading a suite table's impairment keys into an [`ImpairmentSpec`],
//! with the position of every value.
//!
//! A profile's table holds its own keys (`name`, `len`, ...) and, beside
//! them, the keys of [`ImpairmentSpec`] (`loss`, `delay_ms`, ...), which
//! apply to both directions; `to_client = { ... }` holds nothing but
//! those. `#[serde(flatten)]` would read the spec, but through a buffer
//! that loses every position (so a semantic error could not name its line)
//! and cannot refuse an unknown key. [`WithLink`] reads the table in one
//! pass instead: each impairment key goes to the spec, with its value's
//! position, every other key to `T`'s own derived reader, and a key that
//! neither reads is an error at that key, worded as serde words it.

use std::fmt;
use std::ops::Range;
use std::sync::OnceLock;

use risp_netem::ImpairmentSpec;
use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

/// The impairment keys of one table and where each value was written.
#[derive(Debug, Default, Clone)]
pub(super) struct LinkKeys {
    /// The values.
    pub(super) spec: ImpairmentSpec,
    /// The position of each key's value.
    spans: Vec<(&'static str, Range<usize>)>,
}

impl LinkKeys {
    /// Builds the spec from the values read, with serde's own reader of
    /// [`ImpairmentSpec`].
    fn read<E: de::Error>(values: Vec<(&'static str, Spanned<f64>)>) -> Result<LinkKeys, E> {
        let table: toml::Table = values
            .iter()
            .map(|(key, v)| (key.to_string(), toml::Value::Float(*v.get_ref())))
            .collect();
        let spec = ImpairmentSpec::deserialize(toml::Value::Table(table))
            .map_err(|e| E::custom(e.message()))?;
        let spans = values.into_iter().map(|(k, v)| (k, v.span())).collect();
        Ok(LinkKeys { spec, spans })
    }

    /// Where the value of `key` was written, if the table has it.
    pub(super) fn span(&self, key: &str) -> Option<Range<usize>> {
        self.spans
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, span)| span.clone())
    }

    /// `value` (the spec's field `key`) where it was written, for the
    /// checks that point at it.
    pub(super) fn at(&self, key: &str, value: Option<f64>) -> Option<Spanned<f64>> {
        value.map(|v| Spanned::new(self.span(key).unwrap_or_default(), v))
    }

    /// `self`, with the keys it leaves unset taken from `base` (one
    /// direction's keys over those of both), positions included.
    pub(super) fn or(self, base: &LinkKeys) -> LinkKeys {
        let mut spans = self.spans;
        for (key, span) in &base.spans {
            if !spans.iter().any(|(k, _)| k == key) {
                spans.push((key, span.clone()));
            }
        }
        LinkKeys {
            spec: self.spec.or(&base.spec),
            spans,
        }
    }
}

/// A table holding `T`'s keys and the impairment keys side by side.
#[derive(Debug)]
pub(super) struct WithLink<T> {
    /// What `T` read.
    pub(super) table: T,
    /// The impairment keys.
    pub(super) link: LinkKeys,
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for WithLink<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut values = Vec::new();
        let table = T::deserialize(Split {
            inner: d,
            values: &mut values,
        })?;
        let link = LinkKeys::read(values)?;
        Ok(WithLink { table, link })
    }
}

/// The keys serde reads into an [`ImpairmentSpec`], in field order (asked
/// of the derived reader itself, so they cannot drift from it).
fn spec_keys() -> &'static [&'static str] {
    static KEYS: OnceLock<&'static [&'static str]> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut probe = FieldsProbe(&[]);
        // The probe always fails, once it has the names.
        let _ = ImpairmentSpec::deserialize(&mut probe);
        probe.0
    })
}

/// A deserializer that only notes the field names a struct asks for.
struct FieldsProbe(&'static [&'static str]);

impl<'de> Deserializer<'de> for &mut FieldsProbe {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("only a struct's field names are probed"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0 = fields;
        Err(de::Error::custom("probed"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

/// The deserializer `T` reads from: the table, less its impairment keys.
struct Split<'a, D> {
    inner: D,
    values: &'a mut Vec<(&'static str, Spanned<f64>)>,
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Split<'_, D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.inner.deserialize_any(visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner.deserialize_map(SplitVisitor {
            visitor,
            fields,
            values: self.values,
        })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

/// `T`'s visitor, handed a map that keeps the impairment keys back.
struct SplitVisitor<'a, V> {
    visitor: V,
    /// `T`'s own keys.
    fields: &'static [&'static str],
    values: &'a mut Vec<(&'static str, Spanned<f64>)>,
}

impl<'de, V: Visitor<'de>> Visitor<'de> for SplitVisitor<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.visitor.expecting(f)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_map(SplitMap {
            map,
            fields: self.fields,
            values: self.values,
        })
    }
}

/// The table's entries as `T` sees them: its own keys only.
struct SplitMap<'a, A> {
    map: A,
    fields: &'static [&'static str],
    values: &'a mut Vec<(&'static str, Spanned<f64>)>,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for SplitMap<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let mut seed = Some(seed);
        loop {
            let key = KeySeed {
                seed: &mut seed,
                fields: self.fields,
            };
            match self.map.next_key_seed(key)? {
                None => return Ok(None),
                Some(Key::Own(k)) => return Ok(Some(k)),
                Some(Key::Link(name)) => {
                    let value = self.map.next_value::<Spanned<f64>>()?;
                    self.values.push((name, value));
                }
            }
        }
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        self.map.next_value_seed(seed)
    }
}

/// A key, sorted: `T`'s (as `T`'s key reader made it) or an impairment key.
enum Key<K> {
    Own(K),
    Link(&'static str),
}

/// Reads one key and sorts it. `T`'s key reader is used (taken) only for
/// `T`'s own keys, so it is still there for the next key after an
/// impairment key.
struct KeySeed<'s, K> {
    seed: &'s mut Option<K>,
    fields: &'static [&'static str],
}

impl<'de, K: DeserializeSeed<'de>> DeserializeSeed<'de> for KeySeed<'_, K> {
    type Value = Key<K::Value>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de, K: DeserializeSeed<'de>> Visitor<'de> for KeySeed<'_, K> {
    type Value = Key<K::Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        if let Some(&name) = spec_keys().iter().find(|k| **k == key) {
            return Ok(Key::Link(name));
        }
        if !self.fields.contains(&key) {
            // Serde's wording (`de::Error::unknown_field`), with both sets
            // of keys; there are always more than two.
            let known: Vec<String> = self
                .fields
                .iter()
                .chain(spec_keys())
                .map(|k| format!("`{k}`"))
                .collect();
            return Err(E::custom(format_args!(
                "unknown field `{key}`, expected one of {}",
                known.join(", ")
            )));
        }
        let seed = self
            .seed
            .take()
            .ok_or_else(|| E::custom("a table key was read twice"))?;
        seed.deserialize(IntoDeserializer::<E>::into_deserializer(key))
            .map(Key::Own)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Table {
        name: Spanned<String>,
        #[serde(default)]
        count: u32,
    }

    fn read(text: &str) -> Result<WithLink<Table>, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn each_key_goes_where_it_belongs_with_its_position() {
        let text = "name = \"a\"\nloss = 0.1\ncount = 3\ndelay_ms = 2\n";
        let t = read(text).unwrap();
        assert_eq!(t.table.name.get_ref(), "a");
        assert_eq!(t.table.count, 3);
        assert_eq!(t.link.spec.loss, Some(0.1));
        assert_eq!(t.link.spec.delay_ms, Some(2.0));
        assert_eq!(&text[t.link.span("loss").unwrap()], "0.1");
        assert_eq!(&text[t.link.span("delay_ms").unwrap()], "2");
        assert_eq!(t.link.span("burst"), None);
    }

    #[test]
    fn the_keys_are_the_specs_file_keys() {
        assert_eq!(
            spec_keys(),
            [
                "loss",
                "burst",
                "reorder",
                "reorder_gap_ms",
                "duplicate",
                "corrupt",
                "delay_ms",
                "jitter_ms"
            ]
        );
    }

    #[test]
    fn unknown_and_mistyped_keys_are_refused_where_they_stand() {
        let text = "name = \"a\"\nlos = 0.1\n";
        let e = read(text).unwrap_err();
        assert_eq!(&text[e.span().unwrap()], "los");
        assert!(
            e.message()
                .starts_with("unknown field `los`, expected one of `name`, `count`, `loss`"),
            "{e}"
        );
        // Flags relative to one end are no file keys.
        for key in ["loss_in", "loss_out", "netem_seed"] {
            let e = read(&format!("name = \"a\"\n{key} = 1\n")).unwrap_err();
            assert!(
                e.message().starts_with(&format!("unknown field `{key}`")),
                "{e}"
            );
        }
        let text = "name = \"a\"\nloss = \"x\"\n";
        let e = read(text).unwrap_err();
        assert_eq!(&text[e.span().unwrap()], "\"x\"");
        assert!(e.message().contains("expected f64"), "{e}");
        let e = read("name = 3\n").unwrap_err();
        assert!(e.message().contains("expected a string"), "{e}");
        let e = read("loss = 0.1\n").unwrap_err();
        assert!(e.message().contains("missing field `name`"), "{e}");
    }

    #[test]
    fn one_direction_overrides_both_with_its_positions() {
        let text = "name = \"a\"\nloss = 0.1\ndelay_ms = 4\n";
        let both = read(text).unwrap().link;
        let one_text = "name = \"b\"\nloss = 0.3\n";
        let one = read(one_text).unwrap().link;
        let merged = one.or(&both);
        assert_eq!(
            (merged.spec.loss, merged.spec.delay_ms),
            (Some(0.3), Some(4.0))
        );
        assert_eq!(&one_text[merged.span("loss").unwrap()], "0.3");
        assert_eq!(&text[merged.span("delay_ms").unwrap()], "4");
    }
}
