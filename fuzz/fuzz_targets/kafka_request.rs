//! Any bytes off a Kafka connection: framing, then request decoding (header + body for every
//! API and version Weir serves). Must never panic, abort or allocate without bound.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use weir_broker::kafka::{codec, frame};

fuzz_target!(|data: &[u8]| {
    // As one frame body.
    let _ = codec::decode_request(Bytes::copy_from_slice(data));
    // As a stream of frames.
    let mut buf = BytesMut::from(data);
    while let Ok(Some(f)) = frame::decode_frame(&mut buf, 1 << 20) {
        let _ = codec::decode_request(f);
    }
});
