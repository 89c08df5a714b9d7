//! Benchmarks, load generation and accuracy runs for Presage.
