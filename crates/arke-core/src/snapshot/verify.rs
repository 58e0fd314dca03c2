//! verify-snapshot's checks (filled in below).
