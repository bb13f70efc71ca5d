"""The latency-against-offered-load figure as a PNG, drawn in pure Python (zlib + struct): one
panel per target with p50/p90/p99/p99.9 against the open-loop rate, all panels on the same
log-log axes, and a last panel with every target's p99. No plotting library is needed, so the
figure is redrawn by every run on any machine that runs the benchmark.
"""

from __future__ import annotations

import math
import struct
import zlib
from typing import Any

from benchmarks.loadgen import Measurement

# 5x7 glyphs, one 5-bit row per entry (top to bottom); text is drawn lower-case.
GLYPHS: dict[str, tuple[int, ...]] = {
    "0": (14, 17, 19, 21, 25, 17, 14),
    "1": (4, 12, 4, 4, 4, 4, 14),
    "2": (14, 17, 1, 2, 4, 8, 31),
    "3": (31, 2, 4, 2, 1, 17, 14),
    "4": (2, 6, 10, 18, 31, 2, 2),
    "5": (31, 16, 30, 1, 1, 17, 14),
    "6": (6, 8, 16, 30, 17, 17, 14),
    "7": (31, 1, 2, 4, 8, 8, 8),
    "8": (14, 17, 17, 14, 17, 17, 14),
    "9": (14, 17, 17, 15, 1, 2, 12),
    "a": (0, 0, 14, 1, 15, 17, 15),
    "b": (16, 16, 22, 25, 17, 17, 30),
    "c": (0, 0, 14, 16, 16, 17, 14),
    "d": (1, 1, 13, 19, 17, 17, 15),
    "e": (0, 0, 14, 17, 31, 16, 14),
    "f": (6, 9, 8, 28, 8, 8, 8),
    "g": (0, 15, 17, 17, 15, 1, 14),
    "h": (16, 16, 22, 25, 17, 17, 17),
    "i": (4, 0, 12, 4, 4, 4, 14),
    "j": (2, 0, 6, 2, 2, 18, 12),
    "k": (16, 16, 18, 20, 24, 20, 18),
    "l": (12, 4, 4, 4, 4, 4, 14),
    "m": (0, 0, 26, 21, 21, 17, 17),
    "n": (0, 0, 22, 25, 17, 17, 17),
    "o": (0, 0, 14, 17, 17, 17, 14),
    "p": (0, 0, 30, 17, 30, 16, 16),
    "q": (0, 0, 13, 19, 15, 1, 1),
    "r": (0, 0, 22, 25, 16, 16, 16),
    "s": (0, 0, 14, 16, 14, 1, 30),
    "t": (8, 8, 28, 8, 8, 9, 6),
    "u": (0, 0, 17, 17, 17, 19, 13),
    "v": (0, 0, 17, 17, 17, 10, 4),
    "w": (0, 0, 17, 17, 21, 21, 10),
    "x": (0, 0, 17, 10, 4, 10, 17),
    "y": (0, 0, 17, 17, 15, 1, 14),
    "z": (0, 0, 31, 2, 4, 8, 31),
    ".": (0, 0, 0, 0, 0, 12, 12),
    "-": (0, 0, 0, 31, 0, 0, 0),
    "/": (0, 1, 2, 4, 8, 16, 0),
    "(": (2, 4, 8, 8, 8, 4, 2),
    ")": (8, 4, 2, 2, 2, 4, 8),
    ",": (0, 0, 0, 0, 12, 4, 8),
    ":": (0, 12, 12, 0, 12, 12, 0),
    "%": (24, 25, 2, 4, 8, 19, 3),
    "=": (0, 0, 31, 0, 31, 0, 0),
    "+": (0, 4, 4, 31, 4, 4, 0),
    " ": (0, 0, 0, 0, 0, 0, 0),
}

Color = tuple[int, int, int]
BLACK: Color = (30, 30, 30)
GREY: Color = (215, 215, 215)
MID: Color = (120, 120, 120)
WHITE: Color = (255, 255, 255)
PCT_COLORS: dict[str, Color] = {
    "p50": (31, 119, 180),
    "p90": (44, 160, 44),
    "p99": (255, 127, 14),
    "p999": (214, 39, 40),
}
PCT_LABELS = {"p50": "p50", "p90": "p90", "p99": "p99", "p999": "p99.9"}
TARGET_COLORS: list[Color] = [
    (90, 90, 90),
    (23, 190, 207),
    (148, 103, 189),
    (31, 119, 180),
    (214, 39, 40),
    (140, 86, 75),
    (227, 119, 194),
]


