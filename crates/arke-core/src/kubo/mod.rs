//! kubo (in progress)
