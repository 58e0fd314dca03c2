//! arke-dr
