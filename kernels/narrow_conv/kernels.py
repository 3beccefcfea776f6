"""Triton kernels for 2-D convolutions with few channels on one side ("narrow"), such as
a network's first convolution over image channels and a generator's last transposed
convolution back to them.

Libraries tile a convolution's GEMM with output-channel tiles of 64 or more: with 3 to 8
channels on the narrow side most of each tile is zeros. On an H100 (cuDNN 9, bf16,
channels_last, batch 1024 of 64x64 images; results/NVIDIA-H100-80GB-HBM3/profiles) the
transposed convolution 64 -> 8 channels (4x4, stride 2) took 400 us where its bytes need
about 70 us, and the convolution 8 -> 64 took 220 us where its bytes need about 70 us.

Three implicit-GEMM kernels cover both directions of both layers, forward and backward:

- ``conv2d_kernel``: y = act(conv2d(x, w) + b), GEMM (output pixels) x (output channels)
  over K = (kh, kw, input channel), input channels innermost so that a row of K is a run
  of contiguous elements in channels_last memory; an optional LeakyReLU (ReLU is slope
  0) in the epilogue.
- ``conv_transpose2d_kernel``: y = conv_transpose2d(x, w) + b, for a narrow output. Each
  program takes output pixels of one stride phase ``(oh + padding) % stride``, for which
  exactly the taps ``kh = phase + t * stride`` contribute, so no multiply lands on a
  structural zero; K = (tap, input channel).
- ``conv2d_weight_grad_kernel``: dw[co, (kh, kw, ci)] = sum over output pixels of
  grad[m, co] * x_patch[m, (kh, kw, ci)], each program summing a fixed slice of the
  pixels into its own partial row (no atomics: deterministic); the host adds the rows.

The two backward kernels take a fused LeakyReLU's backward as they load the gradient
(``MASKED``: reading the activation's output beside it), so that no pass of its own
writes the gradient of the pre-activation.

Every tensor comes with its own element strides, any layout works; channels_last makes
each row of a tile contiguous. Offsets are int32 unless a tensor spans 2^31 elements or more
(``I64``): a tile's offsets are held per element in registers, and 64-bit ones doubled the
registers of every kernel here past the 255 a thread has (ptxas, sm_90: spills).
Arithmetic is fp32 (``tl.dot`` accumulates in fp32 for fp16 and bf16 inputs; fp32 inputs
take ``INPUT_PRECISION``, "ieee" or "tf32"). Stores cast to the destination's dtype. These
kernels know nothing of models; ``kernels/narrow_conv/ops.py`` launches them.
"""

import triton
import triton.language as tl


@triton.jit
def _wide(v, I64: tl.constexpr):
    """v as an offset: int64 where a tensor spans 2^31 elements or more, else as it is."""
    if I64:
        v = v.to(tl.int64)
    return v


@triton.jit
def _patch_index(offs_k, CI, KW):
    """Patch column k = (kh * KW + kw) * CI + ci as (ci, kh, kw): input channels innermost,
    the order channels_last stores a window's row in."""
    tap = offs_k // CI
    return offs_k % CI, tap // KW, tap % KW


