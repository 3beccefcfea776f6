"""Triton kernels for BatchNorm followed by LeakyReLU (ReLU is slope 0), forward and backward.

Every kernel sees its input as a 3-D view ``(N', C, S')`` with element strides
``(sn, sc, ss)``, prepared on the host by ``plan.channel_view``, and walks it in
``[BLOCK_C, BLOCK_N * BLOCK_S]`` tiles: ``BLOCK_C`` channels by ``BLOCK_N`` batch items
of ``BLOCK_S`` positions. ``BLOCK_N`` is 1 unless a whole plane is shorter than a tile's
row (NCHW at 4x4 or 8x8), where a tile spans several batch items so that it still
holds enough elements. A tile is contiguous along S when ``ss == 1`` (NCHW) and along C
when ``sc == 1`` (channels_last, ``(N, C)``): Triton specialises integer arguments
equal to 1, so the compiler sees which axis is contiguous and vectorises the loads
along it. The tile index space is ``t in [0, cdiv(N', BLOCK_N) * n_tiles_s)`` with
``n_tiles_s = cdiv(S', BLOCK_S)``, ``n0 = (t // n_tiles_s) * BLOCK_N`` and
``s0 = (t % n_tiles_s) * BLOCK_S``.

All arithmetic is in fp32 (fp64 when the input is fp64, ``FP64=True``), whatever the
storage dtype; stores cast to the destination's dtype.

Per-channel statistics buffer ``stats``, shape ``[6, C]`` in the accumulation dtype,
written by the forward and read by the backward (rows):

    0 shift   K: the channel's first element x[0, c, 0] (training), 0 (eval)
    1 mean    batch mean - K (training), running_mean (eval)
    2 rstd    1 / sqrt(var + eps)
    3 scale   weight * rstd (weight = 1 without affine)
    4 bias    bias (0 without affine)
    5 count   elements per channel, n = N * H * W

The pre-activation is ``z = ((x - K) - mean) * scale + bias``. Keeping K apart from the
small shifted mean (rather than ``x * scale + (bias - mean * scale)``, or even ``x -
mean`` with the mean rounded to fp32) keeps every digit when ``|mean| >> std``: with a
mean of 1e4 an fp32 mean is off by up to 5e-4, which is 5% of a std of 1e-2, while
``x - K`` is exact. The cost is two subtractions in a memory-bound kernel. The backward
recomputes ``z`` with the same expression, so its mask ``z > 0`` is the forward's bit
for bit. ``z > 0`` is the mask eager uses too: ``leaky_relu_backward``
takes ``grad * negative_slope`` at exactly 0, and ReLU's threshold backward gives 0.

Reductions are deterministic: each program reduces a fixed, contiguous range of tiles
and writes its own partial row; partial rows are merged in a fixed order by a separate
kernel. There are no float atomics.

Variance: the values are shifted by a per-channel ``K`` (the channel's first element,
``x[0, c, 0]``); each lane of a tile folds its values in with Welford's update (Welford
1962), and lanes, then programs, are merged with Chan et al.'s parallel formula (Chan,
Golub & LeVeque 1979, "Updating formulae and a pairwise algorithm for computing sample
variances"). ``x - K`` is exact in floating point when ``x`` and ``K`` are within a
factor of 2 (Sterbenz), so a large mean with a small spread (say 1e4 +- 1) keeps its
digits, where ``E[x^2] - E[x]^2`` in fp32 would lose them all.

These kernels know nothing about GANs or modules; ``kernels/batchnorm/ops.py`` launches them.
"""

import triton
import triton.language as tl

# ---------------------------------------------------------------------------------------
# Helpers (inlined into the kernels by the Triton compiler)
# ---------------------------------------------------------------------------------------


@triton.jit
def _tile_offsets(
    t, n_tiles_s, c0, C, N, S, sn, sc, ss,
    BLOCK_C: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_S: tl.constexpr,
):  # fmt: skip
    """Offsets (int64 start + int32 in-tile) and mask of tile ``t`` for channels ``c0...``.

    The tile is ``[BLOCK_C, BLOCK_N * BLOCK_S]``: ``BLOCK_N`` batch items of ``BLOCK_S``
    positions each, batch-major along the second axis. The start is int64 so that
    tensors beyond 2**31 elements address correctly; the in-tile offsets stay int32 (a
    tile spans at most ``BLOCK_C * sc + BLOCK_N * sn + BLOCK_S * ss``, which the plan
    keeps below 2**31).
    """
    g = t // n_tiles_s
    n0 = g * BLOCK_N
    s0 = (t - g * n_tiles_s) * BLOCK_S
    rc = tl.arange(0, BLOCK_C)
    if BLOCK_N == 1:
        rs = tl.arange(0, BLOCK_S)
        row_mask = (s0 + rs) < S
        row_offs = rs * ss
    else:
        # BLOCK_S is a power of two: // and % are a shift and a mask, and the compiler
        # still sees runs of BLOCK_S contiguous elements when ss == 1.
        rr = tl.arange(0, BLOCK_N * BLOCK_S)
        rn = rr // BLOCK_S
        rs = rr % BLOCK_S
        row_mask = ((s0 + rs) < S) & ((n0 + rn) < N)
        row_offs = rn * sn + rs * ss
    mask = ((c0 + rc) < C)[:, None] & row_mask[None, :]
    start = tl.cast(n0, tl.int64) * sn + tl.cast(s0, tl.int64) * ss + tl.cast(c0, tl.int64) * sc
    offs = rc[:, None] * sc + row_offs[None, :]
    return start, offs, mask


