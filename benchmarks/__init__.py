"""Speed and memory benchmarks, run by `make bench` (never asserted by tests)."""
