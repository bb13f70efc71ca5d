"""The benchmark's latency figure: drawn by matplotlib (the benchmark's own dependency)."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image

from benchmarks.loadgen import Measurement
from benchmarks.plot import latency_png

RATES = (250, 500, 1000, 2000, 4000)


def sweep() -> list[Measurement]:
    runs = []
    for n, target in enumerate(("direct", "router-bare", "router-full")):
        for i, rate in enumerate(RATES):
            base = 0.4 * (1 + n) * (1.3**i)
            runs.append(
                Measurement(
                    target=target,
                    scenario="sweep",
                    tool="k6",
                    connections=64,
                    duration_s=4,
                    rate=rate,
                    p50_ms=base,
                    p90_ms=base * 1.6,
                    p99_ms=base * 3,
                    p999_ms=base * 6,
                    saturated=target == "router-full" and rate == RATES[-1],
                    loadgen_bound=target == "direct" and rate == RATES[-1],
                )
            )
    return runs


def text_chunks(png: bytes) -> dict[str, str]:
    """The PNG's tEXt chunks (their CRCs checked)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    out, at = {}, 8
    while at < len(png):
        (length,) = struct.unpack(">I", png[at : at + 4])
        kind, data = png[at + 4 : at + 8], png[at + 8 : at + 8 + length]
        (crc,) = struct.unpack(">I", png[at + 8 + length : at + 12 + length])
        assert zlib.crc32(kind + data) & 0xFFFFFFFF == crc
        if kind == b"tEXt":
            key, _, value = data.partition(b"\0")
            out[key.decode()] = value.decode("latin-1")
        at += 12 + length
    return out


def test_the_figure_is_drawn_by_matplotlib_and_readable() -> None:
    png = latency_png(sweep())
    assert text_chunks(png).get("Software", "").startswith("Matplotlib")
    image = Image.open(io.BytesIO(png))
    width, height = image.size
    assert width >= 1400 and height >= 800  # four panels of a readable size, not thumbnails


def test_a_run_without_a_sweep_still_gets_a_figure() -> None:
    assert text_chunks(latency_png([])).get("Software", "").startswith("Matplotlib")
