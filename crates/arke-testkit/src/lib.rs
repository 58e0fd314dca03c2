//! arke-testkit
