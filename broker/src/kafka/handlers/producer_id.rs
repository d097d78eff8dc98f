//! InitProducerId for idempotent producers: a fresh producer id with epoch 0, or (KIP-360)
//! the same id with the next epoch when the producer asks to bump its own. With a
//! transactional id the transaction coordinator answers ([`crate::txn`]: a new id, or the
//! id's next epoch, fencing the previous producer). On a cluster transactional ids are
//! refused with `TRANSACTIONAL_ID_AUTHORIZATION_FAILED` (fatal for clients, not retried:
//! transactions are served on a single node only), and fresh ids come from blocks the
//! controller allocates to this node (KIP-730); while none can be had the answer is the
//! retriable `COORDINATOR_LOAD_IN_PROGRESS`, as Kafka's broker answers then.

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::{Ctx, blocking};
use crate::error::BrokerError;

pub async fn init(
    ctx: &Arc<Ctx>,
    req: InitProducerIdRequest,
    version: i16,
) -> InitProducerIdResponse {
    let r = InitProducerIdResponse::default();
    if req
        .transactional_id
        .as_ref()
        .is_some_and(|t| !t.0.is_empty())
    {
        return transactional(ctx, req, version).await;
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

async fn transactional(
    ctx: &Arc<Ctx>,
    req: InitProducerIdRequest,
    version: i16,
) -> InitProducerIdResponse {
    let r = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let Some(txn) = ctx.txn.clone() else {
        tracing::info!(
            "refusing InitProducerId with a transactional id: transactions are served on a \
             single node only"
        );
        return r.with_error_code(super::txn::NOT_SERVED);
    };
    let id = req
        .transactional_id
        .as_ref()
        .map(|t| t.0.to_string())
        .unwrap_or_default();
    let expected = (req.producer_id.0 >= 0).then_some((req.producer_id.0, req.producer_epoch));
    let ids = ctx.producer_ids.clone();
    let timeout = req.transaction_timeout_ms;
    let id2 = id.clone();
    let result =
        blocking(move || txn.init(&id2, timeout, expected, &|| ids.allocate_local())).await;
    match result {
        Ok(Ok((pid, epoch))) => {
            tracing::debug!(transactional_id = %id, producer_id = pid, epoch, "transactional producer initialised");
            r.with_producer_id(ProducerId(pid))
                .with_producer_epoch(epoch)
        }
        Ok(Err(e)) => {
            tracing::info!(transactional_id = %id, error = %e, "InitProducerId refused");
            r.with_error_code(super::txn::txn_error_code(&e, version, 4))
        }
        Err(e) => {
            tracing::warn!(error = %e, "InitProducerId task failed");
            r.with_error_code(ResponseError::CoordinatorNotAvailable.code())
        }
    }
}