class Canvas:
    def __init__(self, width: int, height: int) -> None:
        self.w, self.h = width, height
        self.px = bytearray(b"\xff" * (width * height * 3))

    def dot(self, x: int, y: int, c: Color) -> None:
        if 0 <= x < self.w and 0 <= y < self.h:
            i = (y * self.w + x) * 3
            self.px[i : i + 3] = bytes(c)

    def rect(self, x0: int, y0: int, x1: int, y1: int, c: Color) -> None:
        for y in range(max(0, y0), min(self.h, y1 + 1)):
            for x in range(max(0, x0), min(self.w, x1 + 1)):
                self.dot(x, y, c)

    def line(
        self, x0: int, y0: int, x1: int, y1: int, c: Color, width: int = 1, dash: int = 0
    ) -> None:
        """Bresenham; ``width`` 2 draws a thicker stroke, ``dash`` n draws n on, n off."""
        dx, dy = abs(x1 - x0), -abs(y1 - y0)
        sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
        err, step = dx + dy, 0
        while True:
            if not dash or (step // dash) % 2 == 0:
                self.dot(x0, y0, c)
                if width > 1:
                    self.dot(x0 + 1, y0, c)
                    self.dot(x0, y0 + 1, c)
                    self.dot(x0 + 1, y0 + 1, c)
            if x0 == x1 and y0 == y1:
                return
            step += 1
            e2 = 2 * err
            if e2 >= dy:
                err += dy
                x0 += sx
            if e2 <= dx:
                err += dx
                y0 += sy

    def text(self, x: int, y: int, s: str, c: Color = BLACK, scale: int = 1) -> int:
        """Draw ``s`` with its top-left at (x, y); returns the x after the last glyph."""
        for ch in s.lower():
            rows = GLYPHS.get(ch, GLYPHS[" "])
            for r, bits in enumerate(rows):
                for col in range(5):
                    if bits & (16 >> col):
                        self.rect(
                            x + col * scale, y + r * scale, x + col * scale + scale - 1,
                            y + r * scale + scale - 1, c,
                        )  # fmt: skip
            x += 6 * scale
        return x

    def png(self) -> bytes:
        stride = self.w * 3
        raw = b"".join(
            b"\x00" + bytes(self.px[y * stride : (y + 1) * stride]) for y in range(self.h)
        )

        def chunk(kind: bytes, data: bytes) -> bytes:
            return (
                struct.pack(">I", len(data))
                + kind
                + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
            )

        header = struct.pack(">IIBBBBB", self.w, self.h, 8, 2, 0, 0, 0)
        return (
            b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw, 9))
            + chunk(b"IEND", b"")
        )


def _rate_label(rate: float) -> str:
    return f"{rate / 1000:g}k" if rate >= 1000 else f"{rate:g}"


def _ms_label(ms: float) -> str:
    return f"{ms:g}" if ms >= 1 else f"{ms:.2g}"


PANEL_W, PANEL_H = 340, 240
LEFT, RIGHT, TOP, BOTTOM = 48, 14, 30, 34
COLUMNS = 3


