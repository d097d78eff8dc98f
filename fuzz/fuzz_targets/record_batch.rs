//! Any bytes as a produced RecordBatch: header parsing, CRC and the record walk that gates
//! appends, then decoding (decompression included) of whatever passed. Then the same bytes
//! with their CRC made right, so that the record walk and the decoders see what a fuzzer
//! would otherwise rarely get past the CRC with. Must never panic.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use weir_broker::batch;

/// Where the CRC sits in a batch header, and where the bytes it covers start.
const CRC_AT: usize = 17;
const CRC_COVERS: usize = 21;

fuzz_target!(|data: &[u8]| {
    let bytes = Bytes::copy_from_slice(data);
    if batch::validate_records(&bytes).is_ok() {
        let _ = batch::decode(bytes);
    }
    if data.len() >= batch::HEADER_LEN {
        let mut fixed = data.to_vec();
        let crc = crc32c::crc32c(&fixed[CRC_COVERS..]);
        fixed[CRC_AT..CRC_COVERS].copy_from_slice(&crc.to_be_bytes());
        let fixed = Bytes::from(fixed);
        let _ = batch::validate_records(&fixed);
        let _ = batch::decode(fixed);
    }
});