@triton.jit
def _stats_over_tiles(
    x_ptr, shift, t0, t1, n_tiles_s, c0, C, N, S, sn, sc, ss,
    BLOCK_C: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_S: tl.constexpr, FP64: tl.constexpr,
    NUM_STAGES: tl.constexpr, EVEN: tl.constexpr,
):  # fmt: skip
    """Per-channel (count, mean - shift, M2) of tiles ``[t0, t1)``.

    Welford's update runs per lane (element position of the tile: each keeps the count,
    mean and M2 of the values it saw, one per tile), and Chan's merge combines a
    channel's lanes once, after the loop, all lanes in one step as plain sums (a
    custom-combine ``tl.reduce`` would run element by element in Python under the
    interpreter). Merging tile by tile instead needs two block-wide sums per tile (the
    mean, then the squared deviations from it), each a barrier round, and on sm_90 its
    loop compiles to 281 instructions per 16 bf16 elements per thread: nearly all the
    issue slots that the ~315 clocks of DRAM time per 4 KiB tile and SM leave at 3 TB/s.
    This loop, with ``EVEN`` (every tile full: C, N and S multiples of BLOCK_C, BLOCK_N
    and BLOCK_S; no masks, and every lane's count is the number of tiles so far, one
    reciprocal per tile), compiles to 158 with no barrier, at 62 registers per thread
    (bf16, NCHW, 4 warps; tests/kernels/batchnorm/test_compile_for_gpu.py builds it). Without
    ``EVEN`` each lane counts its own values (a reciprocal each).

    ``NUM_STAGES`` > 1 software-pipelines the loop's loads (the next tiles are fetched into
    shared memory while this one is folded in); 1 leaves the loop as written."""
    acc_ty = tl.float64 if FP64 else tl.float32
    mean_e = tl.zeros([BLOCK_C, BLOCK_N * BLOCK_S], dtype=acc_ty)
    m2_e = tl.zeros([BLOCK_C, BLOCK_N * BLOCK_S], dtype=acc_ty)
    n_e = tl.zeros([BLOCK_C, BLOCK_N * BLOCK_S], dtype=acc_ty)
    for t in tl.range(t0, t1, num_stages=NUM_STAGES):
        start, offs, mask = _tile_offsets(
            t, n_tiles_s, c0, C, N, S, sn, sc, ss, BLOCK_C, BLOCK_N, BLOCK_S
        )
        if EVEN:
            d = tl.load(x_ptr + start + offs).to(acc_ty) - shift[:, None]
            delta = d - mean_e
            mean_e += delta * (1.0 / tl.cast(t - t0 + 1, acc_ty))
            m2_e += delta * (d - mean_e)
        else:
            d = tl.load(x_ptr + start + offs, mask=mask, other=0.0).to(acc_ty) - shift[:, None]
            n_e += tl.where(mask, 1.0, 0.0)
            delta = d - mean_e
            mean_new = tl.where(mask, mean_e + delta / tl.maximum(n_e, 1.0), mean_e)
            m2_e = tl.where(mask, m2_e + delta * (d - mean_new), m2_e)
            mean_e = mean_new
    if EVEN:
        n_e += tl.cast(tl.maximum(t1 - t0, 0), acc_ty)
    # Chan's merge of the lanes at once: M2 = sum M2_i + sum n_i (mean_i - mean)^2.
    count = tl.sum(n_e, axis=1)
    mean = tl.sum(n_e * mean_e, axis=1) / tl.maximum(count, 1.0)
    dev = mean_e - mean[:, None]
    m2 = tl.sum(m2_e + n_e * dev * dev, axis=1)
    return count, mean, m2


@triton.jit
def _load_vec(ptr, cs, cmask, other, FP64: tl.constexpr):
    acc_ty = tl.float64 if FP64 else tl.float32
    return tl.load(ptr + cs, mask=cmask, other=other).to(acc_ty)


