//! Word error rate, for tests and benchmarks.
