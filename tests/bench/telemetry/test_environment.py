"""bench.telemetry.environment and bench.telemetry.hardware: what a record says about its machine.

All CPU and fast. NVML is replaced by a fake module wherever the answer must not
depend on whether this machine has a GPU.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from bench.telemetry import environment as env
from bench.telemetry.hardware import PRECISIONS, peak_tflops

EXPECTED_KEYS = {
    "python", "torch", "triton", "cuda", "cudnn", "nccl", "device_type", "device_name",
    "device_count", "device_memory_mib", "compute_capability", "driver", "cpu_model",
    "cpu_count", "hostname", "os", "world_size", "git_sha", "git_dirty", "timestamp",
    "nvml_error",
}  # fmt: skip

MIB = 1024 * 1024
UUID_A = "GPU-aaaaaaaa-0000-0000-0000-000000000000"
UUID_B = "GPU-bbbbbbbb-0000-0000-0000-000000000000"
UUID_C = "GPU-cccccccc-0000-0000-0000-000000000000"


class FakeNVMLError(Exception):
    pass


class FakeNVML:
    """Just enough of pynvml: three GPUs in NVML (PCI) order, A, B, C."""

    NVML_CLOCK_SM = 1
    NVML_CLOCK_MEM = 2

    def __init__(self, init_error: Exception | None = None) -> None:
        self.init_error = init_error
        self.init_calls = 0
        self.shutdown_calls = 0
        self.gpus = [
            {"uuid": UUID_A, "name": "NVIDIA H100 80GB HBM3", "used": 1 * MIB, "sm": 1980},
            {"uuid": UUID_B, "name": "NVIDIA H100 80GB HBM3", "used": 2 * MIB, "sm": 1755},
            {"uuid": UUID_C, "name": b"NVIDIA A100-SXM4-80GB", "used": 3 * MIB, "sm": 1410},
        ]

    def nvmlInit(self) -> None:  # noqa: N802 (pynvml's names)
        self.init_calls += 1
        if self.init_error is not None:
            raise self.init_error

    def nvmlShutdown(self) -> None:  # noqa: N802
        self.shutdown_calls += 1

    def nvmlSystemGetDriverVersion(self) -> str:  # noqa: N802
        return "550.54.15"

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:  # noqa: N802
        if not 0 <= index < len(self.gpus):
            raise FakeNVMLError("Invalid Argument")
        return index

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> int:  # noqa: N802
        for i, gpu in enumerate(self.gpus):
            if gpu["uuid"] == uuid:
                return i
        raise FakeNVMLError("Not Found")

    def nvmlDeviceGetUUID(self, handle: int) -> str:  # noqa: N802
        return self.gpus[handle]["uuid"]

    def nvmlDeviceGetName(self, handle: int) -> str | bytes:  # noqa: N802
        return self.gpus[handle]["name"]

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> SimpleNamespace:  # noqa: N802
        used = self.gpus[handle]["used"]
        return SimpleNamespace(used=used, total=80 * 1024 * MIB, free=80 * 1024 * MIB - used)

    def nvmlDeviceGetClockInfo(self, handle: int, kind: int) -> int:  # noqa: N802
        return self.gpus[handle]["sm"] if kind == self.NVML_CLOCK_SM else 2619

    def nvmlDeviceGetMaxClockInfo(self, handle: int, kind: int) -> int:  # noqa: N802
        if handle == 2:
            raise FakeNVMLError("Not Supported")  # as on a MIG slice
        return 1980

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: int) -> int:  # noqa: N802
        return 700_000  # milliwatts


@pytest.fixture
def nvml(monkeypatch: pytest.MonkeyPatch):
    """Install a fake pynvml for one test, with CUDA treated as not initialised."""

    def install(fake: FakeNVML) -> FakeNVML:
        monkeypatch.setitem(sys.modules, "pynvml", fake)
        env._reset_nvml()
        return fake

    # Keep the torch-UUID shortcut out of the way on a GPU box where CUDA is live.
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    yield install
    env._reset_nvml()


# ------------------------------------------------------------ collect_environment


def test_collect_environment_cpu_fields() -> None:
    record = env.collect_environment(torch.device("cpu"), world_size=2)
    assert set(record) == EXPECTED_KEYS
    assert json.loads(json.dumps(record)) == record

    assert record["device_type"] == "cpu"
    assert isinstance(record["device_name"], str) and record["device_name"]
    assert record["device_count"] == 0
    assert record["device_memory_mib"] is None
    assert record["compute_capability"] is None
    assert record["world_size"] == 2
    assert record["torch"] == torch.__version__
    assert record["python"].count(".") == 2
    assert isinstance(record["cpu_count"], int) and record["cpu_count"] >= 1
    assert isinstance(record["hostname"], str) and isinstance(record["os"], str)
    assert record["cpu_model"] is None or isinstance(record["cpu_model"], str)
    assert record["triton"] is None or isinstance(record["triton"], str)
    assert record["cudnn"] is None or isinstance(record["cudnn"], int)
    assert record["nccl"] is None or re.fullmatch(r"\d+\.\d+\.\d+", record["nccl"])

    # Exactly one of: a driver version, or the reason there is none.
    assert (record["driver"] is None) != (record["nvml_error"] is None)
    if record["nvml_error"] is not None:
        assert "\n" not in record["nvml_error"]

    sha, dirty = record["git_sha"], record["git_dirty"]
    assert sha is None or re.fullmatch(r"[0-9a-f]{40}([0-9a-f]{24})?", sha)
    assert dirty is None or isinstance(dirty, bool)
    if sha is None:
        assert dirty is None

    assert record["timestamp"].endswith("Z")
    stamp = datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00"))
    assert stamp.utcoffset().total_seconds() == 0


def test_collect_environment_without_git(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no git anywhere
    record = env.collect_environment(torch.device("cpu"))
    assert record["git_sha"] is None
    assert record["git_dirty"] is None


def test_collect_environment_reports_nvml_failure(nvml) -> None:
    nvml(FakeNVML(init_error=FakeNVMLError("NVML Shared Library Not Found")))
    record = env.collect_environment(torch.device("cpu"))
    assert record["driver"] is None
    assert record["nvml_error"] == "NVML unavailable: NVML Shared Library Not Found"


def test_collect_environment_reports_driver(nvml) -> None:
    nvml(FakeNVML())
    record = env.collect_environment(torch.device("cpu"))
    assert record["driver"] == "550.54.15"
    assert record["nvml_error"] is None


def test_collect_environment_rejects_bad_world_size() -> None:
    with pytest.raises(ValueError, match="world_size"):
        env.collect_environment(torch.device("cpu"), world_size=0)


def test_cpu_model_from_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Fake CPU 9000\n")
    assert env._cpu_model(cpuinfo) == "Fake CPU 9000"
    # No such file (not Linux): falls back to platform.processor(), which may be "".
    fallback = env._cpu_model(tmp_path / "missing")
    assert fallback is None or isinstance(fallback, str) and fallback


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_info_on_a_real_repository(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()

    def git(*args: str) -> None:
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
            cwd=repo, check=True, capture_output=True,
        )  # fmt: skip

    git("init", "-q")
    assert env._git_info(repo) == (None, None)  # no commit yet
    (repo / "f.txt").write_text("a")
    git("add", "f.txt")
    git("commit", "-q", "-m", "first")
    sha, dirty = env._git_info(repo)
    assert sha is not None and re.fullmatch(r"[0-9a-f]{40}([0-9a-f]{24})?", sha)
    assert dirty is False
    (repo / "f.txt").write_text("b")
    assert env._git_info(repo) == (sha, True)
    # A folder inside the repository is not the checkout's root: no SHA borrowed.
    (repo / "sub").mkdir()
    assert env._git_info(repo / "sub") == (None, None)


def test_importing_environment_does_not_import_triton() -> None:
    code = "import sys, bench.telemetry.environment; print('triton' in sys.modules)"
    root = Path(env.__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------------- NVML


def test_nvml_unavailable_returns_reason(nvml) -> None:
    fake = nvml(FakeNVML(init_error=FakeNVMLError("Driver Not Loaded")))
    info, reason = env.nvml_device_info(0)
    assert info is None and reason == "NVML unavailable: Driver Not Loaded"
    used, reason = env.gpu_memory_used_mib(0)
    assert used is None and reason == "NVML unavailable: Driver Not Loaded"
    assert fake.init_calls == 1  # the failure is remembered, not retried per call


def test_nvml_missing_module_returns_reason(nvml, monkeypatch: pytest.MonkeyPatch) -> None:
    nvml(FakeNVML())
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` fail
    info, reason = env.nvml_device_info(0)
    assert info is None and reason.startswith("NVML unavailable: ")


def test_nvml_real_module_never_raises() -> None:
    # Whatever this machine has (no NVML here; a GPU elsewhere), the shape holds.
    env._reset_nvml()
    try:
        info, reason = env.nvml_device_info(0)
        used, used_reason = env.gpu_memory_used_mib(0)
    finally:
        env._reset_nvml()
    assert (info is None) != (reason is None)
    assert (used is None) != (used_reason is None)


def test_nvml_device_info_fields(nvml) -> None:
    fake = nvml(FakeNVML())
    info, reason = env.nvml_device_info(0)
    assert reason is None
    assert info == {
        "driver": "550.54.15",
        "name": "NVIDIA H100 80GB HBM3",
        "memory_used_mib": 1.0,
        "memory_total_mib": 80 * 1024.0,
        "sm_clock_mhz": 1980,
        "max_sm_clock_mhz": 1980,
        "mem_clock_mhz": 2619,
        "power_limit_w": 700.0,
    }
    json.dumps(info)
    assert env.gpu_memory_used_mib(1) == (2.0, None)
    env.nvml_device_info(1)
    assert fake.init_calls == 1  # initialised once per process...
    assert fake.shutdown_calls == 0  # ...and never shut down between calls


def test_nvml_unsupported_optional_fields_are_none(nvml) -> None:
    nvml(FakeNVML())
    info, reason = env.nvml_device_info(2)
    assert reason is None
    assert info["name"] == "NVIDIA A100-SXM4-80GB"  # bytes from old pynvml decoded
    assert info["max_sm_clock_mhz"] is None
    assert info["sm_clock_mhz"] == 1410


@pytest.mark.parametrize(
    ("visible", "torch_index", "expected_used_mib"),
    [
        ("2,0", 0, 3.0),  # torch cuda:0 is NVML device 2
        ("2,0", 1, 1.0),
        (" 1 , 2", 1, 3.0),  # CUDA tolerates spaces
        ("1,-1,0", 0, 2.0),  # -1 ends the list
        (f"{UUID_C},{UUID_A}", 0, 3.0),  # UUIDs
        (f"{UUID_C},{UUID_A}", 1, 1.0),
        ("GPU-bbbb", 0, 2.0),  # a unique UUID prefix, as CUDA accepts
    ],
)
def test_cuda_visible_devices_mapping(
    nvml, monkeypatch: pytest.MonkeyPatch, visible: str, torch_index: int, expected_used_mib
) -> None:
    nvml(FakeNVML())
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert env.gpu_memory_used_mib(torch_index) == (expected_used_mib, None)
    info, _ = env.nvml_device_info(torch_index)
    assert info["memory_used_mib"] == expected_used_mib


@pytest.mark.parametrize(
    ("visible", "torch_index"),
    [
        ("", 0),  # no devices
        ("-1", 0),
        ("0,1", 2),  # past the end of the list
        ("0,0", 0),  # a repeated entry hides every device, as in CUDA
        ("GPU-", 0),  # a prefix matching every GPU is ambiguous
        ("GPU-ffff", 0),  # matches nothing
        ("7", 0),  # NVML has no device 7
    ],
)
def test_cuda_visible_devices_unmappable(
    nvml, monkeypatch: pytest.MonkeyPatch, visible: str, torch_index: int
) -> None:
    nvml(FakeNVML())
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    info, reason = env.nvml_device_info(torch_index)
    assert info is None and reason.startswith(f"NVML query for cuda:{torch_index} failed")
    used, reason = env.gpu_memory_used_mib(torch_index)
    assert used is None and reason


def test_torch_uuid_is_preferred_when_cuda_is_initialised(
    nvml, monkeypatch: pytest.MonkeyPatch
) -> None:
    nvml(FakeNVML())
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # would say NVML device 0 (A)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    props = SimpleNamespace(uuid=UUID_B.removeprefix("GPU-"))  # torch omits the prefix
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: props)
    assert env.gpu_memory_used_mib(0) == (2.0, None)


# ------------------------------------------------------------------ peak_tflops


@pytest.mark.parametrize(
    ("name", "precision", "expected"),
    [
        ("NVIDIA H100 80GB HBM3", "bf16", 989.4),  # SXM5
        ("NVIDIA H100 80GB HBM3", "fp32", 67.0),
        ("NVIDIA H100 80GB HBM3", "tf32", 494.7),
        ("NVIDIA H100 PCIe", "bf16", 756.0),
        ("NVIDIA H100 PCIe", "fp32", 51.0),
        ("nvidia h100 pcie", "fp16", 756.0),  # case-insensitive
        ("NVIDIA H100 NVL", "bf16", 835.5),
        ("NVIDIA H200", "bf16", 989.4),
        ("NVIDIA A100-SXM4-80GB", "tf32", 156.0),
        ("NVIDIA A100-PCIE-40GB", "bf16", 312.0),
        ("NVIDIA A100 80GB PCIe", "fp32", 19.5),
        ("NVIDIA L4", "bf16", 121.0),
        ("NVIDIA L40S", "bf16", 362.05),  # not L4's rate
        ("NVIDIA A10", "fp16", 125.0),
        ("NVIDIA GeForce RTX 4090", "fp16", 165.2),
        ("Tesla T4", "fp16", 65.0),
    ],
)
def test_peak_tflops_known(name: str, precision: str, expected: float) -> None:
    value, source = peak_tflops(name, precision)
    assert value == pytest.approx(expected)
    assert source and "dense" in source


def test_h100_sxm_and_pcie_differ() -> None:
    sxm, _ = peak_tflops("NVIDIA H100 80GB HBM3", "bf16")
    pcie, _ = peak_tflops("NVIDIA H100 PCIe", "bf16")
    assert sxm > pcie


@pytest.mark.parametrize(
    "name",
    [
        "NVIDIA Imaginary X1",
        "NVIDIA GB200",  # contains "B200" but is a different part
        "NVIDIA A10G",  # no datasheet; must not fall through to the A10
        "NVIDIA H800",
        "NVIDIA GeForce RTX 4090 D",
        "NVIDIA A100-SXM4-40GB MIG 1g.5gb",
        "",
    ],
)
def test_peak_tflops_unknown_device(name: str) -> None:
    value, reason = peak_tflops(name, "bf16")
    assert value is None
    assert reason.startswith("peak unknown for device")


def test_peak_tflops_missing_precision_on_known_device() -> None:
    value, reason = peak_tflops("Tesla T4", "bf16")
    assert value is None and "bf16" in reason


@pytest.mark.parametrize("name", ["cpu", "Intel(R) Xeon(R) Processor", "AMD EPYC 7R13 Processor"])
def test_peak_tflops_cpu(name: str) -> None:
    assert peak_tflops(name, "fp32") == (None, "no published peak for CPUs")


@pytest.mark.parametrize("precision", ["fp8", "FP32", "float32", ""])
def test_peak_tflops_unknown_precision(precision: str) -> None:
    with pytest.raises(ValueError, match="precision"):
        peak_tflops("NVIDIA H100 80GB HBM3", precision)


def test_peak_tflops_table_is_consistent() -> None:
    # Tensor-core rates are never below the plain FP32 rate on any listed board.
    for name in ["NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB", "NVIDIA L40", "NVIDIA L4"]:
        rates = {p: peak_tflops(name, p)[0] for p in PRECISIONS}
        assert all(v is not None and v > 0 for v in rates.values())
        assert rates["fp32"] <= rates["tf32"] <= rates["bf16"] == rates["fp16"]


# ------------------------------------------------------------------ peak RSS


def _current_rss_mib() -> float | None:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    import resource

    return pages * resource.getpagesize() / MIB


def test_peak_rss_grows_with_a_big_array() -> None:
    before = env.peak_rss_mib()
    assert before > 0
    # The peak only moves once current RSS exceeds it, so allocate past the gap
    # (the test process may have peaked earlier) plus a clear margin.
    current = _current_rss_mib()
    gap = 0.0 if current is None else max(0.0, before - current)
    size_mib = int(gap) + 128
    array = np.ones(size_mib * MIB, dtype=np.uint8)  # ones: every page is written
    after = env.peak_rss_mib()
    assert array[-1] == 1
    assert after >= before + 64
