"""The feature extractor every quality metric of a run is computed from.

For labelled data a small CNN classifier trained on the data set's training split
(``lenet`` for grey, ``vgg`` for RGB), cached on disk; for unlabelled data (synthetic, an
image folder with one class) a fixed-seed random CNN. Inception weights loaded from a
file (bench.quality.inception) give the same interface.

An extractor is named by an id ("lenet-mnist5k-28", "randcnn-s0-c3r32") and pinned by
the sha256 of its state-dict bytes; both go into every record next to the numbers.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from bench import data
from bench.quality import cache, networks, training
from bench.quality.errors import QualityError

# Bump when anything that changes a trained classifier changes (architecture, training
# recipe, split rule): old cache entries are then ignored instead of silently reused.
EXTRACTOR_VERSION = 1
# Seed of the train / held-out split (bench.data.load_labelled), apart from the
# classifier's seed so that retraining with another seed keeps the same held-out images.
SPLIT_SEED = 0
# Held-out accuracy a classifier must reach, or get_extractor raises QualityError: below
# it the features do not capture the digits well enough for the metrics to mean much.
# Floors for mnist5k and full MNIST, the data sets quality parity is judged on; digits
# measured 1.000 (364 images). Other data sets record their accuracy without a floor.
MIN_ACCURACY: dict[str, float] = {
    "mnist5k": 0.96,
    "mnist": 0.99,
    "mnist-full": 0.99,
    "digits": 0.95,
}
# Images per forward pass when extracting features.
DEFAULT_BATCH = 500


class Extractor:
    """A frozen network mapping images in [-1, 1] to feature vectors (and class logits).

    Attributes:
        id: names the extractor ("lenet-mnist5k-28"); FD is reported as "FD-<id>@N".
        sha256: hex SHA-256 of the weights (the torch.save bytes of the state dict).
        kind: "classifier", "random" or "inception".
        channels: image channels it takes (grey images are repeated for 3-channel Inception).
        resolution: square size inputs are resized to, or None when the model resizes.
        num_classes: classes of the classifier head; None without one.
        accuracy: held-out accuracy of a classifier; None otherwise.
        split: the data split the classifier was trained / tested on; None otherwise.
        trained: True when this call trained it (a cache miss), False when loaded or built.
        train_seconds: training wall time when trained now, else the cached figure or None.
        model: the eval-mode module, with ``features(x)`` and, for classifiers, ``head``.
        device: where the model lives.
    """

    def __init__(
        self,
        *,
        model: nn.Module,
        id: str,
        sha256: str,
        kind: str,
        channels: int,
        resolution: int | None,
        device: torch.device,
        num_classes: int | None = None,
        accuracy: float | None = None,
        split: str | None = None,
        trained: bool = False,
        train_seconds: float | None = None,
    ) -> None:
        self.model = model.to(device).eval()
        self.id = id
        self.sha256 = sha256
        self.kind = kind
        self.channels = channels
        self.resolution = resolution
        self.device = torch.device(device)
        self.num_classes = num_classes
        self.accuracy = accuracy
        self.split = split
        self.trained = trained
        self.train_seconds = train_seconds

    def __repr__(self) -> str:
        acc = "" if self.accuracy is None else f", accuracy={self.accuracy:.4f}"
        return f"Extractor({self.id!r}, sha256={self.sha256[:12]}...{acc})"

    def info(self) -> dict:
        """The JSON-ready fields that identify this extractor in a record."""
        return {
            "extractor": self.id,
            "extractor_sha256": self.sha256,
            "extractor_kind": self.kind,
            "extractor_accuracy": self.accuracy,
        }

    @torch.no_grad()
    def extract(
        self, images: torch.Tensor, batch_size: int = DEFAULT_BATCH
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Features and class log-probabilities of float images in [-1, 1], (N, C, H, W).

        Returns float32 CPU tensors: features (N, D) and log_softmax of the logits
        (N, num_classes), the latter None without a classifier head.
        """
        feats, logps = [], []
        for start in range(0, len(images), batch_size):
            x = self.prepare(images[start : start + batch_size])
            f = self.model.features(x)
            feats.append(f.float().cpu())
            if self.num_classes is not None:
                logps.append(F.log_softmax(self.model.head(f).float(), dim=1).cpu())
        empty = torch.empty(0, 0)
        features = torch.cat(feats) if feats else empty
        log_probs = (torch.cat(logps) if logps else empty) if self.num_classes else None
        return features, log_probs

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """Move to the device as float32, match channels and resize to the model's input."""
        if images.ndim != 4:
            raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
        x = images.to(self.device, torch.float32)
        if x.shape[1] != self.channels:
            if self.kind == "inception" and x.shape[1] == 1:
                x = x.expand(-1, 3, -1, -1)  # grey as RGB, as FID users do for MNIST
            else:
                raise ValueError(
                    f"extractor {self.id} takes {self.channels}-channel images, "
                    f"got {x.shape[1]} channel(s)"
                )
        if self.resolution is None:
            return x
        return resize_square(x, self.resolution)


def resize_square(x: torch.Tensor, size: int) -> torch.Tensor:
    """Center-crop to a square, then bilinear resize to ``size`` (antialiased when shrinking),
    as bench.data resizes real images."""
    h, w = x.shape[-2:]
    if h != w:
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        x = x[..., top : top + side, left : left + side]
    if x.shape[-1] == size:
        return x
    shrink = x.shape[-1] > size
    return F.interpolate(
        x, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink
    )


