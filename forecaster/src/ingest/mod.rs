//! Ingestion: OTLP (gRPC and HTTP), Prometheus remote_write, and their translation into
//! [`WriteBatch`]es for the store.
//!
//! Every protocol front end decodes its wire format, translates it into the protocol-neutral types
//! below, and hands the batch to [`crate::store::Store::write`], which validates samples and
//! counts rejections by [`RejectReason`].

pub mod admission;
pub(crate) mod body;
pub mod otlp;
pub mod otlp_grpc;
pub mod otlp_http;
pub mod remote_write;
mod types;

pub use types::*;
