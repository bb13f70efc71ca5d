"""Daily stacked bar charts as server-rendered SVG: no script, no external service. The page
also carries the same numbers as a table (the accessible equivalent).

Geometry uses floats; the numbers shown (axis labels, tooltips) come from the exact integers."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal
from html import escape

import msgspec

from lmrouter_credits.service import DailyUsage

# Okabe-Ito: told apart with the common colour-vision deficiencies; grey is "other models".
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#6B5B00")
OTHER_COLOUR = "#8A8A8A"
OTHER = "other models"
HEIGHT = 220  # pixels; the width is the page's
TOP, BOTTOM = 18, 24  # room for the top value label and the day labels
TICKS = 4
FONT = 12  # pixels, on every screen
PICO = 10**12


class Series(msgspec.Struct, frozen=True):
    name: str
    colour: str


def _tokens(row: DailyUsage) -> int:
    return row.prompt_tokens + row.completion_tokens


def days_between(start: date, end: date) -> list[str]:
    """Every day from ``start`` to ``end`` inclusive, as YYYY-MM-DD."""
    return [(start + timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]


def series(rows: list[DailyUsage]) -> tuple[list[Series], dict[str, str]]:
    """The models to stack (the biggest spenders, then tokens), each with its colour, and a map
    from every model to the series it is drawn in."""
    weight: dict[str, tuple[int, int]] = defaultdict(lambda: (0, 0))
    for row in rows:
        spent, tokens = weight[row.model]
        weight[row.model] = (spent + row.charged_pico, tokens + _tokens(row))
    ranked = sorted(weight, key=lambda m: (-weight[m][0], -weight[m][1], m))
    if len(ranked) <= len(PALETTE):
        shown, rest = ranked, []
    else:
        shown, rest = ranked[: len(PALETTE) - 1], ranked[len(PALETTE) - 1 :]
    out = [Series(m, PALETTE[i]) for i, m in enumerate(shown)]
    if rest:
        out.append(Series(OTHER, OTHER_COLOUR))
    where = {m: m for m in shown} | {m: OTHER for m in rest}
    return out, where


def usd_label(pico: int) -> str:
    """An axis or tooltip amount: cents when it is a dollar or more, else four significant
    digits."""
    value = Decimal(pico) / PICO
    if value == 0:
        return "$0"
    if value >= 1:
        return f"${value:,.2f}"
    return f"${value:.4g}" if value >= Decimal("0.0001") else f"${value:.2e}"


def count_label(n: int) -> str:
    for size, suffix in ((10**9, "B"), (10**6, "M"), (10**3, "k")):
        if n >= size:
            return f"{n / size:.3g}{suffix}"
    return str(n)


def _nice_top(value: float, *, whole_ticks: bool = False) -> float:
    """A round number at or above ``value`` for the axis: 1, 2, 2.5 or 5 times a power of ten.
    With ``whole_ticks`` (counts), four ticks of a whole 1, 2 or 5 times a power of ten each: an
    empty chart reads 0 1 2 3 4, not 0 0 0 0 1."""
    if whole_ticks:
        power = 1
        while True:  # steps of 1, 2, 5, 10, 20, 50, …
            for step in (power, 2 * power, 5 * power):
                if step * TICKS >= value:
                    return float(step * TICKS)
            power *= 10
    if value <= 0:
        return 1.0
    scale = 10.0 ** int(f"{value:e}".split("e")[1])
    for multiple in (1.0, 2.0, 2.5, 5.0, 10.0):
        if multiple * scale >= value:
            return multiple * scale
    return 10 * scale


def svg(
    title: str,
    days: list[str],
    rows: list[DailyUsage],
    palette: list[Series],
    where: dict[str, str],
    *,
    measure: str,
) -> str:
    """A stacked bar chart of ``measure`` (``charged_pico`` or ``tokens``) per day and series.

    Across, positions are percentages of the chart's width and nothing is scaled: the chart fills
    a phone or a desktop while its text keeps its size (a scaled viewBox shrank it to ~5 px on a
    phone). The value labels sit at the left above their grid lines."""
    totals: dict[tuple[str, str], int] = defaultdict(int)
    for row in rows:
        totals[(row.day, where[row.model])] += (
            row.charged_pico if measure == "charged_pico" else _tokens(row)
        )
    money = measure == "charged_pico"
    label = usd_label if money else count_label
    per_day = [sum(totals[(d, s.name)] for s in palette) for d in days]
    scale_unit = PICO if money else 1
    top = _nice_top(max(per_day, default=0) / scale_unit, whole_ticks=not money)
    plot_h = HEIGHT - TOP - BOTTOM
    slot = 100 / max(len(days), 1)  # percent of the width per day
    bar = slot * 0.8
    ident = "chart-" + measure
    parts = [
        f'<svg class="chart" height="{HEIGHT}" role="img" '
        f'aria-labelledby="{ident}-t" xmlns="http://www.w3.org/2000/svg">'
        f'<title id="{ident}-t">{escape(title)}</title>'
    ]
    labels = []
    for i in range(TICKS + 1):  # grid lines and their labels
        y = TOP + plot_h * (1 - i / TICKS)
        value = round(top * i / TICKS * scale_unit)
        parts.append(
            f'<line x1="0" x2="100%" y1="{y:.1f}" y2="{y:.1f}" stroke="#d0d0d0" stroke-width="1"/>'
        )
        labels.append(
            f'<text x="2" y="{y - 3:.1f}" font-size="{FONT}" fill="#333">'
            f"{escape(label(value))}</text>"
        )
    every = max(1, round(len(days) / 6))  # day labels a phone has room for
    for index, day in enumerate(days):
        x = index * slot + (slot - bar) / 2
        y = TOP + plot_h
        for s in palette:
            value = totals.get((day, s.name), 0)
            if not value:
                continue
            height = plot_h * value / (top * scale_unit)
            y -= height
            parts.append(
                f'<rect x="{x:.2f}%" y="{y:.1f}" width="{bar:.2f}%" '
                f'height="{max(height, 0.5):.1f}" fill="{s.colour}">'
                f"<title>{escape(f'{day} · {s.name}: {label(value)}')}</title></rect>"
            )
        if index % every == 0:
            # the first label starts at the left edge: centred under its bar it would be cut
            at, anchor = (0.0, "start") if index == 0 else (index * slot + slot / 2, "middle")
            labels.append(
                f'<text x="{at:.2f}%" y="{HEIGHT - 6}" text-anchor="{anchor}" '
                f'font-size="{FONT}" fill="#333">{day[5:]}</text>'
            )
    parts += labels  # over the bars
    parts.append("</svg>")
    return "".join(parts)
