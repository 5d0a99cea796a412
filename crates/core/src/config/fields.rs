//! How the values that are more than a plain type are read, whatever layer
//! they come from: paths (`~` and relative to the file that names them),
//! output formats, sizes with units and speaker counts. Each is named by
//! its field's `deserialize_with`, so a key's type is stated once, on it.

use std::cell::RefCell;
use std::fmt;
use std::path::{Path, PathBuf};

use figment::value::magic::RelativePathBuf;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

use crate::render::OutputFormat;

thread_local! {
    /// The home directory `~` means while a configuration is extracted
    /// (from the environment the load was given, not the process's).
    static HOME: RefCell<Option<PathBuf>> = const { RefCell::new(None) };
}

/// Runs `f` with `home` as what `~` expands to.
pub(super) fn with_home<T>(home: Option<PathBuf>, f: impl FnOnce() -> T) -> T {
    HOME.with(|h| *h.borrow_mut() = home);
    let out = f();
    HOME.with(|h| *h.borrow_mut() = None);
    out
}

fn expand(path: &Path) -> Option<PathBuf> {
    let text = path.to_str()?;
    let rest = text.strip_prefix('~')?;
    if !(rest.is_empty() || rest.starts_with('/')) {
        return None;
    }
    HOME.with(|h| {
        h.borrow()
            .as_ref()
            .map(|home| home.join(rest.trim_start_matches('/')))
    })
}

/// A path: `~/x` under the home directory, a relative path in a file
/// relative to that file (so a config works from any directory), else as
/// given.
pub(super) fn path<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
    let path = RelativePathBuf::deserialize(d)?;
    Ok(expand(path.original()).unwrap_or_else(|| path.relative()))
}

/// [`path`] of an optional value.
pub(super) fn opt_path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    let path = Option::<RelativePathBuf>::deserialize(d)?;
    Ok(path.map(|p| expand(p.original()).unwrap_or_else(|| p.relative())))
}

/// Output formats, in any case, each once, in the order given.
pub(super) fn formats<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<OutputFormat>, D::Error> {
    struct Formats;

    impl<'de> Visitor<'de> for Formats {
        type Value = Vec<OutputFormat>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(FORMATS_EXPECTED)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut formats = Vec::new();
            while let Some(name) = seq.next_element::<String>()? {
                let format = name.parse::<OutputFormat>().map_err(de::Error::custom)?;
                // Listing a format twice would write the same file twice.
                if !formats.contains(&format) {
                    formats.push(format);
                }
            }
            Ok(formats)
        }
    }

    d.deserialize_seq(Formats)
}

/// What [`formats`] takes, as its errors say.
pub(super) const FORMATS_EXPECTED: &str =
    "a list of output formats (txt, srt, vtt, json, tsv, rttm)";
/// What [`bytes`] takes, as its errors say.
pub(super) const BYTES_EXPECTED: &str =
    "a size in bytes (an integer, or a string such as \"512MiB\")";

/// A size: an integer of bytes, or text with a unit (`512MiB`, `2 GB`).
pub(super) fn bytes<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    struct Bytes;

    impl Visitor<'_> for Bytes {
        type Value = u64;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(BYTES_EXPECTED)
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
            Ok(v)
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
            u64::try_from(v).map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
            parse_bytes(v.trim()).ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
        }
    }

    d.deserialize_any(Bytes)
}

/// A speaker count: 0 means none (the clustering decides). Unset by
/// default, so the environment's text reaches it as text.
pub(super) fn speakers<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    struct Count;

    impl<'de> Visitor<'de> for Count {
        type Value = Option<u32>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a non-negative integer")
        }

        fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
            match n {
                0 => Ok(None),
                n => u32::try_from(n)
                    .map(Some)
                    .map_err(|_| E::custom(format!("{n} is too large"))),
            }
        }

        fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
            u64::try_from(n)
                .map_err(|_| E::invalid_value(de::Unexpected::Signed(n), &self))
                .and_then(|n| self.visit_u64(n))
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
            match text.trim().parse::<u64>() {
                Ok(n) => self.visit_u64(n),
                Err(_) => Err(E::invalid_type(de::Unexpected::Str(text), &self)),
            }
        }

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
    }

    d.deserialize_option(Count)
}

/// `1048576`, `512MiB`, `2 GiB`, `1.5GB`; binary and decimal units.
pub(super) fn parse_bytes(text: &str) -> Option<u64> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        "t" | "tb" => 1_000_000_000_000,
        "tib" => 1 << 40,
        _ => return None,
    };
    if let Ok(n) = number.parse::<u64>() {
        return n.checked_mul(multiplier);
    }
    let n: f64 = number.parse().ok()?;
    let bytes = (n * multiplier as f64).round();
    (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}
