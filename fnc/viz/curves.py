"""Training curves as a picture: loss terms, learning rate and mAP / rank-1 against epoch (PIL only).

:func:`line_chart` draws one panel (axes, ticks, a legend, a title) from named ``(x, y)`` series;
:func:`training_curves` lays out the three panels of a run from the trainer's per-epoch history
rows, the rows ``OUTPUT/metrics.jsonl`` holds. Metrics stay fractions on the axis, as in the file.

>>> img = training_curves([{"epoch": 1, "loss": 2.0, "lr": 1e-3}, {"epoch": 2, "loss": 1.5, "lr": 1e-3}])
>>> img.size
(1560, 440)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from PIL import Image, ImageDraw

from fnc.viz._draw import BACKGROUND, TEXT, font, text_centered

__all__ = ["PALETTE", "line_chart", "training_curves"]

#: Line colours, in the order series are drawn (distinct in print and for common colour blindness).
PALETTE = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
)
_AXIS = (90, 90, 90)
_GRID = (228, 228, 228)

Series = Mapping[str, tuple[Sequence[float], Sequence[float]]]


def _nice_step(span: float, count: int) -> float:
    raw = span / max(count, 1)
    mag = 10.0 ** math.floor(math.log10(raw))
    for m in (1.0, 2.0, 2.5, 5.0, 10.0):
        if m * mag >= raw * (1 - 1e-9):
            return m * mag
    return 10.0 * mag


def _linear_ticks(lo: float, hi: float, count: int = 5, integer: bool = False) -> tuple[float, float, list[float]]:
    """Axis limits widened to whole steps, and the ticks between them."""
    if hi <= lo:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    step = _nice_step(hi - lo, count)
    if integer:
        step = max(1.0, round(step))
    first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    ticks = [i * step for i in range(first, last + 1)]
    return ticks[0], ticks[-1], ticks


def _log_ticks(lo: float, hi: float) -> tuple[float, float, list[float]]:
    lo_e, hi_e = math.floor(math.log10(lo) + 1e-9), math.ceil(math.log10(hi) - 1e-9)
    if hi_e == lo_e:
        hi_e += 1
    ticks = [10.0**e for e in range(lo_e, hi_e + 1)]
    if hi_e - lo_e <= 2:  # few decades: also mark 2x and 5x so the axis can be read
        ticks = sorted(t * m for t in ticks for m in (1, 2, 5) if t * m <= 10.0**hi_e)
    return 10.0**lo_e, 10.0**hi_e, ticks


def _tick_label(value: float, step: float | None) -> str:
    if step is None:  # log axis: 1e-4, 2e-4, ...
        return f"{value:.0e}".replace("e-0", "e-").replace("e+0", "e")
    if value == 0:
        return "0"
    if step >= 1:
        return f"{value:.0f}"
    if step < 1e-3:
        return f"{value:.2g}".replace("e-0", "e-")
    # As many decimals as the step has: 0.25 -> 2, 0.2 -> 1.
    decimals = 0
    while abs(step * 10**decimals - round(step * 10**decimals)) > 1e-6:
        decimals += 1
    return f"{value:.{decimals}f}"


def _text_size(draw: ImageDraw.ImageDraw, text: str, fnt: Any) -> tuple[float, float]:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=fnt)
    return right - left, bottom - top


def line_chart(
    series: Series,
    *,
    title: str,
    xlabel: str = "epoch",
    ylabel: str = "",
    size: tuple[int, int] = (520, 440),
    log_y: bool = False,
    x_range: tuple[float, float] | None = None,
    empty_text: str = "no data yet",
) -> Image.Image:
    """One panel: each named series as a line with a dot per point, on ticked axes with a legend.

    Args:
        series: ``{label: (xs, ys)}``, drawn in order with :data:`PALETTE`'s colours.
            Non-finite values are left out (a gap in the line), so are non-positive ones on a log axis.
        title: the panel's title.
        xlabel: the x axis's label.
        ylabel: the y axis's label.
        size: ``(width, height)`` in pixels.
        log_y: logarithmic y axis (decade ticks); for values that span orders of magnitude.
        x_range: ``(lo, hi)`` the x axis covers at least, so panels of one run line up; default
            the data's.
        empty_text: what the panel says when no series has a point.

    Returns:
        An RGB image of ``size``.

    >>> line_chart({"loss": ([1, 2, 3], [2.0, 1.2, 0.9])}, title="Loss").size
    (520, 440)
    """
    width, height = size
    img = Image.new("RGB", size, BACKGROUND)
    draw = ImageDraw.Draw(img)
    title_font, label_font, tick_font = font(18), font(14), font(12)
    points: dict[str, list[tuple[float, float]]] = {}
    for label, (xs, ys) in series.items():
        kept = [
            (float(x), float(y))
            for x, y in zip(xs, ys)
            if y is not None and math.isfinite(float(y)) and (not log_y or float(y) > 0)
        ]
        points[label] = kept

    text_centered(draw, width / 2, 8, title, title_font)
    # Legend: one row (wrapped when needed) under the title, so it never hides a line.
    y = 8 + _text_size(draw, title, title_font)[1] + 12
    x = 60.0
    row_h = _text_size(draw, "Ag", label_font)[1] + 6
    for i, (label, pts) in enumerate(points.items()):
        if not pts:  # a series with nothing to draw yet gets no legend entry
            continue
        color = PALETTE[i % len(PALETTE)]
        text_w = _text_size(draw, label, label_font)[0]
        if x + 28 + text_w > width - 10 and x > 60:
            x, y = 60.0, y + row_h
        draw.line([(x, y + row_h / 2 - 2), (x + 20, y + row_h / 2 - 2)], fill=color, width=3)
        draw.text((x + 26, y), label, fill=TEXT, font=label_font)
        x += 26 + text_w + 18
    top = y + row_h + 10
    right, bottom = width - 20, height - 50

    every = [p for pts in points.values() for p in pts]
    if not every:
        text_centered(draw, (70 + right) / 2, (top + bottom) / 2, empty_text, label_font)
        draw.rectangle([70, top, right, bottom], outline=_AXIS)
        return img
    xs = [p[0] for p in every]
    ys = [p[1] for p in every]
    x_span = (min(xs), max(xs)) if x_range is None else (min(min(xs), x_range[0]), max(max(xs), x_range[1]))
    x_lo, x_hi, x_ticks = _linear_ticks(*x_span, 6, integer=True)
    if log_y:
        y_lo, y_hi, y_ticks = _log_ticks(min(ys), max(ys))
        y_step = None
    else:
        y_lo, y_hi, y_ticks = _linear_ticks(min(ys), max(ys), 5)
        y_step = y_ticks[1] - y_ticks[0] if len(y_ticks) > 1 else 1.0
    y_labels = [_tick_label(t, y_step) for t in y_ticks]
    # The plot starts right of the widest tick label and the (rotated) axis label.
    label_h = _text_size(draw, "Ag", label_font)[1] + 6 if ylabel else 0
    left = 4 + label_h + 8 + max(_text_size(draw, t, tick_font)[0] for t in y_labels) + 8

    def to_y(v: float) -> float:
        if log_y:
            frac = (math.log10(v) - math.log10(y_lo)) / (math.log10(y_hi) - math.log10(y_lo))
        else:
            frac = (v - y_lo) / (y_hi - y_lo)
        return bottom - frac * (bottom - top)

    def to_x(v: float) -> float:
        return left + (v - x_lo) / (x_hi - x_lo) * (right - left)

    for t, text in zip(y_ticks, y_labels):
        py = to_y(t)
        draw.line([(left, py), (right, py)], fill=_GRID)
        draw.line([(left - 5, py), (left, py)], fill=_AXIS)
        tw, th = _text_size(draw, text, tick_font)
        draw.text((left - 8 - tw, py - th / 2 - 2), text, fill=TEXT, font=tick_font)
    for t in x_ticks:
        px = to_x(t)
        draw.line([(px, top), (px, bottom)], fill=_GRID)
        draw.line([(px, bottom), (px, bottom + 5)], fill=_AXIS)
        text_centered(draw, px, bottom + 8, _tick_label(t, 1.0), tick_font)
    draw.rectangle([left, top, right, bottom], outline=_AXIS)
    text_centered(draw, (left + right) / 2, bottom + 28, xlabel, label_font)
    if ylabel:
        tw, th = _text_size(draw, ylabel, label_font)
        label_img = Image.new("RGB", (int(tw) + 4, int(th) + 6), BACKGROUND)
        ImageDraw.Draw(label_img).text((2, 0), ylabel, fill=TEXT, font=label_font)
        rotated = label_img.rotate(90, expand=True)
        img.paste(rotated, (4, int((top + bottom) / 2 - rotated.height / 2)))

    for i, pts in enumerate(points.values()):
        color = PALETTE[i % len(PALETTE)]
        xy = [(to_x(px), to_y(py)) for px, py in sorted(pts)]
        if len(xy) > 1:
            draw.line(xy, fill=color, width=2, joint="curve")
        for px, py in xy:
            draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=color)
    return img


def _column(history: Sequence[Mapping[str, Any]], key: str) -> tuple[list[float], list[float]]:
    rows = [r for r in history if key in r and r[key] is not None]
    return [float(r["epoch"]) for r in rows], [float(r[key]) for r in rows]


def training_curves(history: Sequence[Mapping[str, Any]], title: str | None = None) -> Image.Image:
    """Three panels of a training run: loss and its terms, learning rate, mAP / rank-1.

    Args:
        history: one mapping per finished epoch with ``epoch`` (1-based), ``loss``, ``loss_<term>``
            (e.g. ``loss_id``, ``loss_triplet``), ``lr`` and, for evaluated epochs, ``mAP``,
            ``rank1`` (and ``mAP_rerank``, ``rank1_rerank`` when re-ranked). Rows of
            ``metrics.jsonl`` or ``Trainer.history``.
        title: a line above the panels (e.g. the run's folder); ``None`` for none.

    Returns:
        An RGB image, three 520 x 440 panels side by side (plus a title bar when given).

    >>> rows = [{"epoch": e, "loss": 3 / e, "loss_id": 2 / e, "lr": 0.01, "mAP": 0.1 * e, "rank1": 0.2 * e}
    ...         for e in (1, 2, 3)]
    >>> training_curves(rows, title="runs/toy").size
    (1560, 476)
    """
    terms = sorted({k for r in history for k in r if k.startswith("loss_")})
    loss = {"total": _column(history, "loss"), **{k[len("loss_") :]: _column(history, k) for k in terms}}
    lrs = [v for v in _column(history, "lr")[1] if v > 0]
    log_lr = bool(lrs) and max(lrs) / min(lrs) >= 10
    epochs = [float(r["epoch"]) for r in history]
    span = (min(epochs), max(epochs)) if epochs else None
    metric_keys = [k for k in ("mAP", "rank1", "mAP_rerank", "rank1_rerank") if any(k in r for r in history)]
    names = {"mAP": "mAP", "rank1": "rank-1", "mAP_rerank": "mAP re-ranked", "rank1_rerank": "rank-1 re-ranked"}
    panels = [
        line_chart(loss, title="Training loss (epoch mean)", ylabel="loss", x_range=span),
        line_chart({"lr": _column(history, "lr")}, title="Learning rate", ylabel="lr", log_y=log_lr, x_range=span),
        line_chart(
            {names[k]: _column(history, k) for k in metric_keys},
            title="Evaluation (fractions)",
            ylabel="mAP / rank-1",
            x_range=span,
            empty_text="not evaluated yet",
        ),
    ]
    head = 36 if title else 0
    out = Image.new("RGB", (sum(p.width for p in panels), max(p.height for p in panels) + head), BACKGROUND)
    if title:
        text_centered(ImageDraw.Draw(out), out.width / 2, 8, title, font(20))
    x = 0
    for p in panels:
        out.paste(p, (x, head))
        x += p.width
    return out
