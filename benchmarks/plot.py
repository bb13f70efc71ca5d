"""The latency-against-offered-load figure (PNG), drawn with matplotlib: one panel per target
with p50/p90/p99/p99.9 against the open-loop rate, then one panel comparing every target's p99.
All panels share log-log axes, so a glance across them compares like with like.

matplotlib is the benchmark's dependency (``benchmarks/requirements.txt``), never the router's.
"""

from __future__ import annotations

import io
import math
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display, no GUI toolkit

import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from benchmarks.loadgen import Measurement

PERCENTILES = (("p50", "p50", "#0072B2"), ("p90", "p90", "#009E73"),
               ("p99", "p99", "#E69F00"), ("p999", "p99.9", "#D55E00"))  # fmt: skip
# Okabe-Ito, told apart with the common colour-vision deficiencies
TARGET_COLORS = ("#000000", "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00")
COLUMNS = 3


def _rate_label(rate: float, _: Any = None) -> str:
    return f"{rate / 1000:g}k" if rate >= 1000 else f"{rate:g}"


def _ms_label(ms: float, _: Any = None) -> str:
    return f"{ms:g}" if ms >= 1 else f"{ms:.2g}"


def _steps(sweep: list[Measurement], target: str) -> list[Measurement]:
    return sorted((m for m in sweep if m.target == target and m.rate), key=lambda m: m.rate or 0)


def _plot(ax: Any, steps: list[Measurement], pct: str, color: str, label: str) -> None:
    points = [(m.rate, getattr(m, f"{pct}_ms"), m) for m in steps]
    points = [(x, y, m) for x, y, m in points if y is not None and y > 0]
    if not points:
        return
    ax.plot([x for x, _, _ in points], [y for _, y, _ in points], color=color, lw=2,
            marker="o", ms=4, label=label)  # fmt: skip
    for x, y, m in points:  # what the point means: the target gave up, or the load generator did
        if m.loadgen_bound:
            ax.plot(x, y, marker="o", ms=11, mfc="none", mec=color, mew=1.5)
        elif m.saturated:
            ax.plot(x, y, marker="x", ms=10, color=color, mew=2.5)


def latency_png(sweep: list[Measurement], summary: dict[str, Any] | None = None) -> bytes:
    names = list(dict.fromkeys(m.target for m in sweep))
    panels = [*names, "p99 of every target"] if names else []
    rows = max(1, math.ceil(len(panels) / COLUMNS))
    fig, axes = plt.subplots(
        rows, COLUMNS, figsize=(5.2 * COLUMNS, 3.9 * rows + 0.9), squeeze=False,
        sharex=True, sharey=True, layout="constrained",
    )  # fmt: skip
    fig.suptitle(
        "Latency against offered load (open loop, k6).  Marks: x the target saturated (errors "
        "or drops); ring: the load generator's CPU at its limit",
        fontsize=12,
    )
    flat = list(axes.flat)
    if not names:
        flat[0].text(0.5, 0.5, "no open-loop sweep in this run", ha="center", va="center")
    for ax in flat[max(len(panels), 1) :]:
        ax.set_visible(False)
    for ax, title in zip(flat, panels, strict=False):
        ax.set_title(title, fontsize=12, fontweight="bold", loc="left")
        if title in names:
            for pct, label, color in PERCENTILES:
                _plot(ax, _steps(sweep, title), pct, color, label)
        else:
            for j, name in enumerate(names):
                _plot(ax, _steps(sweep, name), "p99", TARGET_COLORS[j % len(TARGET_COLORS)], name)
        ax.legend(fontsize=9, loc="upper left", frameon=False)
    if names:
        rates = sorted({m.rate for m in sweep if m.rate})
        ax = flat[0]
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(rates)
        ax.xaxis.set_major_formatter(FuncFormatter(_rate_label))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_major_locator(LogLocator(base=10))
        ax.yaxis.set_major_formatter(FuncFormatter(_ms_label))
        for ax in flat:
            ax.grid(True, which="major", color="#d0d0d0", lw=0.8)
            ax.tick_params(labelsize=9, labelbottom=True, labelleft=True)
        for ax in axes[:, 0]:
            ax.set_ylabel("latency, ms", fontsize=10)
        for ax in flat[: len(panels)]:
            ax.set_xlabel("offered load, requests/s", fontsize=10)
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=110)
    plt.close(fig)
    return out.getvalue()