def latency_png(sweep: list[Measurement], summary: dict[str, Any] | None = None) -> bytes:
    """Every target's latency percentiles against the offered rate, as PNG bytes."""
    names = list(dict.fromkeys(m.target for m in sweep))
    panels = [*names, "p99 of every target"] if names else ["no sweep in this run"]
    rows = math.ceil(len(panels) / COLUMNS)
    width = COLUMNS * PANEL_W + 20
    height = 70 + rows * PANEL_H + 10
    canvas = Canvas(width, height)
    canvas.text(10, 10, "latency against offered load (open loop, k6), ms, log-log", BLACK, scale=2)
    x = 10
    for pct, color in PCT_COLORS.items():
        canvas.rect(x, 40, x + 14, 44, color)
        x = canvas.text(x + 20, 39, PCT_LABELS[pct]) + 12
    legend = "x = saturated (errors or drops); o = cpu 1 (load generator) at its limit"
    canvas.text(x + 8, 39, legend, MID)
    if not names:
        canvas.text(20, 90, "no open-loop sweep in this run", MID, scale=2)
        return canvas.png()
    rates = sorted({m.rate for m in sweep if m.rate})
    values = [
        v
        for m in sweep
        for v in (m.p50_ms, m.p90_ms, m.p99_ms, m.p999_ms)
        if v is not None and v > 0
    ]
    lo = 10 ** math.floor(math.log10(min(values))) if values else 0.1
    hi = 10 ** math.ceil(math.log10(max(values))) if values else 100.0
    hi = max(hi, lo * 10)
    xlo = math.log2(rates[0])
    xhi = math.log2(rates[-1]) if len(rates) > 1 else xlo + 1
    for i, panel in enumerate(panels):
        ox = 10 + (i % COLUMNS) * PANEL_W
        oy = 60 + (i // COLUMNS) * PANEL_H
        _panel(canvas, ox, oy, panel, sweep, names, rates, (xlo, xhi), (lo, hi))
    return canvas.png()


def _panel(
    canvas: Canvas,
    ox: int,
    oy: int,
    title: str,
    sweep: list[Measurement],
    names: list[str],
    rates: list[float],
    xs: tuple[float, float],
    ys: tuple[float, float],
) -> None:
    x0, x1 = ox + LEFT, ox + PANEL_W - RIGHT
    y0, y1 = oy + TOP, oy + PANEL_H - BOTTOM
    (xlo, xhi), (lo, hi) = xs, ys

    def px(rate: float) -> int:
        return round(x0 + (math.log2(rate) - xlo) / (xhi - xlo) * (x1 - x0))

    def py(ms: float) -> int:
        ms = min(max(ms, lo), hi)
        return round(y1 - (math.log10(ms) - math.log10(lo)) / math.log10(hi / lo) * (y1 - y0))

    canvas.text(x0, oy + 8, title, BLACK, scale=2)
    decade = lo
    while decade <= hi * 1.0001:
        y = py(decade)
        canvas.line(x0, y, x1, y, GREY, dash=3)
        label = _ms_label(decade)
        canvas.text(x0 - 6 - 6 * len(label), y - 3, label, MID)
        decade *= 10
    for rate in rates:
        x = px(rate)
        canvas.line(x, y0, x, y1, GREY, dash=3)
        label = _rate_label(rate)
        canvas.text(x - 3 * len(label), y1 + 6, label, MID)
    canvas.text(x1 - 6 * 5, y1 + 18, "req/s", MID)
    canvas.line(x0, y0, x0, y1, BLACK)
    canvas.line(x0, y1, x1, y1, BLACK)
    if title in names:
        steps = sorted((m for m in sweep if m.target == title and m.rate), key=lambda m: m.rate)
        series = {pct: PCT_COLORS[pct] for pct in PCT_COLORS}
        for pct, color in series.items():
            _series(canvas, steps, lambda m, p=pct: getattr(m, f"{p}_ms"), color, px, py)
        return
    for j, name in enumerate(names):  # the comparison panel: p99 of each target
        color = TARGET_COLORS[j % len(TARGET_COLORS)]
        steps = sorted((m for m in sweep if m.target == name and m.rate), key=lambda m: m.rate)
        _series(canvas, steps, lambda m: m.p99_ms, color, px, py)
        canvas.rect(x0 + 8, y0 + 4 + 11 * j, x0 + 18, y0 + 8 + 11 * j, color)
        canvas.text(x0 + 22, y0 + 2 + 11 * j, name, color)


def _series(canvas: Canvas, steps: list[Measurement], value: Any, color: Color, px, py) -> None:
    last = None
    for m in steps:
        v = value(m)
        if v is None or m.rate is None:
            continue
        point = (px(m.rate), py(v))
        if last is not None:
            canvas.line(*last, *point, color, width=2)
        x, y = point
        if m.loadgen_bound:  # a ring: the load generator's limit, not the target's
            for dx, dy in ((-3, -1), (-3, 1), (3, -1), (3, 1), (-1, -3), (1, -3), (-1, 3), (1, 3)):
                canvas.rect(x + dx, y + dy, x + dx, y + dy, color)
            canvas.rect(x - 2, y - 2, x - 2, y - 2, color)
            canvas.rect(x + 2, y - 2, x + 2, y - 2, color)
            canvas.rect(x - 2, y + 2, x - 2, y + 2, color)
            canvas.rect(x + 2, y + 2, x + 2, y + 2, color)
        elif m.saturated:
            canvas.line(x - 4, y - 4, x + 4, y + 4, color, width=2)
            canvas.line(x - 4, y + 4, x + 4, y - 4, color, width=2)
        else:
            canvas.rect(x - 2, y - 2, x + 2, y + 2, color)
        last = point
