//! ipld (in progress)
