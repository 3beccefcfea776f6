"""What machine and software a benchmark record was measured on.

Everything here is safe on machines without a GPU, without NVML, without triton and
without git: a missing piece becomes ``None`` (plus, for NVML, a one-line reason),
never an exception. Nothing heavy happens at import time: triton and pynvml are
imported on first use.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

MIB = 1024 * 1024

# The project checkout is the folder that holds the `bench` package (the repository
# root in this layout). git is asked about this folder only, see _git_info.
_PROJECT_ROOT = Path(__file__).resolve().parents[2]

_GIT_TIMEOUT_S = 5.0


# --------------------------------------------------------------------------- NVML
#
# pynvml is imported and nvmlInit() called once per process, on first use, under a
# lock. A failure is cached too: on a CPU-only machine every call would otherwise
# retry dlopen("libnvidia-ml.so") in the caller's loop. nvmlShutdown() is never
# called; NVML's handles stay valid until the process exits, which releases them.

_nvml_lock = threading.Lock()
_nvml_tried = False
_nvml_mod: Any = None
_nvml_reason: str | None = None


def checkout_pythonpath(env=os.environ) -> str:
    """PYTHONPATH with this checkout first: a child process or a cluster job started from
    here runs the same code as its parent, installed or not."""
    path = env.get("PYTHONPATH")
    return str(_PROJECT_ROOT) + (os.pathsep + path if path else "")


def _one_line(exc: BaseException) -> str:
    """An exception as one short line: its text, or its type name when it has none."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]


def _reset_nvml() -> None:
    """Forget the cached NVML state so the next call imports and initialises again.

    For tests that swap ``sys.modules["pynvml"]``; the harness never needs it.
    """
    global _nvml_tried, _nvml_mod, _nvml_reason
    with _nvml_lock:
        _nvml_tried, _nvml_mod, _nvml_reason = False, None, None


def _nvml() -> tuple[Any, str | None]:
    """Return ``(pynvml, None)`` after a one-time ``nvmlInit()``, or ``(None, reason)``."""
    global _nvml_tried, _nvml_mod, _nvml_reason
    with _nvml_lock:
        if not _nvml_tried:
            _nvml_tried = True
            try:
                import pynvml

                pynvml.nvmlInit()
                _nvml_mod = pynvml
            except Exception as exc:  # ImportError, NVMLError_LibraryNotFound, driver gone...
                _nvml_reason = f"NVML unavailable: {_one_line(exc)}"
        return _nvml_mod, _nvml_reason


