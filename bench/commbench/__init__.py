"""`gan-bench allreduce`: the bus bandwidth of the processes' fabric at the sizes the GANs'
gradient buckets all-reduce, measured as nccl-tests measures it.

- ``spec``: one measurement's options (``AllReduceSpec``), validated once, and the argv
  that starts its worker (``worker_argv``) for any launcher;
- ``worker``: ``python -m bench.commbench.worker``, run in every process under torchrun;
- ``bandwidth``: the arithmetic (algorithm and bus bandwidth, the time at a size between
  measured ones, the all-reduce time a run's buckets imply), knowing no process group;
- ``command``: ``allreduce_command``, which starts torchrun here (or submits a SLURM job of
  the workers) and prints the table.
"""
