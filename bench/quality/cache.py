"""Where trained feature classifiers live on disk, and how a file is named and verified.

One classifier is two files side by side: ``<key>.pt`` (the state dict, torch.save) and
``<key>.json`` (what it is: id, sha256 of the .pt file, held-out accuracy, split, ...).
Both are written to a temporary name and renamed into place, so a reader never sees a
half-written file and two processes training the same key at once cannot corrupt it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from pathlib import Path

import torch

# Environment variable that overrides the default cache directory.
CACHE_ENV = "GAN_BENCH_CACHE"
# Default cache directory, as other tools use ~/.cache/<tool>.
DEFAULT_CACHE_DIR = "~/.cache/gan-bench"
_SUBDIR = "extractors"


def resolve_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The extractor cache folder: the argument, else $GAN_BENCH_CACHE, else ~/.cache/gan-bench.

    Nothing is created here; the folder is made when a classifier is first saved.
    """
    if cache_dir is None or os.fspath(cache_dir) == "":
        cache_dir = os.environ.get(CACHE_ENV) or DEFAULT_CACHE_DIR
    return Path(os.path.expanduser(os.fspath(cache_dir))) / _SUBDIR


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of a byte string."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def state_dict_bytes(state_dict: dict[str, torch.Tensor]) -> bytes:
    """torch.save bytes of a state dict (CPU tensors): exactly what save_entry writes.

    The bytes depend only on the names and tensors (no timestamps), so the same weights
    always hash the same. Saving to a path instead would differ: torch.save names the
    archive's top folder after the file, so entries are written from these bytes.
    """
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in state_dict.items()}, buffer)
    return buffer.getvalue()


def load_entry(folder: Path, key: str) -> tuple[dict[str, torch.Tensor], dict] | None:
    """The cached (state dict, metadata) for a key, or None when absent or not intact.

    An entry whose .pt file no longer matches the sha256 in its .json (truncated, edited)
    counts as absent, so the caller retrains and overwrites it.
    """
    weights, meta_path = folder / f"{key}.pt", folder / f"{key}.json"
    if not (weights.is_file() and meta_path.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
        if sha256_file(weights) != meta.get("sha256"):
            return None
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except (OSError, ValueError, RuntimeError, EOFError):
        return None
    if not isinstance(state, dict):
        return None
    return state, meta


def save_entry(folder: Path, key: str, data: bytes, meta: dict) -> None:
    """Write ``<key>.pt`` (the given torch.save bytes) and then ``<key>.json`` atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    _atomic_write(folder / f"{key}.pt", data)
    # The .json goes last: an entry counts only once its metadata exists.
    _atomic_write(folder / f"{key}.json", (json.dumps(meta, indent=2) + "\n").encode())


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
