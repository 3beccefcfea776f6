"""gan-bench's harness: configuration, distributed setup, training loop, timing, records, CLI."""