def get_extractor(
    dataset: str,
    data_dir: str | os.PathLike[str] | None,
    image_shape: tuple[int, int, int],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> Extractor:
    """The extractor for a data set: its cached classifier, trained now if missing.

    Labelled data (every bench.data.LABELLED_DATASETS entry; image-folder with at least
    two class folders) gets a classifier trained on the training split of
    ``load_labelled(dataset, data_dir, ..., seed=SPLIT_SEED)`` with ``seed``; synthetic
    data and one-class image folders get ``random_extractor``. Only the channel count of
    ``image_shape`` matters: images are resized to the extractor's own resolution.

    The cache key is the extractor id (architecture, data set, resolution, seed when not
    0), EXTRACTOR_VERSION, and for image-folder a hash of the folder's file list. The
    cache folder is ``cache_dir``, else $GAN_BENCH_CACHE, else ~/.cache/gan-bench (an
    ``extractors`` sub-folder). Training runs only on a cache miss.

    Raises:
        bench.data.DataError: a bad data set / folder (as load_labelled).
        QualityError: the trained classifier is below MIN_ACCURACY for the data set
            (nothing is cached then).
    """
    device = torch.device(device)
    channels = int(image_shape[0])
    if dataset == "synthetic":
        return random_extractor(channels, seed=seed, device=device)
    if dataset not in data.LABELLED_DATASETS:
        raise data.DataError(
            f"unknown dataset {dataset!r}: choose one of synthetic, "
            f"{', '.join(data.LABELLED_DATASETS)}"
        )
    if dataset == "mnist-full":
        data.check_mnist_full()
    else:
        data.check_dataset(dataset, data_dir)
    tag = dataset
    if dataset == "image-folder":
        root = Path(os.path.expanduser(os.fspath(data_dir)))
        if sum(1 for entry in os.scandir(root) if entry.is_dir()) < 2:
            return random_extractor(channels, seed=seed, device=device)
        tag = f"imagefolder-{_folder_digest(root)}"
    arch = networks.classifier_arch(channels)
    factory = networks.ARCHITECTURES[arch]
    resolution = factory.resolution
    extractor_id = f"{arch}-{tag}-{resolution}" + (f"-s{seed}" if seed else "")
    key = f"{extractor_id}-v{EXTRACTOR_VERSION}"
    folder = cache.resolve_cache_dir(cache_dir)

    entry = cache.load_entry(folder, key)
    if entry is not None:
        state, meta = entry
        model = factory(channels, int(meta["num_classes"]))
        model.load_state_dict(state)
        return Extractor(
            model=model,
            id=extractor_id,
            sha256=meta["sha256"],
            kind="classifier",
            channels=channels,
            resolution=resolution,
            device=device,
            num_classes=int(meta["num_classes"]),
            accuracy=float(meta["heldout_accuracy"]),
            split=meta["split"],
            trained=False,
            train_seconds=meta.get("train_seconds"),
        )

    labelled = data.load_labelled(
        dataset, data_dir, (channels, resolution, resolution), seed=SPLIT_SEED
    )
    num_classes = labelled.num_classes
    model = training.build_seeded(lambda: factory(channels, num_classes), seed)
    result = training.train_classifier(
        model,
        labelled.train_images,
        labelled.train_labels,
        labelled.heldout_images,
        labelled.heldout_labels,
        seed=seed,
        device=device,
        flip=arch == "vgg",
    )
    accuracy = result["heldout_accuracy"]
    floor = MIN_ACCURACY.get(dataset)
    if floor is not None and accuracy < floor:
        raise QualityError(
            f"feature classifier {extractor_id} reached {accuracy:.2%} held-out accuracy on "
            f"{labelled.split}, below the {floor:.0%} its metrics need; nothing was cached "
            f"(try another --seed, or report this with your torch version)"
        )
    blob = cache.state_dict_bytes(model.state_dict())
    sha = cache.sha256_bytes(blob)
    meta = {
        "extractor": extractor_id,
        "sha256": sha,
        "version": EXTRACTOR_VERSION,
        "arch": arch,
        "dataset": dataset,
        "resolution": resolution,
        "channels": channels,
        "num_classes": num_classes,
        "seed": seed,
        "split": labelled.split,
        "heldout_accuracy": accuracy,
        "train_seconds": result["train_seconds"],
        "epochs": result["epochs"],
        "trained_on": device.type,
        "torch": torch.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    cache.save_entry(folder, key, blob, meta)
    return Extractor(
        model=model,
        id=extractor_id,
        sha256=sha,
        kind="classifier",
        channels=channels,
        resolution=resolution,
        device=device,
        num_classes=num_classes,
        accuracy=accuracy,
        split=labelled.split,
        trained=True,
        train_seconds=result["train_seconds"],
    )


def random_extractor(
    channels: int, *, seed: int = 0, device: torch.device | str = "cpu"
) -> Extractor:
    """A fixed-seed random CNN embedding (id "randcnn-s<seed>-c<channels>r32"), not cached:
    building it takes milliseconds and the same seed always gives the same weights."""
    if channels < 1:
        raise ValueError(f"channels must be at least 1, got {channels}")
    model = training.build_seeded(lambda: networks.RandomCNN(channels), seed)
    sha = cache.sha256_bytes(cache.state_dict_bytes(model.state_dict()))
    return Extractor(
        model=model,
        id=f"randcnn-s{seed}-c{channels}r{networks.RandomCNN.resolution}",
        sha256=sha,
        kind="random",
        channels=channels,
        resolution=networks.RandomCNN.resolution,
        device=torch.device(device),
    )


def _folder_digest(root: Path) -> str:
    """8 hex digits naming an image folder's content: its path and every file's relative
    path and size (not the bytes: hashing a large photo folder would take minutes)."""
    digest = hashlib.sha256(os.fspath(root.resolve()).encode())
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            digest.update(f"{path.relative_to(root)}\0{path.stat().st_size}\0".encode())
    return digest.hexdigest()[:8]
