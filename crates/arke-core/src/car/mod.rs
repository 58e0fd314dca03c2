//! car (in progress)
