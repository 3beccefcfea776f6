"""What a run measures and records, apart from training itself: the machine and its
environment, the accelerators' peak rates, FLOPs, per-iteration timing, the profiler's
summary, what torch.compile did, and the JSON-lines records."""
