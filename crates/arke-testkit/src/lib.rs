//! Test support for arke-dr: a real IPFS node speaking the Kubo RPC API ([`node`]), a real
//! S3-compatible server ([`s3`]) with a fault proxy for it ([`s3proxy`]), a generator of
//! production-shaped Arke data ([`generator`]), and a real headless browser ([`browser`]). The
//! binaries over them (`generate-test-data`, `bench-*`) are in the arke-bench crate, so this
//! crate does not depend on arke-dr (whose tests depend on this one).

pub mod browser;
pub mod check;
pub mod generator;
pub mod independent;
pub mod node;
pub mod proxy;
pub mod receiver;
pub mod recorder;
pub mod rng;
pub mod s3;
pub mod s3proxy;
pub mod world;
