"""The fused BatchNorm + LeakyReLU op (ReLU is slope 0), forward and backward.

- ``kernels``: the ``@triton.jit`` functions;
- ``plan``: host-side launch planning (the input's channel view, tiles, the split);
- ``calls``: what a kind of call launches (grids, constexprs, scalar arguments), worked out
  once and kept for eager calls of that kind;
- ``ops``: the ``gan_bench::`` ops, their launches and autograd, ``batch_norm_leaky_relu``;
- ``arguments``: validation of the op's arguments, shared with ``sync``;
- ``sync``: the cross-process variant (SyncBatchNorm semantics);
- ``modules``: drop-in BatchNorm modules; ``fuse``: the pass that swaps them into a model;
- ``reference``: the eager reference.

The public names are re-exported by ``kernels``; import them from there.
"""
