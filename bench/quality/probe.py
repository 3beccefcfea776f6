"""What a training run needs to measure sample quality: the extractor, the prepared real
reference (and an Inception one when weights are given), and a way to sample G.

Everything here runs outside the timed region, on one process, with G in eval mode
(running BatchNorm statistics, as a trained GAN is used) and in fp32: the same samples
whatever precision or variant trained the weights, so variants compare on quality.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from bench.quality.evaluate import default_quality_samples, evaluate_quality, fd_only
from bench.quality.extractor import get_extractor
from bench.quality.grid import save_sample_grid
from bench.quality.inception import load_inception
from bench.quality.reference import prepare_reference

# Latents of the sample grid: one fixed seed for every run, so grids of different
# variants, precisions and seeds show the same z.
GRID_SEED = 20140610  # the date Goodfellow et al. put the GAN paper on arXiv
GRID_SIZE = 64  # 8 x 8


@contextmanager
def _ieee_fp32():
    """TF32 off while quality is measured: `--precision tf32` turns it on for the whole
    process (bench/training/precision.py), and the extractor and G's samples must be fp32 whatever
    precision trained the weights (an extractor trained here is cached for other runs)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


class QualityProbe:
    """Prepared once per run (training the extractor on first use, cached on disk)."""

    def __init__(
        self,
        *,
        dataset: str,
        data_dir: str | None,
        image_shape: tuple[int, int, int],
        latent_shape: tuple[int, ...],
        device: torch.device,
        n_samples: int | None,
        seed: int,
        cache_dir: str | None,
        inception_weights: str | None,
    ):
        self.latent_shape = latent_shape
        self.device = device
        self.n_samples = n_samples if n_samples is not None else default_quality_samples(device)
        self.seed = seed
        with _ieee_fp32():
            extractor = get_extractor(
                dataset, data_dir, image_shape, cache_dir=cache_dir, device=device
            )
            self.reference = prepare_reference(dataset, data_dir, image_shape, extractor)
            self.inception_reference = None
            if inception_weights is not None:
                inception = load_inception(inception_weights, device=device)
                self.inception_reference = prepare_reference(
                    dataset, data_dir, image_shape, inception
                )

    def _sampler(self, generator: nn.Module):
        def sample(n: int, rng: torch.Generator) -> torch.Tensor:
            z = torch.randn((n, *self.latent_shape), device=self.device, generator=rng)
            return generator(z).float()

        return sample

    def _in_eval(self, generator: nn.Module, fn):
        was_training = generator.training
        generator.eval()
        try:
            with torch.no_grad(), _ieee_fp32():
                return fn(self._sampler(generator))
        finally:
            generator.train(was_training)

    def fd(self, generator: nn.Module) -> dict:
        """FD only: the periodic check of --eval-every / --target-fd."""
        return self._in_eval(
            generator,
            lambda sample: fd_only(
                sample, self.reference, n_samples=self.n_samples, seed=self.seed, device=self.device
            ),
        )

    def evaluate(self, generator: nn.Module) -> dict:
        """Every metric (FD, KID, precision/recall, density/coverage, classes, FID if asked)."""
        return self._in_eval(
            generator,
            lambda sample: evaluate_quality(
                sample,
                self.reference,
                n_samples=self.n_samples,
                seed=self.seed,
                device=self.device,
                inception_reference=self.inception_reference,
            ),
        )


def write_sample_grid(
    generator: nn.Module, latent_shape: tuple[int, ...], device: torch.device, path: Path
) -> Path:
    """An 8x8 grid PNG of G's samples at the fixed GRID_SEED latents (eval mode, fp32)."""
    rng = torch.Generator(device=device).manual_seed(GRID_SEED)
    was_training = generator.training
    generator.eval()
    try:
        with torch.no_grad(), _ieee_fp32():
            z = torch.randn((GRID_SIZE, *latent_shape), device=device, generator=rng)
            images = generator(z).float().cpu()
    finally:
        generator.train(was_training)
    return save_sample_grid(images, path, nrow=8)