@triton.jit
def _load_patches(x_ptr, n, ih0, iw0, ci, kh, kw, H, W, sxn, sxh, sxw, sxc, valid,
                  I64: tl.constexpr):  # fmt: skip
    """The implicit GEMM's operand: for each output pixel (batch item n, its window's
    top-left corner ih0, iw0) and patch column (ci, kh, kw), x[n, ih0 + kh, iw0 + kw, ci];
    0 in the padding and where not ``valid``. Offsets: a row's plus a column's."""
    row = _wide(n, I64) * sxn + ih0 * sxh + iw0 * sxw
    col = kh * sxh + kw * sxw + ci * sxc
    ih = ih0[:, None] + kh[None, :]
    iw = iw0[:, None] + kw[None, :]
    inside = (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
    return tl.load(x_ptr + (row[:, None] + col[None, :]), mask=valid & inside, other=0.0)


@triton.jit
def _leaky_mask(v, mask_ptr, offs, valid, slope, MASKED: tl.constexpr):
    """v, or where a LeakyReLU's output at the same place is <= 0, v * slope: the
    activation's backward applied to a gradient as it is loaded (v's dtype kept). The
    output is laid out as v's source is: the same offsets."""
    if MASKED:
        out = tl.load(mask_ptr + offs, mask=valid, other=0.0)
        v = tl.where(out > 0, v, (v.to(tl.float32) * slope).to(v.dtype))
    return v


@triton.jit
def _store_pixels(acc, b_ptr, y_ptr, n, oh, ow, offs_n, m_mask, n_mask, syn, syh, syw, syc,
                  negative_slope, HAS_BIAS: tl.constexpr, ACTIVATION: tl.constexpr,
                  I64: tl.constexpr):  # fmt: skip
    """The epilogue: acc (+ bias, then LeakyReLU) stored at output pixels (n, oh, ow),
    channels offs_n, in y's dtype."""
    if HAS_BIAS:
        acc += tl.load(b_ptr + offs_n, mask=n_mask, other=0.0).to(tl.float32)[None, :]
    if ACTIVATION:
        acc = tl.where(acc > 0, acc, acc * negative_slope)
    y_row = _wide(n, I64) * syn + oh * syh + ow * syw
    tl.store(
        y_ptr + (y_row[:, None] + offs_n[None, :] * syc),
        acc.to(y_ptr.dtype.element_ty),
        mask=m_mask[:, None] & n_mask[None, :],
    )


@triton.jit
def conv2d_kernel(
    x_ptr, w_ptr, b_ptr, y_ptr,
    M, H, W, CI, HO, WO, CO, K,
    sxn, sxh, sxw, sxc,
    swo, swi, swh, sww,
    syn, syh, syw, syc,
    SH, SW, PH, PW, KW,
    negative_slope,
    HAS_BIAS: tl.constexpr, ACTIVATION: tl.constexpr, INPUT_PRECISION: tl.constexpr,
    I64: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    """Program (m, n): output pixels [m*BLOCK_M, ...) x output channels [n*BLOCK_N, ...)."""
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    m_mask = offs_m < M
    n_mask = offs_n < CO
    n = offs_m // (HO * WO)
    r = offs_m % (HO * WO)
    oh = r // WO
    ow = r % WO
    ih0 = oh * SH - PH
    iw0 = ow * SW - PW
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        k_mask = offs_k < K
        ci, kh, kw = _patch_index(offs_k, CI, KW)
        valid = m_mask[:, None] & k_mask[None, :]
        a = _load_patches(x_ptr, n, ih0, iw0, ci, kh, kw, H, W, sxn, sxh, sxw, sxc, valid, I64)
        w_col = ci * swi + kh * swh + kw * sww
        b = tl.load(
            w_ptr + (w_col[:, None] + offs_n[None, :] * swo),
            mask=k_mask[:, None] & n_mask[None, :],
            other=0.0,
        )
        acc = tl.dot(a, b, acc, input_precision=INPUT_PRECISION)
    _store_pixels(acc, b_ptr, y_ptr, n, oh, ow, offs_n, m_mask, n_mask, syn, syh, syw, syc,
                  negative_slope, HAS_BIAS, ACTIVATION, I64)  # fmt: skip


@triton.jit
def conv_transpose2d_kernel(
    x_ptr, w_ptr, b_ptr, y_ptr, m_ptr,
    NB, HI, WI, CI, HO, WO, CO,
    sxn, sxh, sxw, sxc,
    swi, swo, swh, sww,
    syn, syh, syw, syc,
    SH, SW, PH, PW,
    HP, WP,
    mask_slope,
    KH: tl.constexpr, KW: tl.constexpr, TAPS_H: tl.constexpr, TAPS_W: tl.constexpr,
    HAS_BIAS: tl.constexpr, MASKED: tl.constexpr, INPUT_PRECISION: tl.constexpr,
    I64: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    """Program p: output pixels [m*BLOCK_M, ...) of stride phase ``phase`` (rows oh with
    (oh + PH) % SH == phase // SW, columns likewise), ``phase, m = p % (SH*SW), p //
    (SH*SW)``, all output channels up to BLOCK_N. ``HP x WP``: the most rows and columns
    any phase has (``cdiv(HO, SH)``). The phases of a block of pixels are neighbouring
    programs: they read the same input rows, which then come from L2 rather than from
    memory once per phase. One loop over (tap, input-channel chunk), so that the pipeliner
    overlaps the loads of one tap with the products of the last. ``MASKED``: x is the
    gradient of a LeakyReLU's output ``m``, laid out as x (x's strides), taken through the
    activation's backward as it is loaded."""
    pid = tl.program_id(0)
    phase = pid % (SH * SW)
    pid_m = pid // (SH * SW)
    rh = phase // SW
    rw = phase % SW
    # First output row of this phase: oh = rh - PH (mod SH), in [0, SH).
    oh0 = ((rh - PH) % SH + SH) % SH
    ow0 = ((rw - PW) % SW + SW) % SW
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    n_mask = offs_n < CO
    n = offs_m // (HP * WP)
    r = offs_m % (HP * WP)
    oh = oh0 + (r // WP) * SH
    ow = ow0 + (r % WP) * SW
    m_mask = (n < NB) & (oh < HO) & (ow < WO)
    x_n = _wide(n, I64) * sxn
    chunks = tl.cdiv(CI, BLOCK_K)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for step in range(0, TAPS_H * TAPS_W * chunks):
        tap = step // chunks
        k0 = (step % chunks) * BLOCK_K
        kh = rh + (tap // TAPS_W) * SH
        kw = rw + (tap % TAPS_W) * SW
        # oh + PH - kh is a multiple of SH by the choice of phase: the division is exact.
        ih = (oh + PH - kh) // SH
        iw = (ow + PW - kw) // SW
        tap_ok = (kh < KH) & (kw < KW)
        inside = m_mask & (ih >= 0) & (ih < HI) & (iw >= 0) & (iw < WI) & tap_ok
        offs_k = k0 + tl.arange(0, BLOCK_K)
        k_mask = offs_k < CI
        valid = inside[:, None] & k_mask[None, :]
        x_offs = (x_n + ih * sxh + iw * sxw)[:, None] + (offs_k * sxc)[None, :]
        a = tl.load(x_ptr + x_offs, mask=valid, other=0.0)
        a = _leaky_mask(a, m_ptr, x_offs, valid, mask_slope, MASKED)
        w_row = offs_k * swi + kh * swh + kw * sww
        b = tl.load(
            w_ptr + (w_row[:, None] + offs_n[None, :] * swo),
            mask=k_mask[:, None] & n_mask[None, :] & tap_ok,
            other=0.0,
        )
        acc = tl.dot(a, b, acc, input_precision=INPUT_PRECISION)
    _store_pixels(acc, b_ptr, y_ptr, n, oh, ow, offs_n, m_mask, n_mask, syn, syh, syw, syc,
                  0.0, HAS_BIAS, False, I64)  # fmt: skip


@triton.jit
def conv2d_weight_grad_kernel(
    x_ptr, g_ptr, part_ptr, m_ptr,
    M, H, W, CI, HO, WO, CO, K,
    sxn, sxh, sxw, sxc,
    sgn, sgh, sgw, sgc,
    SH, SW, PH, PW, KW,
    M_PER_SPLIT,
    mask_slope,
    MASKED: tl.constexpr, INPUT_PRECISION: tl.constexpr, I64: tl.constexpr,
    BLOCK_CO: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_M: tl.constexpr,
):  # fmt: skip
    """Program (co, k, s): the partial sum ``part[s, co-block, k-block]`` over output pixels
    [s*M_PER_SPLIT, (s+1)*M_PER_SPLIT); ``part`` is ``[SPLIT, CO, K]`` fp32, contiguous.
    ``MASKED``: g is the gradient of a LeakyReLU's output ``m``, laid out as g (g's
    strides), taken through the activation's backward as it is loaded."""
    pid_co = tl.program_id(0)
    pid_k = tl.program_id(1)
    pid_s = tl.program_id(2)
    offs_co = pid_co * BLOCK_CO + tl.arange(0, BLOCK_CO)
    offs_k = pid_k * BLOCK_K + tl.arange(0, BLOCK_K)
    co_mask = offs_co < CO
    k_mask = offs_k < K
    ci, kh, kw = _patch_index(offs_k, CI, KW)
    acc = tl.zeros((BLOCK_CO, BLOCK_K), dtype=tl.float32)
    m_start = pid_s * M_PER_SPLIT
    m_end = tl.minimum(m_start + M_PER_SPLIT, M)
    for m0 in range(m_start, m_end, BLOCK_M):
        offs_m = m0 + tl.arange(0, BLOCK_M)
        m_mask = offs_m < m_end
        n = offs_m // (HO * WO)
        r = offs_m % (HO * WO)
        oh = r // WO
        ow = r % WO
        valid = m_mask[:, None] & co_mask[None, :]
        g_offs = (_wide(n, I64) * sgn + oh * sgh + ow * sgw)[:, None] + (offs_co * sgc)[None, :]
        g = tl.load(g_ptr + g_offs, mask=valid, other=0.0)
        g = _leaky_mask(g, m_ptr, g_offs, valid, mask_slope, MASKED)
        valid_x = m_mask[:, None] & k_mask[None, :]
        a = _load_patches(x_ptr, n, oh * SH - PH, ow * SW - PW, ci, kh, kw, H, W,
                          sxn, sxh, sxw, sxc, valid_x, I64)  # fmt: skip
        acc = tl.dot(tl.trans(g), a, acc, input_precision=INPUT_PRECISION)
    p_offs = (pid_s.to(tl.int64) * CO + offs_co[:, None]) * K + offs_k[None, :]
    tl.store(part_ptr + p_offs, acc, mask=co_mask[:, None] & k_mask[None, :])
