"""What DDP sends in a training iteration: its gradient all-reduces, counted.

Each DDP module (G as the step calls it, D's objective) gets a communication hook,
`AllreduceCounter.hook`, which notes the bucket it is handed (its index, bytes, dtype) and
then calls DDP's default all-reduce (`default_hooks.allreduce_hook`: divide by the world
size, sum over ranks), so the gradients and their timing are those of a DDP without the
hook but for a Python call per bucket.

`Communication` holds both counters and the iteration boundaries: the step the training
loop calls is wrapped (`counting`), and an iteration counts when Python ran the hooks in
it. That leaves out the replays of a CUDA graph (the hooks ran once, at the capture) and
keeps torch.compile's iterations (dynamo's DDPOptimizer keeps DDP's reducer, which calls
the hooks). The first such iteration is left out too, unless it is the only one: DDP
lays out its buckets afresh after the first backward, in the order gradients became ready.
The summary sets the counts against the arithmetic: the parameters that receive
gradients in each update of a network × its updates per iteration × the gradient size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

NETWORKS = ("generator", "discriminator")


@dataclass
class _Tally:
    """All-reduces seen: calls, bytes, and the bytes of each bucket of the last update."""

    calls: int = 0
    bytes: int = 0
    buckets: dict[int, int] = field(default_factory=dict)

    def add(self, other: _Tally) -> None:
        self.calls += other.calls
        self.bytes += other.bytes
        self.buckets = dict(other.buckets)


class AllreduceCounter:
    """One DDP module's communication hook: counts each bucket, then all-reduces it as DDP
    does by default. `process_group`: the group to reduce over (None: the default one)."""

    def __init__(self, process_group=None):
        self.process_group = process_group
        self.dtypes: set[str] = set()
        self.iteration = _Tally()  # since the last `take`

    def install(self, ddp_module) -> None:
        ddp_module.register_comm_hook(self.process_group, self.hook)

    # No annotations: DDP compares the parameters' annotations with its own classes, and
    # this module's postponed annotations would be strings.
    def hook(self, state, bucket):
        """DDP calls this for each bucket of gradients once they are all ready."""
        buffer = bucket.buffer()
        size = buffer.numel() * buffer.element_size()
        if bucket.index() == 0:  # buckets are reduced in index order: an update starts
            self.iteration.buckets = {}
        self.iteration.calls += 1
        self.iteration.bytes += size
        self.iteration.buckets[bucket.index()] = size
        self.dtypes.add(str(buffer.dtype).removeprefix("torch."))
        return allreduce_hook(state, bucket)

    def take(self) -> _Tally:
        """What was counted since the last call, and a fresh count."""
        taken, self.iteration = self.iteration, _Tally()
        taken.buckets = dict(taken.buckets) if taken.calls else {}
        return taken


def gradient_bytes(network: nn.Module) -> int:
    """Bytes of the gradients one backward gives `network`'s trainable parameters."""
    return sum(p.numel() * p.element_size() for p in network.parameters() if p.requires_grad)


class Communication:
    """The all-reduces of both networks' DDP modules, per training iteration."""

    def __init__(self, backend: str, world_size: int, process_group=None):
        self.backend = backend
        self.world_size = world_size
        self.counters = {name: AllreduceCounter(process_group) for name in NETWORKS}
        self.first: dict[str, _Tally] | None = None
        self.totals = {name: _Tally() for name in NETWORKS}
        self.counted_iterations = 0

    def install(self, network: str, ddp_module) -> None:
        self.counters[network].install(ddp_module)

    def end_iteration(self) -> None:
        """Close one training iteration: it counts when the hooks ran in it."""
        taken = {name: counter.take() for name, counter in self.counters.items()}
        if not any(t.calls for t in taken.values()):
            return  # a replayed graph: no Python ran
        if self.first is None:
            self.first = taken
            return
        for name, tally in taken.items():
            self.totals[name].add(tally)
        self.counted_iterations += 1

    def counting(self, step: Callable) -> Callable:
        """`step`, each call closing one iteration of the count."""

        def counted(real_batches):
            try:
                return step(real_batches)
            finally:
                self.end_iteration()

        return counted

    def summary(
        self,
        networks: dict[str, nn.Module],
        updates: dict[str, int],
        real_images_per_iteration: int,
    ) -> dict | None:
        """The record's `metrics.communication`, or None when no iteration ran the hooks.
        `networks`: the trained networks by name; `updates`: each one's updates per
        iteration (D's n_critic, G's one)."""
        totals, iterations = self.totals, self.counted_iterations
        if iterations == 0:
            if self.first is None:
                return None
            totals, iterations = self.first, 1
        dtypes = set().union(*(c.dtypes for c in self.counters.values()))
        out: dict = {
            "backend": self.backend,
            "world_size": self.world_size,
            "gradient_dtype": ", ".join(sorted(dtypes)),
            "counted_iterations": iterations,
        }
        calls = sent = 0
        for name in NETWORKS:
            tally = totals[name]
            bytes_per_iteration = tally.bytes // iterations
            out[name] = {
                "allreduce_calls_per_iteration": tally.calls / iterations,
                "allreduce_bytes_per_iteration": bytes_per_iteration,
                "buckets": len(tally.buckets),
                "bucket_bytes": [tally.buckets[i] for i in sorted(tally.buckets)],
                "expected_bytes_per_iteration": gradient_bytes(networks[name]) * updates[name],
            }
            calls += tally.calls
            sent += bytes_per_iteration
        out["allreduce_calls_per_iteration"] = calls / iterations
        out["allreduce_bytes_per_iteration"] = sent
        out["bytes_per_image"] = sent / real_images_per_iteration
        return out
