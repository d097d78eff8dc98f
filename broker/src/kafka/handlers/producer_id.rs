//! InitProducerId for idempotent producers: a fresh producer id with epoch 0, or (KIP-360)
//! the same id with the next epoch when the producer asks to bump its own. Transactional ids
//! are refused: transactions are not served yet. On a cluster fresh ids come from blocks the
//! controller allocates to this node (KIP-730); while none can be had the answer is the
//! retriable `COORDINATOR_LOAD_IN_PROGRESS`, as Kafka's broker answers then.

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::Ctx;
use crate::error::BrokerError;

pub async fn init(
    ctx: &Arc<Ctx>,
    req: InitProducerIdRequest,
    _version: i16,
) -> InitProducerIdResponse {
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
            let cluster = ctx.config.cluster.clone();
            let allocated = ctx
                .producer_ids
                .allocate(|| async move {
                    match cluster {
                        Some(c) => c.allocate_producer_ids().await,
                        None => Err(BrokerError::ClusterUnavailable("no cluster".into())),
                    }
                })
                .await;
            match allocated {
                Ok(id) => (id, 0),
                Err(e) => {
                    tracing::warn!(error = %e, "no producer id block from the controller yet");
                    return r
                        .with_error_code(ResponseError::CoordinatorLoadInProgress.code())
                        .with_producer_id(ProducerId(-1))
                        .with_producer_epoch(-1);
                }
            }
        };
    r.with_producer_id(ProducerId(id))
        .with_producer_epoch(epoch)
}