@triton.jit
def _float_arg(value, FP64: tl.constexpr):
    """A float argument (eps, slope, momentum) at the accumulation precision. Triton
    passes a Python float to a compiled kernel as fp32, so under ``FP64`` the launcher
    passes the float64's bit pattern as an integer (``calls.float_arg``), rebuilt
    here exactly. Otherwise the value is cast to fp32: inside a torch.compile'd graph
    inductor launches the kernels itself and types a Python float argument fp64, which
    would promote every product with it to fp64 (and break the loops' carried types)."""
    if FP64:
        value = tl.cast(value, tl.int64).to(tl.float64, bitcast=True)
    else:
        value = tl.cast(value, tl.float32)
    return value


@triton.jit
def _finalize_channels(
    count,
    mean_shifted,
    m2,
    shift,
    cs,
    cmask,
    C,
    w_ptr,
    b_ptr,
    rm_ptr,
    rv_ptr,
    nbt_ptr,
    stats_ptr,
    momentum,
    eps,
    HAS_W: tl.constexpr,
    HAS_B: tl.constexpr,
    UPDATE_RUNNING: tl.constexpr,
    FACTOR_FROM_NBT: tl.constexpr,
    FP64: tl.constexpr,
):
    """Per-channel statistics from merged (count, mean - shift, M2); update running stats.

    Writes the six ``stats`` rows and returns ``(mean - shift, scale, bias)``. With
    ``UPDATE_RUNNING`` it also does ``running <- (1 - f) * running + f * batch``, with
    the unbiased variance ``M2 / (n - 1)`` for ``running_var`` as torch.nn.BatchNorm
    does. ``f`` is ``momentum`` or, with ``FACTOR_FROM_NBT`` (momentum=None: cumulative
    moving average), ``1 / (num_batches_tracked + 1)``: the counter is read BEFORE this
    call's increment, which a later kernel (or a host-side ``add_``) performs, so no
    program here can race with it.
    """
    acc_ty = tl.float64 if FP64 else tl.float32
    var = m2 / tl.maximum(count, 1.0)
    rstd = 1.0 / tl.sqrt(var + _float_arg(eps, FP64))
    if HAS_W:
        scale = _load_vec(w_ptr, cs, cmask, 1.0, FP64) * rstd
    else:
        scale = rstd
    if HAS_B:
        bias = _load_vec(b_ptr, cs, cmask, 0.0, FP64)
    else:
        bias = tl.zeros_like(rstd)
    tl.store(stats_ptr + cs, shift, mask=cmask)
    tl.store(stats_ptr + C + cs, mean_shifted, mask=cmask)
    tl.store(stats_ptr + 2 * C + cs, rstd, mask=cmask)
    tl.store(stats_ptr + 3 * C + cs, scale, mask=cmask)
    tl.store(stats_ptr + 4 * C + cs, bias, mask=cmask)
    tl.store(stats_ptr + 5 * C + cs, count, mask=cmask)
    if UPDATE_RUNNING:
        if FACTOR_FROM_NBT:
            f = 1.0 / (tl.cast(tl.load(nbt_ptr), acc_ty) + 1.0)
        else:
            f = tl.cast(_float_arg(momentum, FP64), acc_ty)
        rm = _load_vec(rm_ptr, cs, cmask, 0.0, FP64)
        rv = _load_vec(rv_ptr, cs, cmask, 0.0, FP64)
        unbiased = m2 / tl.maximum(count - 1.0, 1.0)
        tl.store(rm_ptr + cs, (1.0 - f) * rm + f * (shift + mean_shifted), mask=cmask)
        tl.store(rv_ptr + cs, (1.0 - f) * rv + f * unbiased, mask=cmask)
    return mean_shifted, scale, bias


@triton.jit
def _load_coeffs(stats_ptr, cs, cmask, C, FP64: tl.constexpr):
    """(shift, mean - shift, rstd, scale, bias) per channel from the ``stats`` rows."""
    shift = _load_vec(stats_ptr, cs, cmask, 0.0, FP64)
    mean = _load_vec(stats_ptr + C, cs, cmask, 0.0, FP64)
    rstd = _load_vec(stats_ptr + 2 * C, cs, cmask, 0.0, FP64)
    scale = _load_vec(stats_ptr + 3 * C, cs, cmask, 0.0, FP64)
    bias = _load_vec(stats_ptr + 4 * C, cs, cmask, 0.0, FP64)
    return shift, mean, rstd, scale, bias


@triton.jit
def _leaky(z, slope):
    return tl.where(z > 0, z, z * slope)


@triton.jit
def _increment_counter(nbt_ptr):
    tl.store(nbt_ptr, tl.load(nbt_ptr) + 1)


# ---------------------------------------------------------------------------------------
# Training forward, split path: partial stats -> finalize -> apply (3 launches)
# ---------------------------------------------------------------------------------------


