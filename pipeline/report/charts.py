"""Small inline SVG charts (no scripts, no external resources)."""

from __future__ import annotations

from pipeline.report.html import esc


def _fmt(value: float) -> str:
    if isinstance(value, int) or float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"


def bar_chart(title: str, items: list[tuple[str, float]], *, unit: str = "", width: int = 380) -> str:
    """Horizontal bars, one per (label, value); an empty list gives a note instead of a chart."""
    items = [(str(k), float(v or 0)) for k, v in items]
    head = f'<div class="chart"><h3>{esc(title)}</h3>'
    if not items:
        return head + '<p class="muted">no data</p></div>'
    label_w, value_w, row_h = 150, 70, 18
    bar_w = width - label_w - value_w
    top = max(v for _, v in items) or 1.0
    rows = []
    for i, (label, value) in enumerate(items):
        y = i * row_h
        w = max(0.0, value / top * bar_w)
        short = label if len(label) <= 24 else label[:23] + "\u2026"
        rows.append(
            f"<g><title>{esc(label)}: {esc(_fmt(value))}{esc(unit)}</title>"
            f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end">{esc(short)}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" fill="#4c8bd6"></rect>'
            f'<text x="{label_w + w + 4:.1f}" y="{y + 13}">{esc(_fmt(value))}{esc(unit)}</text></g>'
        )
    height = row_h * len(items)
    return (
        head + f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-size="11" font-family="sans-serif" role="img" '
        f'aria-label="{esc(title)}">{"".join(rows)}</svg></div>'
    )


def histogram(values: list[int], bins: int = 10) -> list[tuple[str, int]]:
    """Counts of integer values: one bar per value when few distinct values, else equal-width ranges."""
    if not values:
        return []
    lo, hi = min(values), max(values)
    if hi - lo < bins:
        return [(str(v), sum(1 for x in values if x == v)) for v in range(lo, hi + 1)]
    step = -(-(hi - lo + 1) // bins)
    out = []
    for start in range(lo, hi + 1, step):
        end = min(start + step - 1, hi)
        out.append((f"{start}\u2013{end}", sum(1 for x in values if start <= x <= end)))
    return out
