"""Bar charts as inline SVG, drawn on the server: no script, and each bar names its value in a
``<title>`` (a tooltip, and what a screen reader says)."""

from __future__ import annotations

from decimal import Decimal

from markupsafe import Markup, escape

WIDTH, HEIGHT = 720, 240
LEFT, BOTTOM, TOP = 56, 40, 16


def _number(value: Decimal) -> str:
    return f"{value.normalize():,f}"


def bar_chart(points: list[tuple[str, Decimal]], unit: str, label: str) -> Markup:
    """One bar per (bucket, quantity), in the order given, scaled to the largest."""
    if not points:
        return Markup('<p class="empty">No usage in this selection.</p>')
    top = max((q for _, q in points), default=Decimal(0)) or Decimal(1)
    plot_w, plot_h = WIDTH - LEFT - 8, HEIGHT - BOTTOM - TOP
    step = plot_w / len(points)
    bar_w = min(max(step * 0.7, 1.0), 48.0)
    every = max(1, len(points) // 12)  # label at most a dozen buckets
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" aria-label="{escape(label)}">',
        f"<title>{escape(label)}</title>",
        f'<line class="axis" x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - 8}" '
        f'y2="{TOP + plot_h}"/>',
        f'<text class="tick" x="{LEFT - 6}" y="{TOP + 4}" text-anchor="end">'
        f"{escape(_number(top))}</text>",
        f'<text class="tick" x="{LEFT - 6}" y="{TOP + plot_h}" text-anchor="end">0</text>',
    ]
    for i, (bucket, quantity) in enumerate(points):
        height = float(quantity / top) * plot_h if quantity > 0 else 0.0
        x = LEFT + i * step + (step - bar_w) / 2
        y = TOP + plot_h - height
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" '
            f'height="{height:.1f}"><title>{escape(bucket)}: {escape(_number(quantity))} '
            f"{escape(unit)}</title></rect>"
        )
        if i % every == 0:
            parts.append(
                f'<text class="tick" x="{x + bar_w / 2:.1f}" y="{HEIGHT - BOTTOM + 16}" '
                f'text-anchor="middle">{escape(bucket)}</text>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))
