"""Shared by the benchmarks: describe the machine and update one section of BENCHMARKS.md."""

from __future__ import annotations

import platform
import re
from contextlib import contextmanager
from pathlib import Path

from jepa_wm.files import atomic_path, write_text_atomic

BENCHMARKS_FILE = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"
FIGURES_DIR = Path(__file__).resolve().parent / "figures"  # the figures BENCHMARKS.md shows (committed)
HEADER = "# Benchmarks\n\nEvery table below is written by the script named under it; rerun it to reproduce.\n"


def machine_description(device: str = "cpu") -> str:
    """CPU model, cores, library versions, and the GPU when one is used."""
    import os

    import mujoco
    import torch

    cpu = platform.processor() or "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = re.findall(r"model name\s*:\s*(.+)", cpuinfo.read_text())
        cpu = names[0].strip() if names else cpu
    parts = [f"{cpu}, {os.cpu_count()} cores", f"Python {platform.python_version()}",
             f"torch {torch.__version__}", f"mujoco {mujoco.__version__}"]
    if device.startswith("cuda"):
        parts.insert(1, torch.cuda.get_device_name())
    return "; ".join(parts)


def timed(function, device: str):
    """Seconds ``function()`` took and what it returned; on CUDA the queued kernels are waited for before and after,
    so the time is the work's, not its launch's."""
    import time

    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = function()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start, result


# In a section of BENCHMARKS.md, what follows this line was written by hand (what a table led to, the commands of
# one-off measurements): a report written again replaces the part above it and keeps it.
NOTES_MARKER = "<!-- notes: kept when the report above is written again -->"


def update_benchmarks_section(title: str, body: str, command: str, machine: str) -> None:
    """Replace (or append) the ``## title`` section of BENCHMARKS.md, leaving the others as they are, and the
    section's own notes after ``NOTES_MARKER``."""
    text = BENCHMARKS_FILE.read_text() if BENCHMARKS_FILE.is_file() else HEADER
    section = f"## {title}\n\nMachine: {machine}.\nCommand: `{command.strip()}`\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    found = pattern.search(text)
    if found:
        earlier = found.group(0)
        if NOTES_MARKER in earlier:
            section += "\n" + NOTES_MARKER + earlier.split(NOTES_MARKER, 1)[1].rstrip("\n") + "\n"
        text = pattern.sub(lambda _: section + "\n", text)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    write_text_atomic(BENCHMARKS_FILE, text.rstrip("\n") + "\n")


def pyplot():
    """matplotlib.pyplot drawing to files (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


_drafts: Path | None = None  # where figures meant for FIGURES_DIR go instead (``drafting_figures``)


@contextmanager
def drafting_figures(folder: Path | None):
    """Inside, a figure meant for ``FIGURES_DIR`` is drawn into ``folder`` instead (None: where it was meant to go).
    A report printed but not written into BENCHMARKS.md (no ``--write``) must leave the committed figures as the
    committed tables describe them; a machine with part of a study's results would otherwise redraw them."""
    global _drafts
    previous, _drafts = _drafts, folder
    try:
        yield
    finally:
        _drafts = previous


def drafted(path: Path) -> Path:
    """Where a file meant for ``FIGURES_DIR`` (a figure, or the record of what it shows) is written now: the draft
    folder inside ``drafting_figures``, else ``path``."""
    if _drafts is not None and Path(path).resolve().parent == FIGURES_DIR.resolve():
        return _drafts / Path(path).name
    return Path(path)


def save_figure(figure, path: Path) -> Path:
    """Lay out, write (creating the folder) and close a figure that is saved with a benchmark; the path it went to
    (a draft folder's, inside ``drafting_figures``)."""
    target = drafted(path)
    if target != Path(path):
        print(f"figure drawn into {target} (benchmarks/figures/ is only redrawn with --write)")
    path = target
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=100, format=path.suffix.lstrip(".") or "png")
    pyplot().close(figure)
    return path
