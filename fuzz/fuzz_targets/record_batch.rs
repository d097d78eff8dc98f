//! Any bytes as a produced RecordBatch: header parsing, CRC and the record walk that gates
//! appends, then decoding (decompression included) of whatever passed. Must never panic.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use weir_broker::batch;

fuzz_target!(|data: &[u8]| {
    let bytes = Bytes::copy_from_slice(data);
    if batch::validate_records(&bytes).is_ok() {
        let _ = batch::decode(bytes);
    }
});
