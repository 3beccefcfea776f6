"""Convolutions with few channels on one side ("narrow"), such as a network's first
convolution over image channels and a generator's last one back to them.

- ``kernels``: the ``@triton.jit`` functions;
- ``plan``: the launch tuning and each kernel's tile sizes;
- ``ops``: the ``gan_bench::`` ops, their autograd, ``narrow_conv2d`` and
  ``narrow_conv_transpose2d``;
- ``modules``: drop-in convolution modules, and the pass that swaps them into a model.

The public names are re-exported by ``kernels``; import them from there.
"""
