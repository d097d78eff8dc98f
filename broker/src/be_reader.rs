//! A bounds-checked reader of big-endian fields (Kafka's internal-topic key and value
//! layouts: `__consumer_offsets`, `__transaction_state`). It owns only the parsing of
//! fixed-width integers, `i16`-length strings and counts; what the fields mean is its
//! callers'. Every method answers `None` when the input is too short, never panics.

/// Reads fields off the front of a byte slice.
pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    pub(crate) fn i8(&mut self) -> Option<i8> {
        self.take(1).map(|b| b[0] as i8)
    }
    pub(crate) fn i16(&mut self) -> Option<i16> {
        self.take(2).map(|b| i16::from_be_bytes([b[0], b[1]]))
    }
    pub(crate) fn i32(&mut self) -> Option<i32> {
        self.take(4)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub(crate) fn i64(&mut self) -> Option<i64> {
        self.take(8).map(|b| {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            i64::from_be_bytes(a)
        })
    }
    /// An `i16`-length string; a negative length is null (`Some(None)`).
    pub(crate) fn opt_str(&mut self) -> Option<Option<String>> {
        let n = self.i16()?;
        if n < 0 {
            return Some(None);
        }
        let b = self.take(n as usize)?;
        Some(Some(String::from_utf8_lossy(b).into_owned()))
    }
    /// An `i16`-length string that must not be null.
    pub(crate) fn str(&mut self) -> Option<String> {
        self.opt_str()?
    }
    /// An array count, which must fit in what is left (each element takes a byte or more).
    pub(crate) fn count(&mut self) -> Option<usize> {
        let n = usize::try_from(self.i32()?).ok()?;
        (n <= self.0.len()).then_some(n)
    }
}

#[cfg(test)]
mod tests {
    use super::Reader;

    #[test]
    fn fields_are_read_in_order_and_short_input_is_none() {
        let bytes = [0u8, 2, b'h', b'i', 0xff, 0xff, 0, 0, 0, 1, 7];
        let mut r = Reader(&bytes);
        assert_eq!(r.str().as_deref(), Some("hi"));
        assert_eq!(r.opt_str(), Some(None));
        assert_eq!(r.count(), Some(1));
        assert_eq!(r.i8(), Some(7));
        assert_eq!(r.i8(), None);
        assert_eq!(Reader(&[0, 5, b'a']).str(), None);
        assert_eq!(Reader(&[0, 0, 0, 9, 1]).count(), None, "more than is left");
    }
}
