//! The memory limit's verdict on a guest growing its linear memory or a table, shared by the
//! `ResourceLimiter`s of processor instances (`imports::HostState`) and of UDF instances
//! (`udf::UdfState`). Growth over the limit is refused, not trapped: a guest may handle a
//! failed allocation; most abort, and the trap that follows is reported with this reason.
//! Knows nothing of what the instance is for.

/// Most elements a table of an instance may grow to.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

/// `Err(reason)` when growing linear memory to `desired` bytes passes `limit`; `who` names
/// the guest in the reason (e.g. "the guest", "the function").
pub(super) fn memory(desired: usize, limit: usize, who: &str) -> Result<(), String> {
    if desired > limit {
        return Err(format!(
            "memory limit exceeded: {who} asked for {desired} bytes of linear memory, the \
             limit is {limit} bytes"
        ));
    }
    Ok(())
}

/// `Err(reason)` when a table would grow to more than [`MAX_TABLE_ELEMENTS`] elements.
pub(super) fn table(desired: usize) -> Result<(), String> {
    if desired > MAX_TABLE_ELEMENTS {
        return Err(format!(
            "memory limit exceeded: a table of {desired} elements (the limit is \
             {MAX_TABLE_ELEMENTS})"
        ));
    }
    Ok(())
}

/// Turns a verdict into what `ResourceLimiter` returns, keeping the reason in `hit`.
pub(super) fn allow(verdict: Result<(), String>, hit: &mut Option<String>) -> bool {
    match verdict {
        Ok(()) => true,
        Err(reason) => {
            *hit = Some(reason);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_past_the_limits_and_says_why() {
        let mut hit = None;
        assert!(allow(memory(64, 64, "the guest"), &mut hit));
        assert!(hit.is_none());
        assert!(!allow(memory(65, 64, "the function"), &mut hit));
        assert_eq!(
            hit.as_deref(),
            Some(
                "memory limit exceeded: the function asked for 65 bytes of linear memory, \
                 the limit is 64 bytes"
            )
        );
        assert!(allow(table(MAX_TABLE_ELEMENTS), &mut None));
        assert!(!allow(table(MAX_TABLE_ELEMENTS + 1), &mut hit));
        assert!(hit.is_some_and(|h| h.contains("a table of 1048577 elements")));
    }
}
