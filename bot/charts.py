"""The scheduled portfolio digest's chart: a PNG with the health distribution beside the retention trend.

Rendered with matplotlib's object-oriented API only (a ``Figure`` on an Agg canvas), never pyplot: the
scheduler runs digests in a background thread and pyplot keeps global state. matplotlib is imported on
first use so commands that draw nothing do not pay for it. Equal inputs give byte-identical PNGs (no
version or time metadata), so a digest sent twice carries the same image.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes

TrendPoint = tuple[str, float | None, float | None]
"""One retention period: its label, GRR % and NRR % (None when the period has no figure)."""

EDGES = np.arange(0, 101, 10)  # 0-9, 10-19, ..., 90-100: numpy's last bin includes its right edge
BAND_COLOURS = (  # band, legend label, colour; stacked bottom to top
    ("at_risk", "at risk", "#d64545"),
    ("watch", "watch", "#e8b730"),
    ("healthy", "healthy", "#2e9e5b"),
)
WIDTH_IN, HEIGHT_IN, DPI = 12, 5, 100  # 1200 x 500 pixels


def digest_chart(
    scores: Sequence[int], *, healthy: int, watch: int, trend: Sequence[TrendPoint], title: str
) -> bytes:
    """PNG bytes: left, the accounts per 10-point score bucket coloured by band (at risk below
    ``watch``, watch from ``watch``, healthy from ``healthy``); right, GRR and NRR per period against
    a 100% line. Missing data gives a panel that says "no data" rather than an error."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    figure.suptitle(title, fontsize=14, fontweight="bold")
    left, right = figure.subplots(1, 2, width_ratios=(1, 1.3))
    _health_panel(left, np.asarray(scores, dtype=float), healthy=healthy, watch=watch)
    _trend_panel(right, trend)
    out = io.BytesIO()
    figure.savefig(out, format="png", dpi=DPI, metadata={"Software": None})
    return out.getvalue()


def _no_data(ax: Axes, heading: str) -> None:
    ax.set_title(heading)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.text(0.5, 0.5, "no data", ha="center", va="center", fontsize=16, color="#777777",
            transform=ax.transAxes)


def _health_panel(ax: Axes, scores: np.ndarray, *, healthy: int, watch: int) -> None:
    """Stacked by band, so a bucket that a threshold cuts in two shows both colours honestly."""
    from matplotlib.ticker import MaxNLocator

    heading = "Health distribution"
    scores = scores[np.isfinite(scores)]
    if scores.size == 0:
        _no_data(ax, heading)
        return
    scores = np.clip(scores, 0, 100)
    masks = {"at_risk": scores < watch, "watch": (scores >= watch) & (scores < healthy),
             "healthy": scores >= healthy}
    centres = EDGES[:-1] + 5
    bottom = np.zeros(len(centres))
    for band, label, colour in BAND_COLOURS:
        counts, _ = np.histogram(scores[masks[band]], bins=EDGES)
        ax.bar(centres, counts, width=9, bottom=bottom, color=colour,
               label=f"{label}: {int(counts.sum()):,}")
        bottom += counts
    for x, total in zip(centres, bottom, strict=True):
        if total:
            ax.annotate(f"{int(total):,}", (x, total), xytext=(0, 2), textcoords="offset points",
                        ha="center", va="bottom", fontsize=9)
    ax.set_title(f"{heading} ({scores.size:,} accounts)")
    ax.set_xticks(centres, [f"{lo}-{lo + 9 if lo < 90 else 100}" for lo in EDGES[:-1]], fontsize=8)
    ax.set_xlabel("health score")
    ax.set_ylabel("accounts")
    ax.set_ylim(0, bottom.max() * 1.15)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(loc="upper left", fontsize=9, frameon=False)


def _trend_panel(ax: Axes, trend: Sequence[TrendPoint]) -> None:
    """None becomes NaN, which matplotlib leaves as a gap; markers keep a lone period visible."""
    heading = "Retention trend"
    grr = np.array([np.nan if g is None else g for _, g, _ in trend], dtype=float)
    nrr = np.array([np.nan if n is None else n for _, _, n in trend], dtype=float)
    if not (np.isfinite(grr).any() or np.isfinite(nrr).any()):
        _no_data(ax, heading)
        return
    x = np.arange(len(trend))
    ax.axhline(100, color="#888888", linestyle="--", linewidth=1, label="100%")
    for values, marker, colour, label in ((grr, "o", "#1f77b4", "GRR %"), (nrr, "s", "#9467bd", "NRR %")):
        if np.isfinite(values).any():  # a series with no figure at all gets no legend entry either
            ax.plot(x, values, marker=marker, color=colour, label=label)
    step = max(1, -(-len(trend) // 12))  # at most 12 period labels
    ax.set_xticks(x[::step], [label for label, _, _ in trend][::step], rotation=30, ha="right", fontsize=8)
    ax.set_title(heading)
    ax.set_ylabel("%")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="best", fontsize=9, frameon=False)
