//! The processor's `config` map from its deployment spec, with typed look-ups.

use crate::{Error, Result};
use std::str::FromStr;

/// The `config` of the deployment spec (`{"config": {"field": "amount"}}` or
/// `weir deploy --config field=amount`), in key order.
///
/// ```
/// # use weir_guest::Config;
/// let config = Config::new(vec![("threshold".into(), "100".into())]);
/// let threshold: f64 = config.parse("threshold")?.unwrap_or(0.0);
/// assert_eq!(threshold, 100.0);
/// assert!(config.require("field").is_err());
/// # Ok::<(), weir_guest::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Config {
    entries: Vec<(String, String)>,
}

impl Config {
    pub fn new(entries: Vec<(String, String)>) -> Config {
        Config { entries }
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `key`, or an error naming the missing key.
    pub fn require(&self, key: &str) -> Result<&str> {
        self.get(key)
            .ok_or_else(|| Error::new(format!("config `{key}` is required")))
    }

    /// The value of `key` parsed as `T` (`None` if unset; an error naming the key if it does
    /// not parse).
    pub fn parse<T>(&self, key: &str) -> Result<Option<T>>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|e| Error::new(format!("config `{key}` = {v:?}: {e}"))),
        }
    }

    /// All entries, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}