@triton.jit
def bn_stats_partial_kernel(
    x_ptr,
    part_ptr,
    C,
    N,
    S,
    n_tiles_s,
    tiles_total,
    tiles_per_prog,
    sn,
    sc,
    ss,
    BLOCK_C: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_S: tl.constexpr,
    FP64: tl.constexpr,
    NUM_STAGES: tl.constexpr,
    EVEN: tl.constexpr,
):
    """Grid ``(cdiv(C, BLOCK_C), SPLIT)``: per-channel (count, mean - K, M2) of a tile range.

    Program ``p`` reduces tiles ``[p * tiles_per_prog, (p + 1) * tiles_per_prog)`` and
    writes row ``p`` of ``part`` (``[3, SPLIT, C]``: count, shifted mean, M2). A program
    with no tiles writes zeros, which the finalize ignores (count 0).
    """
    acc_ty = tl.float64 if FP64 else tl.float32
    pid_c = tl.program_id(0)
    pid_p = tl.program_id(1)
    P = tl.num_programs(1)
    c0 = pid_c * BLOCK_C
    cs = c0 + tl.arange(0, BLOCK_C)
    cmask = cs < C
    shift = tl.load(x_ptr + tl.cast(cs, tl.int64) * sc, mask=cmask, other=0.0).to(acc_ty)
    t0 = pid_p * tiles_per_prog
    t1 = tl.minimum(t0 + tiles_per_prog, tiles_total)
    count, mean, m2 = _stats_over_tiles(
        x_ptr, shift, t0, t1, n_tiles_s, c0, C, N, S, sn, sc, ss,
        BLOCK_C, BLOCK_N, BLOCK_S, FP64, NUM_STAGES, EVEN,
    )  # fmt: skip
    row = part_ptr + pid_p * C + cs
    tl.store(row, count, mask=cmask)
    tl.store(row + P * C, mean, mask=cmask)
    tl.store(row + 2 * P * C, m2, mask=cmask)


@triton.jit
def bn_stats_finalize_kernel(
    part_ptr,
    P,
    shift_ptr,
    shift_stride,
    C,
    w_ptr,
    b_ptr,
    rm_ptr,
    rv_ptr,
    nbt_ptr,
    stats_ptr,
    merged_ptr,
    momentum,
    eps,
    HAS_W: tl.constexpr,
    HAS_B: tl.constexpr,
    UPDATE_RUNNING: tl.constexpr,
    FACTOR_FROM_NBT: tl.constexpr,
    MERGE_ONLY: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_P: tl.constexpr,
    FP64: tl.constexpr,
):
    """Grid ``(cdiv(C, BLOCK_C),)``: merge ``P`` partial rows per channel, in a fixed order.

    Uses the multi-way form of Chan's formula: ``n = sum n_p``,
    ``mean = sum n_p mean_p / n``, ``M2 = sum (M2_p + n_p (mean_p - mean)^2)``.
    The partial means are relative to the channel's shift ``K``, read at ``shift_ptr + c *
    shift_stride``: ``x[0, c, 0]`` for one process's partials, or the common ``K`` the
    ranks of SyncBN rebased their rows onto (kernels/batchnorm/sync.py).
    ``MERGE_ONLY`` writes ``merged`` (``[4, C]``: count, mean - K, M2, K) and stops there
    (the local half of SyncBN); otherwise this finalizes (``_finalize_channels``). This kernel
    is the only one that writes running statistics; it is not autotuned, so it runs
    exactly once per call.
    """
    acc_ty = tl.float64 if FP64 else tl.float32
    pid = tl.program_id(0)
    cs = pid * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = cs < C
    n = tl.zeros([BLOCK_C], dtype=acc_ty)
    s = tl.zeros([BLOCK_C], dtype=acc_ty)
    for p0 in range(0, P, BLOCK_P):
        ps = p0 + tl.arange(0, BLOCK_P)
        m = (ps < P)[:, None] & cmask[None, :]
        off = ps[:, None] * C + cs[None, :]
        cnt = tl.load(part_ptr + off, mask=m, other=0.0).to(acc_ty)
        mu = tl.load(part_ptr + P * C + off, mask=m, other=0.0).to(acc_ty)
        n += tl.sum(cnt, axis=0)
        s += tl.sum(cnt * mu, axis=0)
    mean_p = s / tl.maximum(n, 1.0)
    m2 = tl.zeros([BLOCK_C], dtype=acc_ty)
    for p0 in range(0, P, BLOCK_P):
        ps = p0 + tl.arange(0, BLOCK_P)
        m = (ps < P)[:, None] & cmask[None, :]
        off = ps[:, None] * C + cs[None, :]
        cnt = tl.load(part_ptr + off, mask=m, other=0.0).to(acc_ty)
        mu = tl.load(part_ptr + P * C + off, mask=m, other=0.0).to(acc_ty)
        m2p = tl.load(part_ptr + 2 * P * C + off, mask=m, other=0.0).to(acc_ty)
        d = mu - mean_p[None, :]
        m2 += tl.sum(m2p + cnt * d * d, axis=0)
    shift_off = tl.cast(cs, tl.int64) * shift_stride
    shift = tl.load(shift_ptr + shift_off, mask=cmask, other=0.0).to(acc_ty)
    if MERGE_ONLY:
        tl.store(merged_ptr + cs, n, mask=cmask)
        tl.store(merged_ptr + C + cs, mean_p, mask=cmask)
        tl.store(merged_ptr + 2 * C + cs, m2, mask=cmask)
        tl.store(merged_ptr + 3 * C + cs, shift, mask=cmask)
    else:
        _finalize_channels(
            n, mean_p, m2, shift, cs, cmask, C, w_ptr, b_ptr, rm_ptr, rv_ptr, nbt_ptr,
            stats_ptr, momentum, eps, HAS_W, HAS_B, UPDATE_RUNNING, FACTOR_FROM_NBT, FP64,
        )  # fmt: skip


