//! Host-side library: everything that happens on the developer's machine before a
//! model reaches a board.
//!
//! The path through it: [`data`] reads labelled text → [`tokenizer`] trains a
//! WordPiece vocabulary → [`model`] is the candle attention classifier → [`train`]
//! fits it ([`pipeline`] runs a whole job into a [`checkpoint`]) → [`evaluate`] measures
//! it → [`export`] writes a device bundle (ONNX + tokenizer + manifest) and checks it with
//! the device's own engine. [`soup`] averages fine-tuned checkpoints into one.
//!
//! The modules are layered, each importing only from the layers below it (the table is in
//! docs/architecture.md; tests/tests/architecture.rs fails on an import circle).

pub mod batching;
pub mod calibrate;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod distill;
pub mod embedding_transfer;
pub mod error;
pub mod evaluate;
pub mod export;
pub mod link;
pub mod loss;
pub mod metrics;
pub mod model;
pub mod optim;
pub mod pipeline;
pub mod plot;
pub mod predict;
pub mod preset;
pub mod pretrained;
pub mod quantize;
pub mod rejection;
pub mod soup;
pub mod tokenizer;
pub mod train;

pub use error::{HostError, Result};
