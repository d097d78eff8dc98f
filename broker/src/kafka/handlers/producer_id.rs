//! InitProducerId for idempotent producers: a fresh producer id with epoch 0, or (KIP-360)
//! the same id with the next epoch when the producer asks to bump its own. Transactional ids
//! are refused: transactions are not served yet.

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::Ctx;

pub fn init(ctx: &Arc<Ctx>, req: InitProducerIdRequest, _version: i16) -> InitProducerIdResponse {
    let r = InitProducerIdResponse::default();
    if req
        .transactional_id
        .as_ref()
        .is_some_and(|t| !t.0.is_empty())
    {
        tracing::info!(
            "refusing InitProducerId with a transactional id (transactions are not supported)"
        );
        return r
            .with_error_code(ResponseError::UnsupportedVersion.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
    }
    let (id, epoch) =
        if req.producer_id.0 >= 0 && req.producer_epoch >= 0 && req.producer_epoch < i16::MAX - 1 {
            (req.producer_id.0, req.producer_epoch + 1)
        } else {
            (ctx.producer_ids.allocate(), 0)
        };
    r.with_producer_id(ProducerId(id))
        .with_producer_epoch(epoch)
}