@triton.jit
def bn_apply_kernel(
    x_ptr,
    y_ptr,
    stats_ptr,
    w_ptr,
    b_ptr,
    rm_ptr,
    rv_ptr,
    nbt_ptr,
    C,
    N,
    S,
    n_tiles_s,
    sn,
    sc,
    ss,
    eps,
    slope,
    count,
    EVAL: tl.constexpr,
    HAS_W: tl.constexpr,
    HAS_B: tl.constexpr,
    INC_NBT: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_S: tl.constexpr,
    FP64: tl.constexpr,
):
    """Grid ``(n_tiles, cdiv(C, BLOCK_C))``: ``y = leaky((x - mean) * scale + bias)``, one tile.

    Training: shift/mean/scale/bias come from ``stats`` (written by the finalize). ``EVAL``:
    they are computed here from the running statistics (``rstd = 1/sqrt(rv + eps)``), and
    the programs of tile 0 write them into ``stats`` for the backward, so eval needs a
    single launch. ``INC_NBT``: program (0, 0) adds 1 to ``num_batches_tracked``; the
    finalize that read it ran earlier on the same stream.
    """
    acc_ty = tl.float64 if FP64 else tl.float32
    t = tl.program_id(0)
    pid_c = tl.program_id(1)
    c0 = pid_c * BLOCK_C
    cs = c0 + tl.arange(0, BLOCK_C)
    cmask = cs < C
    if EVAL:
        shift = tl.zeros([BLOCK_C], dtype=acc_ty)
        mean = _load_vec(rm_ptr, cs, cmask, 0.0, FP64)
        rstd = 1.0 / tl.sqrt(_load_vec(rv_ptr, cs, cmask, 1.0, FP64) + _float_arg(eps, FP64))
        if HAS_W:
            scale = _load_vec(w_ptr, cs, cmask, 1.0, FP64) * rstd
        else:
            scale = rstd
        if HAS_B:
            bias = _load_vec(b_ptr, cs, cmask, 0.0, FP64)
        else:
            bias = tl.zeros_like(rstd)
        first = cmask & (t == 0)
        tl.store(stats_ptr + cs, shift, mask=first)
        tl.store(stats_ptr + C + cs, mean, mask=first)
        tl.store(stats_ptr + 2 * C + cs, rstd, mask=first)
        tl.store(stats_ptr + 3 * C + cs, scale, mask=first)
        tl.store(stats_ptr + 4 * C + cs, bias, mask=first)
        tl.store(stats_ptr + 5 * C + cs, tl.zeros_like(rstd) + count, mask=first)
    else:
        shift, mean, rstd, scale, bias = _load_coeffs(stats_ptr, cs, cmask, C, FP64)
    if INC_NBT:
        if (t == 0) & (pid_c == 0):
            _increment_counter(nbt_ptr)
    start, offs, mask = _tile_offsets(
        t, n_tiles_s, c0, C, N, S, sn, sc, ss, BLOCK_C, BLOCK_N, BLOCK_S
    )
    xv = tl.load(x_ptr + start + offs, mask=mask, other=0.0).to(acc_ty)
    z = ((xv - shift[:, None]) - mean[:, None]) * scale[:, None] + bias[:, None]
    tl.store(y_ptr + start + offs, _leaky(z, _float_arg(slope, FP64)), mask=mask)


# ---------------------------------------------------------------------------------------
# Training forward, small path: one program per channel block does everything (1 launch)
# ---------------------------------------------------------------------------------------


