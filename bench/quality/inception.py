"""Inception-v3 features for a true FID, from a weights file the user names. Never
downloads anything.

``load_inception(path)`` accepts exactly three kinds of file:

1. The pytorch-fid / torch-fidelity FID weights (``pt_inception-2015-12-05-6726825d.pth``,
   the TF 2015-12-05 graph ported to PyTorch): a state dict with torchvision's Inception3
   key names, a 1008-way ``fc``, no AuxLogits. Loaded into ``FIDInceptionV3`` below,
   pytorch-fid's architecture rebuilt here (its FIDInceptionA/C/E_1/E_2 blocks: average
   pools that exclude padding, a max pool in the last block), so torchvision is not
   needed. Features: the 2048-d average pool after Mixed_7c, inputs resized to 299x299
   with F.interpolate(bilinear, align_corners=False) as pytorch-fid does. (torch-fidelity
   and clean-fid resize like TensorFlow 1; their FIDs differ from pytorch-fid's slightly.)
2. A state dict of torchvision's ``inception_v3`` (1000-way fc, AuxLogits optional),
   when torchvision is installed. Features: the 2048-d average pool; images are fed in
   [-1, 1] (transform_input off), the range the Google weights were trained on.
3. A TorchScript file (``torch.jit.save``). Called as ``module(x)`` with x float32
   (N, 3, H, W) in [-1, 1] at the generator's size; it must return (N, D) features (or
   (N, D, 1, 1), or a tuple / list whose first element is that). A module whose forward
   takes ``return_features`` (the StyleGAN2-ADA / clean-fid ``inception-2015-12-05.pt``)
   is called as ``module(x, return_features=True)`` with x in [0, 255] instead, its
   convention; it resizes internally.

Grey images are repeated to three channels. The record carries the file's sha256.
Anything else raises InceptionWeightsError (a ValueError) saying what was found.
"""

from __future__ import annotations

import os
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from bench.quality.cache import sha256_file
from bench.quality.errors import InceptionWeightsError
from bench.quality.extractor import Extractor

FID_FEATURES = 2048
_FID_CLASSES = 1008  # the TF graph's classifier: 1000 ImageNet classes + 8 unused
_TV_CLASSES = 1000
_INPUT_SIZE = 299


