"""The speed-ups as a table, read off the registry: what `gan-bench variants` prints and
what the README's speed-up table is (a test keeps the two the same)."""

from __future__ import annotations

from bench.speedups.registry import OPTIONS, SPEEDUPS, Variant

COLUMNS = ("speed-up", "what it does", "requires", "conflicts with", "applies at")


def _conflicts(name: str) -> list[str]:
    """What cannot go with `name`: another speed-up setting one of its options (another
    compile mode, say), and every conflict declared either way."""
    speedup = SPEEDUPS[name]
    out = []
    for option in speedup.options:
        if any(o is not speedup and option in o.options for o in SPEEDUPS.values()):
            out.append(f"another `{OPTIONS[option.name].flag}`")
    for other in SPEEDUPS.values():
        if name in other.conflicts or other.name in speedup.conflicts:
            out.append(other.name)
    return out


def rows() -> list[tuple[str, str, str, str, str]]:
    """One row per speed-up, in canonical order: COLUMNS."""
    return [
        (
            s.name,
            f"{s.help} (`{s.flags}`)",
            "; ".join(r.label for r in s.requirements) or "—",
            ", ".join(_conflicts(s.name)) or "—",
            ", ".join(stage.label for stage in s.stages),
        )
        for s in SPEEDUPS.values()
    ]


def markdown() -> str:
    """The table in Markdown, as the README holds it."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows()]
    return "\n".join(lines) + "\n"


def describe(variant: Variant) -> list[str]:
    """Lines saying what a valid variant is: its canonical name, then each speed-up with
    its options and what it requires."""
    lines = [f"{variant.name}: valid"]
    for s in variant.speedups:
        needs = "; ".join(r.label for r in s.requirements)
        lines.append(f"  {s.name} ({s.flags}): {s.help}" + (f"; requires {needs}" if needs else ""))
    if not variant.speedups:
        lines.append(f"  {variant.description}")
    return lines
