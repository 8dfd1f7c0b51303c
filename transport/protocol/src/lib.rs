//! FaaSCache's wire protocol, without I/O: what the bytes on the wire mean, and nothing about
//! how they travel. The storage engine, the client, the servers, the transport runtime and the
//! fuzz targets share it, so every type that crosses a boundary exists once.
//!
//! Reading order: [`wire`] (the 32-byte header, the one RPC table [`for_each_rpc!`], status
//! codes, the little-endian payload codec) → [`limits`] (the wire contract's sizes) → [`msg`]
//! (one request and one response struct per cluster RPC, and the shared types: [`key_hash`],
//! [`RejectRules`], [`ServerId`], the key and value limits). Byte layouts: `docs/protocol.md`.
//!
//! Decoders check every length against the limits before allocating and return typed errors;
//! nothing here panics on bytes from the network.

#![forbid(unsafe_code)]

pub mod limits;
pub mod msg;
pub mod wire;

pub use msg::{
    check_key, check_value, key_hash, ExactlyOnce, Message, MsgError, RejectRules, ServerId,
    MAX_KEY_LEN, MAX_VALUE_LEN,
};
pub use wire::{Opcode, Status};
