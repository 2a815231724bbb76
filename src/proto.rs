//! Generated protobuf and gRPC code for package `rotator.v1`.

#![allow(missing_docs, clippy::all, clippy::pedantic)]

tonic::include_proto!("rotator.v1");

/// The encoded descriptor set of every rotator proto file, served by server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("rotator_descriptor");