@triton.jit
def bn_fwd_fused_kernel(
    x_ptr,
    y_ptr,
    stats_ptr,
    w_ptr,
    b_ptr,
    rm_ptr,
    rv_ptr,
    nbt_ptr,
    C,
    N,
    S,
    n_tiles_s,
    tiles_total,
    sn,
    sc,
    ss,
    momentum,
    eps,
    slope,
    HAS_W: tl.constexpr,
    HAS_B: tl.constexpr,
    UPDATE_RUNNING: tl.constexpr,
    FACTOR_FROM_NBT: tl.constexpr,
    INC_NBT: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_S: tl.constexpr,
    FP64: tl.constexpr,
    NUM_STAGES: tl.constexpr,
    EVEN: tl.constexpr,
):
    """Grid ``(cdiv(C, BLOCK_C),)``: statistics, finalize and apply for a channel block.

    For small inputs, where launches cost more than bytes: the second pass re-reads x,
    which is still in L2 at these sizes. ``INC_NBT`` must be False when
    ``FACTOR_FROM_NBT`` is True (other programs read the counter); the host then adds 1
    after this kernel.
    """
    acc_ty = tl.float64 if FP64 else tl.float32
    pid_c = tl.program_id(0)
    c0 = pid_c * BLOCK_C
    cs = c0 + tl.arange(0, BLOCK_C)
    cmask = cs < C
    shift = tl.load(x_ptr + tl.cast(cs, tl.int64) * sc, mask=cmask, other=0.0).to(acc_ty)
    count, mean, m2 = _stats_over_tiles(
        x_ptr, shift, 0, tiles_total, n_tiles_s, c0, C, N, S, sn, sc, ss,
        BLOCK_C, BLOCK_N, BLOCK_S, FP64, NUM_STAGES, EVEN,
    )  # fmt: skip
    mean, scale, bias = _finalize_channels(
        count, mean, m2, shift, cs, cmask, C, w_ptr, b_ptr, rm_ptr, rv_ptr, nbt_ptr,
        stats_ptr, momentum, eps, HAS_W, HAS_B, UPDATE_RUNNING, FACTOR_FROM_NBT, FP64,
    )  # fmt: skip
    if INC_NBT:
        if pid_c == 0:
            _increment_counter(nbt_ptr)
    for t in range(0, tiles_total):
        start, offs, mask = _tile_offsets(
            t, n_tiles_s, c0, C, N, S, sn, sc, ss, BLOCK_C, BLOCK_N, BLOCK_S
        )
        xv = tl.load(x_ptr + start + offs, mask=mask, other=0.0).to(acc_ty)
        z = ((xv - shift[:, None]) - mean[:, None]) * scale[:, None] + bias[:, None]
        tl.store(y_ptr + start + offs, _leaky(z, _float_arg(slope, FP64)), mask=mask)


# ---------------------------------------------------------------------------------------
# Backward
# ---------------------------------------------------------------------------------------


@triton.jit
def _grad_tile(
    x_ptr, dy_ptr, start, offs, mask, shift, mean, scale, bias, slope, FP64: tl.constexpr
):
    """Load a tile of x and dy; return ``x - mean`` and ``g = dy * leaky'(z)``."""
    acc_ty = tl.float64 if FP64 else tl.float32
    xv = tl.load(x_ptr + start + offs, mask=mask, other=0.0).to(acc_ty)
    dyv = tl.load(dy_ptr + start + offs, mask=mask, other=0.0).to(acc_ty)
    xc = (xv - shift[:, None]) - mean[:, None]
    z = xc * scale[:, None] + bias[:, None]
    g = tl.where(z > 0, dyv, dyv * _float_arg(slope, FP64))
    return xc, g


@triton.jit
def _grad_sums_over_tiles(
    x_ptr, dy_ptr, dx_ptr, t0, t1, n_tiles_s, c0, C, N, S, sn, sc, ss, slope,
    shift, mean, scale, bias, WRITE_DX: tl.constexpr,
    BLOCK_C: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_S: tl.constexpr, FP64: tl.constexpr,
    NUM_STAGES: tl.constexpr,
):  # fmt: skip
    """Per-channel ``sum g`` and ``sum g * (x - mean)`` over tiles ``[t0, t1)``, accumulated
    per element and summed once at the end; ``WRITE_DX`` also stores the eval-mode
    ``dx = g * scale`` in the same pass. ``NUM_STAGES``: as in ``_stats_over_tiles``."""
    acc_ty = tl.float64 if FP64 else tl.float32
    acc_g = tl.zeros([BLOCK_C, BLOCK_N * BLOCK_S], dtype=acc_ty)
    acc_gx = tl.zeros([BLOCK_C, BLOCK_N * BLOCK_S], dtype=acc_ty)
    for t in tl.range(t0, t1, num_stages=NUM_STAGES):
        start, offs, mask = _tile_offsets(
            t, n_tiles_s, c0, C, N, S, sn, sc, ss, BLOCK_C, BLOCK_N, BLOCK_S
        )
        xc, g = _grad_tile(x_ptr, dy_ptr, start, offs, mask, shift, mean, scale, bias, slope, FP64)
        acc_g += g
        acc_gx += g * xc
        if WRITE_DX:
            tl.store(dx_ptr + start + offs, g * scale[:, None], mask=mask)
    return tl.sum(acc_g, axis=1), tl.sum(acc_gx, axis=1)