class BasicConv2d(nn.Module):
    """Conv (no bias), BatchNorm (eps 0.001, the TF graph's), ReLU: torchvision's naming."""

    def __init__(self, c_in: int, c_out: int, **kwargs) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(c_out, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool(x: torch.Tensor) -> torch.Tensor:
    # TF's average pooling divides by the number of real (not padded) pixels.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class FIDInceptionA(nn.Module):
    def __init__(self, c_in: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(c_in, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(c_in, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(c_in, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(c_in, pool_features, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([b1, b5, b3, self.branch_pool(_avg_pool(x))], 1)


class InceptionB(nn.Module):
    def __init__(self, c_in: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(c_in, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(c_in, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3(x)
        dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([b3, dbl, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class FIDInceptionC(nn.Module):
    def __init__(self, c_in: int, channels_7x7: int) -> None:
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(c_in, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(c_in, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(c_in, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(c_in, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        dbl = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4):
            dbl = layer(dbl)
        dbl = self.branch7x7dbl_5(dbl)
        return torch.cat([b1, b7, dbl, self.branch_pool(_avg_pool(x))], 1)


class InceptionD(nn.Module):
    def __init__(self, c_in: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(c_in, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(c_in, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_1(x)
        for layer in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            b7 = layer(b7)
        return torch.cat([b3, b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class FIDInceptionE(nn.Module):
    """pytorch-fid's FIDInceptionE_1 (average pool) or, with ``max_pool``, FIDInceptionE_2:
    the TF graph's last block pools with max, a bug pytorch-fid reproduces on purpose."""

    def __init__(self, c_in: int, *, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = BasicConv2d(c_in, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(c_in, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(c_in, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(c_in, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        dbl = torch.cat([self.branch3x3dbl_3a(dbl), self.branch3x3dbl_3b(dbl)], 1)
        if self.max_pool:
            pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        else:
            pooled = _avg_pool(x)
        return torch.cat([b1, b3, dbl, self.branch_pool(pooled)], 1)


class FIDInceptionV3(nn.Module):
    """pytorch-fid's FID Inception-v3, up to the 2048-d pool, with torchvision's key names.

    ``features(x)``: x float (N, 3, H, W) in [-1, 1] -> (N, 2048).
    """

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)  # (N, 32, 149, 149)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)  # (N, 32, 147, 147)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)  # (N, 64, 147, 147)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)  # after pool: (N, 80, 73, 73)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)  # (N, 192, 71, 71)
        self.Mixed_5b = FIDInceptionA(192, pool_features=32)  # after pool: (N, 256, 35, 35)
        self.Mixed_5c = FIDInceptionA(256, pool_features=64)  # (N, 288, 35, 35)
        self.Mixed_5d = FIDInceptionA(288, pool_features=64)  # (N, 288, 35, 35)
        self.Mixed_6a = InceptionB(288)  # (N, 768, 17, 17)
        self.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
        self.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6e = FIDInceptionC(768, channels_7x7=192)  # (N, 768, 17, 17)
        self.Mixed_7a = InceptionD(768)  # (N, 1280, 8, 8)
        self.Mixed_7b = FIDInceptionE(1280, max_pool=False)  # (N, 2048, 8, 8)
        self.Mixed_7c = FIDInceptionE(2048, max_pool=True)  # (N, 2048, 8, 8)
        self.fc = nn.Linear(FID_FEATURES, _FID_CLASSES)  # in the weights file; unused here

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=(_INPUT_SIZE, _INPUT_SIZE), mode="bilinear", align_corners=False)
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)  # (N, 2048)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class _TorchvisionFeatures(nn.Module):
    """torchvision's Inception3 cut at its average pool: features(x) -> (N, 2048)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def features(self, x: torch.Tensor) -> torch.Tensor:
        net = self.net
        x = F.interpolate(x, size=(_INPUT_SIZE, _INPUT_SIZE), mode="bilinear", align_corners=False)
        x = net.maxpool1(net.Conv2d_2b_3x3(net.Conv2d_2a_3x3(net.Conv2d_1a_3x3(x))))
        x = net.maxpool2(net.Conv2d_4a_3x3(net.Conv2d_3b_1x1(x)))
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(net, f"Mixed_{name}")(x)
        return torch.flatten(net.avgpool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class _ScriptedFeatures(nn.Module):
    """Adapts a TorchScript module to features(x) under the contract in the module docstring."""

    def __init__(self, module: torch.jit.ScriptModule, stylegan_convention: bool) -> None:
        super().__init__()
        self.module = module
        self.stylegan_convention = stylegan_convention

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if self.stylegan_convention:
            out = self.module((x + 1.0) * 127.5, return_features=True)
        else:
            out = self.module(x)
        if isinstance(out, (tuple, list)):
            out = out[0]
        if not isinstance(out, torch.Tensor):
            raise InceptionWeightsError(
                f"the TorchScript model returned {type(out).__name__}, not a feature tensor"
            )
        if out.ndim == 4 and out.shape[2:] == (1, 1):
            out = out.flatten(1)
        if out.ndim != 2 or out.shape[0] != x.shape[0]:
            raise InceptionWeightsError(
                f"the TorchScript model returned shape {tuple(out.shape)} for {x.shape[0]} "
                "images; expected (N, D) features"
            )
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def load_inception(
    path: str | os.PathLike[str], *, device: torch.device | str = "cpu"
) -> Extractor:
    """Load Inception weights from ``path`` as an Extractor (kind "inception").

    See the module docstring for the three accepted files. The id names the kind and the
    first 8 hex digits of the file's sha256: "inception-v3-fid-<sha8>",
    "inception-v3-tv-<sha8>" or "torchscript-<sha8>"; ``sha256`` is the file's.

    Raises:
        InceptionWeightsError: the file is missing, unreadable, or not one of the three.
    """
    path = Path(os.path.expanduser(os.fspath(path)))
    if not path.exists():
        raise InceptionWeightsError(
            f"Inception weights file {path} does not exist (nothing is downloaded: pass the "
            "path of pytorch-fid's pt_inception-2015-12-05-6726825d.pth, a torchvision "
            "inception_v3 state dict, or a TorchScript file)"
        )
    if not path.is_file():
        raise InceptionWeightsError(f"Inception weights path {path} is not a file")
    sha = sha256_file(path)
    device = torch.device(device)
    if _is_torchscript(path):
        try:
            with warnings.catch_warnings():
                # torch 2.10+ marks torch.jit.load deprecated (FutureWarning); it still
                # loads, and the TorchScript Inception files in use are this format.
                warnings.simplefilter("ignore", FutureWarning)
                module = torch.jit.load(os.fspath(path), map_location=device)
        except (RuntimeError, ValueError) as exc:
            raise InceptionWeightsError(
                f"{path} could not be loaded as TorchScript: {exc}"
            ) from exc
        names = [arg.name for arg in module.forward.schema.arguments]
        model = _ScriptedFeatures(module.eval(), "return_features" in names)
        return _extractor(model, f"torchscript-{sha[:8]}", sha, device)

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and torch errors alike: none of them is a model
        raise InceptionWeightsError(
            f"{path} is neither TorchScript nor a readable state dict "
            f"({type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:200]})"
        ) from exc
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]  # checkpoints that wrap the weights
    if not isinstance(state, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise InceptionWeightsError(
            f"{path} holds {type(state).__name__}, not a state dict of tensors"
        )
    fc = state.get("fc.weight")
    if fc is None or "Mixed_7c.branch_pool.conv.weight" not in state:
        raise InceptionWeightsError(
            f"{path} is a state dict but not an Inception-v3 one (no Mixed_7c / fc keys)"
        )
    if tuple(fc.shape) == (_FID_CLASSES, FID_FEATURES):
        model = FIDInceptionV3()
        _load_strict(model, state, path, "pytorch-fid FID Inception")
        return _extractor(model, f"inception-v3-fid-{sha[:8]}", sha, device)
    if tuple(fc.shape) == (_TV_CLASSES, FID_FEATURES):
        try:
            from torchvision.models import inception_v3
        except ImportError as exc:
            raise InceptionWeightsError(
                f"{path} is a torchvision inception_v3 state dict, which needs torchvision "
                f"({exc}); install it, or use pytorch-fid's FID weights"
            ) from exc
        aux = any(key.startswith("AuxLogits.") for key in state)
        net = inception_v3(weights=None, aux_logits=aux, init_weights=False, transform_input=False)
        _load_strict(net, state, path, "torchvision inception_v3")
        return _extractor(_TorchvisionFeatures(net), f"inception-v3-tv-{sha[:8]}", sha, device)
    raise InceptionWeightsError(
        f"{path}: fc.weight has shape {tuple(fc.shape)}; expected (1008, 2048) (pytorch-fid) "
        "or (1000, 2048) (torchvision)"
    )


def _is_torchscript(path: Path) -> bool:
    # torch.jit.save writes a zip with a code/ folder and constants.pkl; torch.save's zip
    # holds data.pkl only, and a legacy torch.save file is not a zip at all.
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(n.endswith("constants.pkl") or "/code/" in n for n in archive.namelist())


def _load_strict(model: nn.Module, state: Mapping, path: Path, what: str) -> None:
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0:3]
        raise InceptionWeightsError(
            f"{path} does not fit the {what} architecture: {' '.join(first)}"
        ) from exc


def _extractor(model: nn.Module, extractor_id: str, sha: str, device: torch.device) -> Extractor:
    return Extractor(
        model=model,
        id=extractor_id,
        sha256=sha,
        kind="inception",
        channels=3,
        resolution=None,  # each model resizes to 299 itself
        device=device,
    )
