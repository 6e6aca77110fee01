"""Speed, memory and baseline benchmarks, run by `make bench` (their figures are never asserted
by tests)."""