@triton.jit
def bn_bwd_partial_kernel(
    x_ptr,
    dy_ptr,
    dx_ptr,
    stats_ptr,
    part_ptr,
    C,
    N,
    S,
    n_tiles_s,
    tiles_total,
    tiles_per_prog,
    sn,
    sc,
    ss,
    slope,
    WRITE_DX: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_S: tl.constexpr,
    FP64: tl.constexpr,
    NUM_STAGES: tl.constexpr,
):
    """Grid ``(cdiv(C, BLOCK_C), SPLIT)``: partial ``sum g`` and ``sum g * xhat`` per channel.

    ``g`` is the gradient after the activation, ``xhat = (x - mean) * rstd``. Writes row
    ``p`` of ``part`` (``[2, SPLIT, C]``). ``WRITE_DX`` (eval mode, where ``dx = g *
    scale`` does not depend on the sums) also writes dx in the same pass.
    """
    pid_c = tl.program_id(0)
    pid_p = tl.program_id(1)
    P = tl.num_programs(1)
    c0 = pid_c * BLOCK_C
    cs = c0 + tl.arange(0, BLOCK_C)
    cmask = cs < C
    shift, mean, rstd, scale, bias = _load_coeffs(stats_ptr, cs, cmask, C, FP64)
    t0 = pid_p * tiles_per_prog
    t1 = tl.minimum(t0 + tiles_per_prog, tiles_total)
    sum_g, sum_gxc = _grad_sums_over_tiles(
        x_ptr, dy_ptr, dx_ptr, t0, t1, n_tiles_s, c0, C, N, S, sn, sc, ss, slope,
        shift, mean, scale, bias, WRITE_DX, BLOCK_C, BLOCK_N, BLOCK_S, FP64, NUM_STAGES,
    )  # fmt: skip
    row = part_ptr + pid_p * C + cs
    tl.store(row, sum_g, mask=cmask)
    tl.store(row + P * C, sum_gxc * rstd, mask=cmask)


@triton.jit
def bn_bwd_finalize_kernel(
    part_ptr,
    P,
    C,
    sums_ptr,
    dw_ptr,
    db_ptr,
    HAS_DW: tl.constexpr,
    HAS_DB: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_P: tl.constexpr,
    FP64: tl.constexpr,
):
    """Grid ``(cdiv(C, BLOCK_C),)``: add the partial rows in order; write sums, dweight, dbias.

    ``sums`` (``[2, C]``): ``sum g`` and ``sum g * xhat``. ``dbias = sum g`` and
    ``dweight = sum g * xhat``, stored in the parameters' dtype.
    """
    acc_ty = tl.float64 if FP64 else tl.float32
    pid = tl.program_id(0)
    cs = pid * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = cs < C
    sum_g = tl.zeros([BLOCK_C], dtype=acc_ty)
    sum_gx = tl.zeros([BLOCK_C], dtype=acc_ty)
    for p0 in range(0, P, BLOCK_P):
        ps = p0 + tl.arange(0, BLOCK_P)
        m = (ps < P)[:, None] & cmask[None, :]
        off = ps[:, None] * C + cs[None, :]
        sum_g += tl.sum(tl.load(part_ptr + off, mask=m, other=0.0).to(acc_ty), axis=0)
        sum_gx += tl.sum(tl.load(part_ptr + P * C + off, mask=m, other=0.0).to(acc_ty), axis=0)
    tl.store(sums_ptr + cs, sum_g, mask=cmask)
    tl.store(sums_ptr + C + cs, sum_gx, mask=cmask)
    if HAS_DW:
        tl.store(dw_ptr + cs, sum_gx, mask=cmask)
    if HAS_DB:
        tl.store(db_ptr + cs, sum_g, mask=cmask)


@triton.jit
def _dx_from_sums(xc, g, scale, rstd, k1, k2, TRAINING: tl.constexpr):
    """Training: ``dx = scale * (g - mean(g) - xhat * mean(g * xhat))``; eval: ``g * scale``."""
    if TRAINING:
        xhat = xc * rstd[:, None]
        dx = scale[:, None] * (g - k1[:, None] - xhat * k2[:, None])
    else:
        dx = g * scale[:, None]
    return dx


