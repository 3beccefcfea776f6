"""`gan-bench kernels`: the Triton kernels timed against eager PyTorch and torch.compile
at the GAN layers they are for, on a CUDA GPU; and the fused op's host time against
eager's dispatch, on any machine.

- ``command``: ``run_kernel_benchmarks``, which picks the cases and records each row;
- ``batchnorm``: the fused BatchNorm + LeakyReLU op's cases (DCGAN-64 and MLP shapes,
  launch tunings) and their measurement;
- ``narrow_conv``: the narrow convolutions' cases (DCGAN-64's image layers) and theirs;
- ``host``: the fused op's host time per call, launches stubbed and counted, against
  eager's dispatch-only time (``--host``);
- ``measure``: timing helpers and the device's own rates, knowing no model;
- ``tables``: the tables printed.
"""
