"""load_inception: every error path, the FID architecture against torchvision's key layout,
state-dict round trips with random weights, and TorchScript stand-ins (no real Inception
weights exist offline)."""

from __future__ import annotations

import pickle

import pytest
import torch
from torch import nn

from bench.quality import InceptionWeightsError, evaluate_quality, load_inception
from bench.quality.cache import sha256_file
from bench.quality.inception import FIDInceptionV3
from bench.quality.reference import reference_from_images

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")


class TinyFeatures(nn.Module):
    """Stand-in for a scripted Inception: (N, 3, H, W) -> (N, 4)."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(3, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x.mean(dim=(2, 3)))


class StyleGANConvention(nn.Module):
    """Like StyleGAN2-ADA's inception-2015-12-05.pt: takes [0, 255], return_features flag."""

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        pooled = x.mean(dim=(2, 3))
        return pooled if return_features else pooled.sum(dim=1, keepdim=True)


class WrongShape(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def script(module: nn.Module, path):
    torch.jit.save(torch.jit.script(module), str(path))
    return path


def test_torchscript_round_trip(tmp_path):
    torch.manual_seed(0)
    module = TinyFeatures().eval()
    path = script(module, tmp_path / "tiny.pt")
    ext = load_inception(path)
    sha = sha256_file(path)
    assert ext.kind == "inception" and ext.sha256 == sha
    assert ext.id == f"torchscript-{sha[:8]}"
    x = torch.rand(5, 3, 16, 16) * 2 - 1
    features, log_probs = ext.extract(x)
    assert log_probs is None
    torch.testing.assert_close(features, module(x))
    grey = ext.extract(x[:, :1])[0]  # grey is repeated to RGB
    torch.testing.assert_close(grey, module(x[:, :1].expand(-1, 3, -1, -1)))


def test_torchscript_stylegan_convention_gets_0_255(tmp_path):
    ext = load_inception(script(StyleGANConvention(), tmp_path / "sg.pt"))
    x = torch.rand(3, 3, 8, 8) * 2 - 1
    torch.testing.assert_close(ext.extract(x)[0], ((x + 1) * 127.5).mean(dim=(2, 3)))


def test_torchscript_with_wrong_output_is_refused(tmp_path):
    ext = load_inception(script(WrongShape(), tmp_path / "bad.pt"))
    with pytest.raises(InceptionWeightsError, match=r"expected \(N, D\) features"):
        ext.extract(torch.zeros(2, 3, 8, 8))


def test_inception_fid_alongside_the_domain_metrics(tmp_path):
    torch.manual_seed(1)
    inception = load_inception(script(TinyFeatures(), tmp_path / "tiny.pt"))
    from bench.quality import random_extractor

    real = torch.rand(200, 3, 8, 8, generator=torch.Generator().manual_seed(2)) * 2 - 1
    domain_ref = reference_from_images(real, random_extractor(3), dataset="x", split="s")
    inception_ref = reference_from_images(real, inception, dataset="x", split="s")
    result = evaluate_quality(
        lambda n, g: torch.rand(n, 3, 8, 8, generator=g) * 2 - 1,
        domain_ref,
        n_samples=100,
        inception_reference=inception_ref,
    )
    assert result["inception_fid_name"] == f"FID-{inception.id}@100"
    assert result["inception_sha256"] == inception.sha256 and result["inception_n_real"] == 200
    assert result["inception_fid"] >= 0 and result["fd_name"].startswith("FD-randcnn")


def test_missing_and_non_files(tmp_path):
    with pytest.raises(InceptionWeightsError, match="does not exist.*nothing is downloaded"):
        load_inception(tmp_path / "pt_inception-2015-12-05-6726825d.pth")
    with pytest.raises(InceptionWeightsError, match="not a file"):
        load_inception(tmp_path)
    assert issubclass(InceptionWeightsError, ValueError)


def test_files_that_are_not_models(tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is not a model")
    with pytest.raises(InceptionWeightsError, match="neither TorchScript nor"):
        load_inception(garbage)
    evil = tmp_path / "evil.pth"  # a pickle that weights_only loading refuses to run
    evil.write_bytes(pickle.dumps(object(), protocol=2))
    with pytest.raises(InceptionWeightsError, match="neither TorchScript nor"):
        load_inception(evil)
    tensor = tmp_path / "tensor.pth"
    torch.save([torch.zeros(2)], tensor)
    with pytest.raises(InceptionWeightsError, match="not a state dict"):
        load_inception(tensor)
    other = tmp_path / "linear.pth"
    torch.save(nn.Linear(2, 3).state_dict(), other)
    with pytest.raises(InceptionWeightsError, match="not an Inception-v3"):
        load_inception(other)
    odd_fc = tmp_path / "odd.pth"
    torch.save(
        {"Mixed_7c.branch_pool.conv.weight": torch.zeros(1), "fc.weight": torch.zeros(7, 2048)},
        odd_fc,
    )
    with pytest.raises(InceptionWeightsError, match=r"fc.weight has shape \(7, 2048\)"):
        load_inception(odd_fc)


@pytest.fixture(scope="module")
def fid_weights(tmp_path_factory):
    """A random-weight file in the pytorch-fid layout (the real one cannot be fetched)."""
    torch.manual_seed(3)
    model = FIDInceptionV3()
    path = tmp_path_factory.mktemp("inception") / "fid.pth"
    torch.save(model.state_dict(), path)
    return path, model


def test_fid_layout_matches_torchvision_keys():
    # pytorch-fid builds torchvision's Inception3(num_classes=1008, aux_logits=False) and
    # swaps blocks; its weights file therefore has exactly torchvision's keys and shapes.
    models = pytest.importorskip("torchvision.models")
    tv = models.inception_v3(weights=None, num_classes=1008, aux_logits=False, init_weights=False)
    ours = FIDInceptionV3().state_dict()
    theirs = tv.state_dict()
    assert set(ours) == set(theirs)
    assert all(ours[k].shape == theirs[k].shape for k in ours)


def test_fid_state_dict_round_trip(fid_weights):
    path, model = fid_weights
    ext = load_inception(path)
    assert ext.id == f"inception-v3-fid-{sha256_file(path)[:8]}"
    x = torch.rand(2, 1, 28, 28) * 2 - 1  # grey digits: repeated to RGB, resized to 299
    features, _ = ext.extract(x)
    assert features.shape == (2, 2048)
    with torch.no_grad():
        torch.testing.assert_close(features, model.eval().features(x.expand(-1, 3, -1, -1)))


def test_fid_state_dict_with_missing_keys_is_refused(fid_weights, tmp_path):
    state = torch.load(fid_weights[0], weights_only=True)
    del state["Mixed_6b.branch1x1.conv.weight"]
    broken = tmp_path / "broken.pth"
    torch.save(state, broken)
    with pytest.raises(InceptionWeightsError, match="does not fit the pytorch-fid"):
        load_inception(broken)


def test_torchvision_state_dict(tmp_path):
    models = pytest.importorskip("torchvision.models")
    torch.manual_seed(4)
    net = models.inception_v3(weights=None, aux_logits=True, init_weights=False).eval()
    path = tmp_path / "tv.pth"
    torch.save(net.state_dict(), path)
    ext = load_inception(path)
    assert ext.id.startswith("inception-v3-tv-")
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    seen = {}
    net.avgpool.register_forward_hook(lambda m, i, o: seen.setdefault("pool", o.flatten(1)))
    with torch.no_grad():
        net.transform_input = False
        net(torch.nn.functional.interpolate(x, size=(299, 299), mode="bilinear"))
    torch.testing.assert_close(ext.extract(x)[0], seen["pool"])