def _text(value: Any) -> str:
    """NVML strings are bytes in old pynvml releases and str in new ones."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _parse_cuda_visible_devices(value: str) -> list[int | str]:
    """The devices CUDA exposes, in torch's order, as NVML indices (int) or UUIDs (str).

    Mirrors the CUDA runtime's parsing as torch re-implements it in
    ``torch.cuda._parse_visible_devices``: the first entry decides between UUIDs
    (``GPU-...`` or ``MIG-...``) and integers; integers are read like ``strtoul``
    (``"1gpu2"`` is 1); the list ends at the first entry that does not fit (so
    ``"0,1,-1,2"`` exposes 0 and 1, and ``""`` or ``"-1"`` nothing); a repeated
    entry makes the whole list empty.
    """
    items = [item.strip() for item in value.split(",")]
    prefix = next((p for p in ("GPU-", "MIG-") if items[0].startswith(p)), None)
    out: list[int | str] = []
    for item in items:
        entry: int | str
        if prefix is not None:
            if not item.startswith(prefix):
                break
            entry = item
        else:
            match = re.match(r"\+?(\d+)", item)
            if match is None:
                break
            entry = int(match.group(1))
        if entry in out:
            return []
        out.append(entry)
    return out


def _handle_by_uuid(nvml: Any, uuid: str) -> Any:
    """NVML handle for a full UUID, or for a unique UUID prefix as CUDA also accepts."""
    try:
        return nvml.nvmlDeviceGetHandleByUUID(uuid)
    except Exception:
        pass  # not a full UUID: match it as a prefix below
    matches = []
    for i in range(nvml.nvmlDeviceGetCount()):
        handle = nvml.nvmlDeviceGetHandleByIndex(i)
        if _text(nvml.nvmlDeviceGetUUID(handle)).lower().startswith(uuid.lower()):
            matches.append(handle)
    if len(matches) != 1:
        raise LookupError(f"CUDA_VISIBLE_DEVICES entry {uuid!r} matches {len(matches)} GPUs")
    return matches[0]


def _torch_uuid(index: int) -> str | None:
    """The UUID CUDA reports for torch device `index`, if CUDA is already initialised.

    Never initialises CUDA itself (that creates a context holding device memory, and
    is the caller's decision), so this is None before the harness has used the GPU.
    """
    try:
        if not torch.cuda.is_initialized():
            return None
        uuid = str(torch.cuda.get_device_properties(index).uuid)
    except Exception:
        return None
    return uuid if uuid.upper().startswith(("GPU-", "MIG-")) else f"GPU-{uuid}"


def _nvml_handle(nvml: Any, index: int) -> Any:
    """Map torch CUDA device `index` to an NVML device handle.

    torch numbers only the devices CUDA exposes, NVML numbers all of them, so:

    1. When CUDA is initialised, ask it for the device's UUID and look that up in NVML:
       exact, whatever the enumeration order.
    2. Otherwise map through CUDA_VISIBLE_DEVICES: the index-th entry names the
       NVML index (an integer) or the device UUID (``GPU-...``/``MIG-...``, looked
       up with nvmlDeviceGetHandleByUUID; a UUID prefix is matched by scanning).
    3. Without CUDA_VISIBLE_DEVICES, torch index i is NVML index i.

    Steps 2 and 3 assume CUDA enumerates in PCI bus order as NVML does. That holds
    with CUDA_DEVICE_ORDER=PCI_BUS_ID and in practice on nodes whose GPUs are all the
    same model; on a node mixing GPU models CUDA's default FASTEST_FIRST order may
    differ, which is why step 1 comes first.
    """
    uuid = _torch_uuid(index)
    if uuid is not None:
        try:
            return nvml.nvmlDeviceGetHandleByUUID(uuid)
        except Exception:
            pass  # e.g. a MIG slice whose UUID NVML spells differently: fall back
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return nvml.nvmlDeviceGetHandleByIndex(index)
    entries = _parse_cuda_visible_devices(visible)
    if not 0 <= index < len(entries):
        raise LookupError(
            f"torch device {index} is not among the {len(entries)} GPUs that "
            f"CUDA_VISIBLE_DEVICES={visible!r} exposes"
        )
    entry = entries[index]
    if isinstance(entry, int):
        return nvml.nvmlDeviceGetHandleByIndex(entry)
    return _handle_by_uuid(nvml, entry)


def _optional(fn: Any, *args: Any) -> Any:
    """Call an NVML query that some devices do not support (MIG slices, some boards)."""
    try:
        return fn(*args)
    except Exception:
        return None


def nvml_device_info(index: int) -> tuple[dict | None, str | None]:
    """NVML's view of torch CUDA device `index`, or ``(None, reason)``.

    The dict holds ``driver`` (str), ``name`` (str), ``memory_used_mib`` and
    ``memory_total_mib`` (float, all processes), ``sm_clock_mhz``, ``max_sm_clock_mhz``,
    ``mem_clock_mhz`` (int, current/maximum) and ``power_limit_w`` (float, the enforced
    limit). Clocks and the power limit are None where the device does not report them
    (MIG slices, some boards); failing to reach the device at all gives
    ``(None, reason)``. See ``_nvml_handle`` for how the index is mapped.
    """
    nvml, reason = _nvml()
    if nvml is None:
        return None, reason
    try:
        handle = _nvml_handle(nvml, index)
        memory = nvml.nvmlDeviceGetMemoryInfo(handle)
        info: dict[str, Any] = {
            "driver": _text(nvml.nvmlSystemGetDriverVersion()),
            "name": _text(nvml.nvmlDeviceGetName(handle)),
            "memory_used_mib": memory.used / MIB,
            "memory_total_mib": memory.total / MIB,
        }
    except Exception as exc:
        return None, f"NVML query for cuda:{index} failed: {_one_line(exc)}"
    sm = _optional(nvml.nvmlDeviceGetClockInfo, handle, nvml.NVML_CLOCK_SM)
    max_sm = _optional(nvml.nvmlDeviceGetMaxClockInfo, handle, nvml.NVML_CLOCK_SM)
    mem = _optional(nvml.nvmlDeviceGetClockInfo, handle, nvml.NVML_CLOCK_MEM)
    power_mw = _optional(nvml.nvmlDeviceGetEnforcedPowerLimit, handle)  # milliwatts
    info["sm_clock_mhz"] = None if sm is None else int(sm)
    info["max_sm_clock_mhz"] = None if max_sm is None else int(max_sm)
    info["mem_clock_mhz"] = None if mem is None else int(mem)
    info["power_limit_w"] = None if power_mw is None else power_mw / 1000.0
    return info, None


def gpu_memory_used_mib(index: int) -> tuple[float | None, str | None]:
    """Device memory in use on torch CUDA device `index` as NVML sees it, in MiB.

    This counts every process and the CUDA context itself, unlike
    ``torch.cuda.max_memory_allocated``, which sees only this process's tensors.
    """
    nvml, reason = _nvml()
    if nvml is None:
        return None, reason
    try:
        handle = _nvml_handle(nvml, index)
        return nvml.nvmlDeviceGetMemoryInfo(handle).used / MIB, None
    except Exception as exc:
        return None, f"NVML query for cuda:{index} failed: {_one_line(exc)}"


def _nvml_driver() -> tuple[str | None, str | None]:
    """The NVIDIA driver version, or ``(None, reason)``."""
    nvml, reason = _nvml()
    if nvml is None:
        return None, reason
    try:
        return _text(nvml.nvmlSystemGetDriverVersion()), None
    except Exception as exc:
        return None, f"NVML driver query failed: {_one_line(exc)}"


# ---------------------------------------------------------------------- process


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, in MiB.

    From ``getrusage(RUSAGE_SELF).ru_maxrss``, which Linux and the BSDs report in KiB
    and macOS in bytes. Unix only: the ``resource`` module does not exist on Windows.
    """
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MIB if sys.platform == "darwin" else peak / 1024


# ---------------------------------------------------------------- host + software


def _cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """The CPU's marketing name from /proc/cpuinfo, else platform.processor(), else None."""
    try:
        with cpuinfo.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                key, sep, value = line.partition(":")
                if sep and key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        pass  # not Linux
    return platform.processor() or None


def _triton_version() -> str | None:
    """triton.__version__, or None when triton is absent or fails to import."""
    try:
        import triton
    except Exception:  # ImportError, or a broken install raising something else
        return None
    return str(getattr(triton, "__version__", None) or "") or None


def _cudnn_version() -> int | None:
    try:
        return int(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available() else None
    except Exception:
        return None


def _nccl_version() -> str | None:
    """NCCL as "2.21.5"; torch returns a tuple (recent) or an encoded int (older)."""
    if not torch.cuda.is_available():
        return None
    try:
        from torch.cuda import nccl

        version = nccl.version()
    except Exception:  # a build without NCCL (Windows, ROCm without RCCL)
        return None
    if isinstance(version, tuple):
        return ".".join(str(part) for part in version[:3])
    # NCCL_VERSION_CODE: major*10000 + minor*100 + patch since 2.9, major*1000 before.
    code = int(version)
    if code >= 10000:
        return f"{code // 10000}.{code // 100 % 100}.{code % 100}"
    return f"{code // 1000}.{code // 100 % 10}.{code % 100}"


def _run_git(args: list[str], cwd: Path) -> str | None:
    """stdout of ``git <args>`` in `cwd`, or None if git is missing, fails or hangs."""
    git = shutil.which("git")
    if git is None:
        return None
    # GIT_OPTIONAL_LOCKS=0: `git status` must not take index.lock (it would race a
    # user's concurrent git command); no prompt can ever block a benchmark run.
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "GIT_TERMINAL_PROMPT": "0"}
    try:
        proc = subprocess.run(
            [git, *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=_GIT_TIMEOUT_S,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout if proc.returncode == 0 else None


def _git_info(repo: Path = _PROJECT_ROOT) -> tuple[str | None, bool | None]:
    """``(HEAD sha, dirty)`` of the checkout rooted at `repo`, or ``(None, None)``.

    The top level must be `repo` itself: an installed copy of the package living
    inside some other repository (a venv in an unrelated checkout) must not report
    that repository's SHA. A repository without commits, or one git refuses to read
    ("dubious ownership"), gives None. ``dirty`` counts untracked files too, since
    a new uncommitted file changes what ran just as an edit does.
    """
    out = _run_git(["rev-parse", "--show-toplevel", "HEAD"], repo)
    if out is None:
        return None, None
    lines = out.split("\n")
    if len(lines) < 2:
        return None, None
    toplevel, sha = lines[0].strip(), lines[1].strip()
    try:
        if Path(toplevel).resolve() != repo.resolve():
            return None, None
    except OSError:
        return None, None
    # 40 hex digits, or 64 in a repository using SHA-256 object names.
    if len(sha) not in (40, 64) or any(c not in "0123456789abcdef" for c in sha):
        return None, None
    status = _run_git(["status", "--porcelain"], repo)
    return sha, (None if status is None else bool(status.strip()))


def utc_timestamp() -> str:
    """Now, UTC, ISO 8601 to the second with a trailing Z."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def collect_environment(device: torch.device, world_size: int = 1) -> dict:
    """Describe the machine and software a record is measured on, as a JSON-ready dict.

    `device` is the device this rank trains on (``cuda`` or ``cpu``) and `world_size`
    the number of ranks. Fields that do not apply or cannot be read are None; the
    reason NVML fields are None is in ``nvml_error``. CUDA fields come from torch and
    assume the caller has already checked that `device` exists (a CUDA device on a
    machine without one raises, as torch does). ``device_count`` is the number of
    GPUs visible to this process when `device` is CUDA, and 0 for a CPU run.
    """
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    device = torch.device(device)
    cpu_model = _cpu_model()
    driver, nvml_error = _nvml_driver()
    git_sha, git_dirty = _git_info()

    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        device_name = torch.cuda.get_device_name(index)
        device_count = torch.cuda.device_count()
        device_memory_mib: float | None = props.total_memory / MIB
        compute_capability: str | None = f"{props.major}.{props.minor}"
    else:
        device_name = cpu_model or platform.machine() or device.type
        device_count = 0
        device_memory_mib = None
        compute_capability = None

    return {
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "triton": _triton_version(),
        "cuda": torch.version.cuda,
        "cudnn": _cudnn_version(),
        "nccl": _nccl_version(),
        "device_type": device.type,
        "device_name": device_name,
        "device_count": device_count,
        "device_memory_mib": device_memory_mib,
        "compute_capability": compute_capability,
        "driver": driver,
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "hostname": socket.gethostname() or platform.node(),
        "os": platform.platform(),
        "world_size": int(world_size),
        "git_sha": git_sha,
        "git_dirty": git_dirty,
        "timestamp": utc_timestamp(),
        "nvml_error": nvml_error,
    }


def environment_report() -> dict:
    """`gan-bench env`: the environment a record would carry on this machine's default
    device, plus NVML's view of every visible GPU (memory, clocks, power limit)."""
    cuda = torch.cuda.is_available()
    report = collect_environment(torch.device("cuda", 0) if cuda else torch.device("cpu"))
    gpus = []
    for index in range(torch.cuda.device_count() if cuda else 0):
        info, reason = nvml_device_info(index)
        gpus.append(
            {
                "index": index,
                "name": torch.cuda.get_device_name(index),
                **(info or {"nvml_error": reason}),
            }
        )
    report["gpus"] = gpus
    return report