@triton.jit
def bn_bwd_dx_kernel(
    x_ptr,
    dy_ptr,
    dx_ptr,
    stats_ptr,
    sums_ptr,
    C,
    N,
    S,
    n_tiles_s,
    sn,
    sc,
    ss,
    slope,
    TRAINING: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_S: tl.constexpr,
    FP64: tl.constexpr,
):
    """Grid ``(n_tiles, cdiv(C, BLOCK_C))``: dx for one tile.

    Training reads ``sums`` and the count ``n`` (stats row 5; for SyncBN the global
    count) to form ``mean(g) = sum g / n`` and ``mean(g * xhat)``.
    """
    t = tl.program_id(0)
    pid_c = tl.program_id(1)
    c0 = pid_c * BLOCK_C
    cs = c0 + tl.arange(0, BLOCK_C)
    cmask = cs < C
    shift, mean, rstd, scale, bias = _load_coeffs(stats_ptr, cs, cmask, C, FP64)
    if TRAINING:
        n = _load_vec(stats_ptr + 5 * C, cs, cmask, 1.0, FP64)
        k1 = _load_vec(sums_ptr, cs, cmask, 0.0, FP64) / n
        k2 = _load_vec(sums_ptr + C, cs, cmask, 0.0, FP64) / n
    else:
        k1 = mean
        k2 = mean
    start, offs, mask = _tile_offsets(
        t, n_tiles_s, c0, C, N, S, sn, sc, ss, BLOCK_C, BLOCK_N, BLOCK_S
    )
    xc, g = _grad_tile(x_ptr, dy_ptr, start, offs, mask, shift, mean, scale, bias, slope, FP64)
    dx = _dx_from_sums(xc, g, scale, rstd, k1, k2, TRAINING)
    tl.store(dx_ptr + start + offs, dx, mask=mask)


@triton.jit
def bn_bwd_fused_kernel(
    x_ptr,
    dy_ptr,
    dx_ptr,
    stats_ptr,
    dw_ptr,
    db_ptr,
    C,
    N,
    S,
    n_tiles_s,
    tiles_total,
    sn,
    sc,
    ss,
    slope,
    TRAINING: tl.constexpr,
    REDUCE: tl.constexpr,
    DX_IN_REDUCE: tl.constexpr,
    DX_AFTER: tl.constexpr,
    HAS_DW: tl.constexpr,
    HAS_DB: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_S: tl.constexpr,
    FP64: tl.constexpr,
    NUM_STAGES: tl.constexpr,
):
    """Grid ``(cdiv(C, BLOCK_C),)``: the whole backward of a channel block (1 launch).

    ``REDUCE``: first pass over the tiles for ``sum g`` and ``sum g * xhat`` (needed for
    training dx, dweight, dbias); ``DX_IN_REDUCE`` writes the eval-mode dx during that
    pass; ``DX_AFTER`` runs a second pass for dx (training, or eval without a reduction).
    """
    acc_ty = tl.float64 if FP64 else tl.float32
    pid_c = tl.program_id(0)
    c0 = pid_c * BLOCK_C
    cs = c0 + tl.arange(0, BLOCK_C)
    cmask = cs < C
    shift, mean, rstd, scale, bias = _load_coeffs(stats_ptr, cs, cmask, C, FP64)
    k1 = tl.zeros([BLOCK_C], dtype=acc_ty)
    k2 = tl.zeros([BLOCK_C], dtype=acc_ty)
    if REDUCE:
        sum_g, sum_gxc = _grad_sums_over_tiles(
            x_ptr, dy_ptr, dx_ptr, 0, tiles_total, n_tiles_s, c0, C, N, S, sn, sc, ss, slope,
            shift, mean, scale, bias, DX_IN_REDUCE, BLOCK_C, BLOCK_N, BLOCK_S, FP64, NUM_STAGES,
        )  # fmt: skip
        sum_gx = sum_gxc * rstd
        if HAS_DW:
            tl.store(dw_ptr + cs, sum_gx, mask=cmask)
        if HAS_DB:
            tl.store(db_ptr + cs, sum_g, mask=cmask)
        n = _load_vec(stats_ptr + 5 * C, cs, cmask, 1.0, FP64)
        k1 = sum_g / n
        k2 = sum_gx / n
    if DX_AFTER:
        for t in range(0, tiles_total):
            start, offs, mask = _tile_offsets(
                t, n_tiles_s, c0, C, N, S, sn, sc, ss, BLOCK_C, BLOCK_N, BLOCK_S
            )
            xc, g = _grad_tile(
                x_ptr, dy_ptr, start, offs, mask, shift, mean, scale, bias, slope, FP64
            )
            dx = _dx_from_sums(xc, g, scale, rstd, k1, k2, TRAINING)
            tl.store(dx_ptr + start + offs, dx, mask=mask)
