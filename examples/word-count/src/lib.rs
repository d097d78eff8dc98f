//! `word-count`: exact counts of words across all partitions.
//!
//! A record from an input topic is split on whitespace; each word goes, keyed by the word,
//! to the `repartition` output with the number of times it occurs in this batch. The engine
//! routes it by key to the task that owns the word, which adds it to the word's count in the
//! store `counts` (the count as a decimal string) and emits `word -> count` to the default
//! output. Every occurrence of a word is therefore counted by one task, whatever partition
//! it arrived on.

use std::collections::HashMap;
use weir_guest::{Batch, Config, Context, Emit, Error, Processor, REPARTITION, Result, Store};

struct WordCount {
    counts: Store,
}

impl Processor for WordCount {
    fn init(_ctx: &mut Context, _config: &Config) -> Result<Self> {
        Ok(WordCount {
            counts: Store::open("counts")?,
        })
    }

    fn process(&mut self, ctx: &mut Context, batch: &Batch<'_>) -> Result<()> {
        // Words of this batch's input records, counted before they are re-keyed.
        let mut words: HashMap<&str, u64> = HashMap::new();
        let mut order: Vec<&str> = Vec::new();
        for record in batch {
            if record.is_repartitioned() {
                let Some(word) = record.key() else { continue };
                let add: u64 = match record.value_str().map(str::parse) {
                    Some(Ok(n)) => n,
                    _ => return Err(Error::new("repartitioned record without a count")),
                };
                let n = match self.counts.get_string(word)? {
                    Some(s) => s.parse::<u64>().map_err(|e| Error::new(e.to_string()))?,
                    None => 0,
                } + add;
                let n = n.to_string();
                self.counts.put(word, &n)?;
                ctx.emit(Emit::new().key(word).value(&n))?;
            } else {
                let Some(text) = record.value_str() else {
                    continue;
                };
                for word in text.split_whitespace() {
                    let count = words.entry(word).or_insert(0);
                    if *count == 0 {
                        order.push(word);
                    }
                    *count += 1;
                }
            }
        }
        for word in order {
            let n = words[word].to_string();
            ctx.emit(Emit::to(REPARTITION).key(word).value(&n))?;
        }
        Ok(())
    }
}

weir_guest::export_processor!(WordCount);
