//! Test support for arke-dr: a real IPFS node speaking the Kubo RPC API ([`node`]), and a
//! generator of production-shaped Arke data ([`generator`]) behind the `generate-test-data` binary.

pub mod bench;
pub mod check;
pub mod generator;
pub mod independent;
pub mod node;
pub mod proxy;
pub mod recorder;
pub mod rng;
pub mod world;
