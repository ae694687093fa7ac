"""The pictures: one per policy (pods, running and reserved slots over the run) and one comparing all four."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

COLOURS = {"pods": "tab:blue", "running": "tab:green", "reserved": "tab:orange", "bound": "black"}


def _series(samples: Sequence[Sequence[float]]) -> dict[str, list[float]]:
    return {
        "hours": [s[0] / 3600 for s in samples],
        "pods": [s[1] for s in samples],
        "running": [s[2] for s in samples],
        "reserved": [s[3] for s in samples],
    }


def policy_png(path: Path, title: str, samples: Sequence[Sequence[float]], slots_per_pod: int) -> None:
    s = _series(samples)
    fig, ax = plt.subplots(figsize=(11, 4.2))
    ax.step(s["hours"], s["pods"], where="post", color=COLOURS["pods"], label="pods (starting, ready, terminating)")
    ax.stackplot(
        s["hours"],
        [r / slots_per_pod for r in s["running"]],
        [r / slots_per_pod for r in s["reserved"]],
        colors=[COLOURS["running"], COLOURS["reserved"]],
        alpha=0.45,
        step="post",
        labels=[f"running slots / {slots_per_pod}", f"reserved slots / {slots_per_pod}"],
    )
    ax.set_xlabel("hours from the start of the run")
    ax.set_ylabel("pods")
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def compare_png(path: Path, title: str, runs: list[dict[str, Any]], slots_per_pod: int) -> None:
    fig, (top, left, right) = _axes()
    for run in runs:
        s = _series(run["samples"])
        top.step(s["hours"], s["pods"], where="post", label=run["figures"]["policy"], linewidth=1)
    first = _series(runs[-1]["samples"])
    bound = [math.ceil((a + b) / slots_per_pod) for a, b in zip(first["running"], first["reserved"], strict=True)]
    top.step(first["hours"], bound, where="post", color="black", linestyle=":", label="busy+reserved packed (podslots)")
    top.set_ylabel("pods")
    top.set_xlabel("hours from the start of the run")
    top.set_title(title)
    top.legend(fontsize=8, ncol=5, loc="upper right")
    top.grid(alpha=0.3)
    names = [r["figures"]["policy"] for r in runs]
    pod_h = [r["figures"]["pod_hours"] for r in runs]
    bound_h = [r["figures"]["bound_hours"] for r in runs]
    x = range(len(runs))
    left.bar([i - 0.2 for i in x], pod_h, width=0.4, label="pod-hours")
    left.bar([i + 0.2 for i in x], bound_h, width=0.4, label="lower bound", color="grey")
    for i, (p, b) in enumerate(zip(pod_h, bound_h, strict=True)):
        left.text(i - 0.2, p, f"{p / b:.2f}x" if b else "", ha="center", va="bottom", fontsize=8)
    left.set_xticks(list(x), names, fontsize=8)
    left.set_title("pod-hours (ratio to the lower bound)", fontsize=9)
    left.legend(fontsize=8)
    running = [r["figures"]["interrupted_running"] for r in runs]
    reserved = [r["figures"]["interrupted_reserved"] for r in runs]
    right.bar(list(x), running, label="running", color=COLOURS["running"])
    right.bar(list(x), reserved, bottom=running, label="reserved", color=COLOURS["reserved"])
    right.set_xticks(list(x), names, fontsize=8)
    right.set_title("tasks interrupted when their pod went", fontsize=9)
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _axes() -> tuple[Any, tuple[Any, Any, Any]]:
    fig = plt.figure(figsize=(12, 8))
    grid = fig.add_gridspec(2, 2, height_ratios=[1.3, 1])
    return fig, (fig.add_subplot(grid[0, :]), fig.add_subplot(grid[1, 0]), fig.add_subplot(grid[1, 1]))
