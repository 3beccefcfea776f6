"""What people see: a progress bar while a run trains and a summary table at the end."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from bench.telemetry.profiling import format_profile


class StepProgress:
    """A rich progress bar over iterations on a TTY; elsewhere one stderr line per phase
    (logs of sweeps and CI). Nothing at all with --quiet or on ranks other than 0."""

    def __init__(self, total: int, enabled: bool):
        self._progress = None
        self._lines = enabled and not sys.stderr.isatty()
        if enabled and not self._lines:
            # Refreshes from rich's own thread at 2 Hz: advancing it in the loop is a counter
            # update, no terminal write and no device sync.
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                refresh_per_second=2,
                transient=True,
            )
            self._task = self._progress.add_task("warm-up", total=total)

    def __enter__(self):
        if self._progress:
            self._progress.start()
        return self

    def __exit__(self, *exc):
        if self._progress:
            self._progress.stop()

    def begin(self, phase: str, iterations: int) -> None:
        """Announce a phase; called outside the timed loop."""
        if self._lines:
            print(f"gan-bench: {phase}: {iterations} iterations", file=sys.stderr, flush=True)

    def advance(self, description: str) -> None:
        if self._progress:
            self._progress.update(self._task, advance=1, description=description)


def _fmt(value, spec: str = ",.1f", unit: str = "") -> str:
    if value is None:
        return "—"
    return f"{value:{spec}}{unit}"


def _variant_text(run: dict) -> str:
    """The variant and what of it really ran: kernels, memory format, padded channels, D's
    batches, casts, Adam, compile, graph."""
    parts = [f"kernels {run.get('kernel_path', '?')}", str(run.get("memory_format", "?"))]
    padded = run.get("image_channels_padded")
    if padded:
        parts.append(f"image channels {padded['from']}→{padded['to']}")
    if run.get("discriminator_batches") == "joint":
        parts.append("D over real+fake at once")
    casts = run.get("parameter_casts")
    if casts and casts["batched"]:
        parts.append(f"{casts['parameters']} parameter casts batched")
    if (run.get("optimizer") or {}).get("implementation") == "fused":
        parts.append("fused Adam")
    compile_counts = run.get("compile")
    if compile_counts:
        parts.append(
            f"compile {run.get('compile_mode')}: {compile_counts['graph_breaks']} graph breaks, "
            f"{compile_counts['recompiles']} recompiles"
        )
    graph = run.get("cuda_graph")
    if graph:
        parts.append(
            f"CUDA graph captured, {graph['replays']} replays"
            if graph["captured"]
            else "CUDA graph NOT captured"
        )
    return f"{run.get('variant', '?')} ({', '.join(parts)})"


def print_summary(record: dict, out_path: str | None) -> None:
    """The end-of-run table: the numbers a performance engineer looks at first."""
    run, metrics, env = (
        record.get("run", {}),
        record.get("metrics", {}),
        record.get("environment", {}),
    )
    cfg = record["config"]
    table = Table(title=f"gan-bench run: {cfg['model']} on {cfg['dataset']}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    status = record["status"] + (f" ({record['reason']})" if record.get("reason") else "")
    world, backend = run.get("world_size", "?"), run.get("backend") or "single process"
    global_batch, n_critic = run.get("global_batch_size", "?"), run.get("n_critic", "?")
    per_process = run.get("batch_size_per_process", cfg["batch_size"])
    scaling = cfg.get("scaling", "weak")
    rows = [
        ("status", status),
        ("device", f"{env.get('device_name', '?')} × {world} ({backend})"),
        (
            "batch",
            f"{per_process} per process, {global_batch} global ({scaling} scaling), "
            f"n_critic {n_critic}",
        ),
        ("precision / loss", f"{cfg['precision']} / {cfg['loss']}"),
        ("variant", _variant_text(run)),
        (
            "throughput",
            _fmt(metrics.get("images_per_s"), ",.0f", " images/s")
            + f"  ({_fmt(metrics.get('images_per_s_per_device'), ',.0f')} per device)",
        ),
        (
            "iteration p20 / p50 / p80",
            " / ".join(
                _fmt(metrics.get(k), ".2f") for k in ("iter_ms_p20", "iter_ms_p50", "iter_ms_p80")
            )
            + " ms",
        ),
        ("first iteration", _fmt(metrics.get("first_iteration_s"), ".3f", " s")),
        ("data loading", _fmt(metrics.get("data_load_fraction"), ".1%") + " of timed time"),
        (
            "peak memory",
            f"{_fmt(metrics.get('peak_allocated_mib'), ',.0f', ' MiB')} allocated, "
            f"{_fmt(metrics.get('peak_rss_mib'), ',.0f', ' MiB')} RSS",
        ),
        (
            "compute",
            _fmt(metrics.get("achieved_tflops"), ".3f", " TFLOP/s")
            + f", MFU {_fmt(metrics.get('mfu'), '.1%')}",
        ),
        (
            "final losses D / G",
            _fmt(metrics.get("loss_d_final"), ".4f")
            + f" / {_fmt(metrics.get('loss_g_final'), '.4f')}",
        ),
    ]
    quality = record.get("quality")
    if quality:
        rows.append((quality["fd_name"], _fmt(quality.get("fd"), ",.2f")))
        rows.append(
            (
                "KID / precision / recall",
                f"{_fmt(quality.get('kid_mean'), '.3f')} / {_fmt(quality.get('precision'), '.3f')}"
                f" / {_fmt(quality.get('recall'), '.3f')}",
            )
        )
        hit = quality.get("classes_hit")
        classes = "" if hit is None else f", classes hit {hit}/{quality.get('num_classes')}"
        collapse = " (mode collapse)" if quality.get("mode_collapse") else ""
        rows.append(
            (
                "density / coverage",
                f"{_fmt(quality.get('density'), '.3f')} / {_fmt(quality.get('coverage'), '.3f')}"
                f"{classes}{collapse}",
            )
        )
    if metrics.get("sample_grid_path"):
        rows.append(("sample grid", metrics["sample_grid_path"]))
    for name, value in rows:
        table.add_row(name, value)
    console = Console()
    console.print(table)
    if record.get("profile"):  # below the table: its lines are too wide for a cell
        for line in format_profile(record["profile"]):
            console.print(line, highlight=False, markup=False)
    if out_path:
        console.print(f"record appended to {out_path}")
