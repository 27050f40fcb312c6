"""The shared KPIs as one self-contained HTML page: inline CSS and SVG charts drawn here,
no JavaScript, nothing fetched."""

from __future__ import annotations

from html import escape

from streams.kpi import (
    ATTRIBUTIONS,
    Figures,
    KpiReport,
    fmt_money,
    fmt_rate,
    fmt_s,
    percentile,
)

__all__ = ["render_kpi_html"]

_FUNNEL = ("#2563eb", "#0891b2", "#059669", "#16a34a")
_MODELS = {"first": "#6366f1", "last": "#f59e0b", "linear": "#10b981"}
_MODEL_NAMES = {"first": "first touch", "last": "last touch", "linear": "linear"}

_CSS = """
:root { color-scheme: light; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2937;
       background: #f6f7f9; margin: 0; }
main { max-width: 1040px; margin: 0 auto; padding: 28px 24px 48px; }
header h1 { font-size: 26px; margin: 0 0 2px; }
header p { margin: 0; color: #6b7280; }
section { background: #fff; border: 1px solid #e5e7eb; border-radius: 10px; padding: 18px 22px;
          margin-top: 20px; }
h2 { font-size: 17px; margin: 0 0 12px; }
.tiles { display: grid; grid-template-columns: repeat(auto-fit, minmax(180px, 1fr)); gap: 14px;
         margin-top: 20px; }
.tile { background: #fff; border: 1px solid #e5e7eb; border-radius: 10px; padding: 14px 16px; }
.tile .label { color: #6b7280; font-size: 13px; }
.tile .value { font-size: 24px; font-weight: 650; font-variant-numeric: tabular-nums; }
.tile .sub { color: #6b7280; font-size: 12px; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { padding: 6px 10px; border-bottom: 1px solid #eef0f3; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { color: #6b7280; font-weight: 600; font-size: 13px; }
svg { width: 100%; height: auto; display: block; }
svg text { font: 12px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; fill: #374151; }
.legend span { display: inline-block; margin-right: 16px; font-size: 13px; color: #4b5563; }
.legend i { display: inline-block; width: 11px; height: 11px; border-radius: 2px;
            margin-right: 5px; vertical-align: -1px; }
.note { color: #6b7280; font-size: 13px; margin: 8px 0 0; }
.bad { color: #b91c1c; }
"""


def render_kpi_html(report: KpiReport) -> str:
    t = report.total
    span = f"{report.since:%Y-%m-%d %H:%M} to {report.until:%Y-%m-%d %H:%M} UTC"
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Leadstream KPIs {escape(span)}</title>",
        f"<style>{_CSS}</style></head><body><main>",
        f"<header><h1>Shared KPIs</h1><p>{escape(span)}</p></header>",
        _tiles(t),
        "<section><h2>Funnel</h2>",
        _funnel_svg(t),
        '<p class="note">Leads that became MQLs in the range (or were handed straight to sales'
        " by a hot trigger), as they stand at its end.</p></section>",
        "<section><h2>Weekly trend</h2>",
        _trend_svg(report),
        "</section>",
        "<section><h2>Won revenue by source, by attribution model</h2>",
        _attribution_svg(report),
        "</section>",
    ]
    if report.costs or report.cost_errors:
        parts.append(_roi_table(report))
    if report.by is not None and report.groups:
        parts.append(_groups_table(report))
    parts.append(_details(t))
    parts.append("</main></body></html>\n")
    return "\n".join(parts)


def _tiles(t: Figures) -> str:
    tiles = [
        ("MQLs", f"{t.mql:,}", "entered the funnel"),
        ("MQL → accepted", fmt_rate(t.accept_rate), f"{t.accepted:,} accepted"),
        (
            "accepted → opportunity",
            fmt_rate(t.opportunity_rate),
            f"{t.opportunity:,} opportunities",
        ),
        ("opportunity → won", fmt_rate(t.win_rate), f"{t.won:,} won"),
        ("revenue won", fmt_money(t.revenue), "latest won amount per lead"),
        (
            "speed to lead (p50)",
            fmt_s(percentile(t.speed_s, 50)),
            f"p90 {fmt_s(percentile(t.speed_s, 90))} · max {fmt_s(max(t.speed_s, default=None))}",
        ),
        (
            "SLA breach rate",
            fmt_rate(t.breach_rate),
            f"{t.sla_breached:,} of {t.sla_clocks:,} hand-offs",
        ),
    ]
    cells = "".join(
        f'<div class="tile"><div class="label">{escape(a)}</div>'
        f'<div class="value">{escape(b)}</div><div class="sub">{escape(c)}</div></div>'
        for a, b, c in tiles
    )
    return f'<div class="tiles">{cells}</div>'


def _funnel_svg(t: Figures) -> str:
    steps = [
        ("MQL", t.mql, None),
        ("accepted", t.accepted, t.accept_rate),
        ("opportunity", t.opportunity, t.opportunity_rate),
        ("won", t.won, t.win_rate),
    ]
    width, bar_h, gap, left = 960, 34, 12, 120
    top = max(t.mql, 1)
    rows = []
    for i, (label, n, r) in enumerate(steps):
        y = i * (bar_h + gap)
        w = max((width - left - 170) * n / top, 2 if n else 0)
        note = f"{n:,}" + ("" if r is None and i == 0 else f"  ({fmt_rate(r)} of previous)")
        rows.append(
            f'<text x="{left - 10}" y="{y + bar_h / 2 + 4}" text-anchor="end">{label}</text>'
            f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" rx="4"'
            f' fill="{_FUNNEL[i]}"/>'
            f'<text x="{left + w + 8:.1f}" y="{y + bar_h / 2 + 4}">{escape(note)}</text>'
        )
    height = len(steps) * (bar_h + gap)
    return (
        f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="Funnel">'
        + "".join(rows)
        + "</svg>"
    )


def _main_currency(report: KpiReport) -> str | None:
    totals: dict[str, float] = {}
    for w in report.weeks:
        for c, a in w.revenue.items():
            totals[c] = totals.get(c, 0.0) + a
    return max(totals, key=lambda c: totals[c]) if totals else None


def _trend_svg(report: KpiReport) -> str:
    weeks = report.weeks
    if not weeks:
        return '<p class="note">No weeks in the range.</p>'
    currency = _main_currency(report)
    width, height, left, right, top, bottom = 960, 280, 50, 80, 16, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    most = max([max(w.mql, w.accepted) for w in weeks] + [1])
    most = -(-most // 4) * 4  # a multiple of the 4 grid steps: whole numbers on the axis
    money = max([w.revenue.get(currency, 0.0) for w in weeks] + [1.0]) if currency else 1.0
    slot = plot_w / len(weeks)
    bar = min(slot * 0.32, 36)
    out = [f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="Weekly trend">']
    for k in range(5):  # grid and left axis (leads)
        y = top + plot_h * (1 - k / 4)
        out.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eef0f3"/>'
            f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{most * k / 4:,.0f}</text>'
        )
        if currency:
            out.append(
                f'<text x="{width - right + 8}" y="{y + 4:.1f}">{_short(money * k / 4)}</text>'
            )
    points = []
    for i, w in enumerate(weeks):
        x = left + i * slot + slot / 2
        for j, (n, color) in enumerate(((w.mql, _FUNNEL[0]), (w.accepted, _FUNNEL[2]))):
            h = plot_h * n / most
            bx = x - bar + j * bar
            out.append(
                f'<rect x="{bx:.1f}" y="{top + plot_h - h:.1f}" width="{bar - 2:.1f}"'
                f' height="{h:.1f}" rx="2" fill="{color}"><title>{w.week}: {n:,}</title></rect>'
            )
        out.append(
            f'<text x="{x:.1f}" y="{height - bottom + 18}" text-anchor="middle">{w.week}</text>'
        )
        if currency:
            y = top + plot_h * (1 - w.revenue.get(currency, 0.0) / money)
            points.append((x, y, w.revenue.get(currency, 0.0)))
    if points:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in points)
        out.append(f'<polyline points="{path}" fill="none" stroke="#dc2626" stroke-width="2.5"/>')
        out += [
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="#dc2626">'
            f"<title>{a:,.0f} {currency}</title></circle>"
            for x, y, a in points
        ]
    out.append("</svg>")
    legend = (
        f'<div class="legend"><span><i style="background:{_FUNNEL[0]}"></i>MQLs</span>'
        f'<span><i style="background:{_FUNNEL[2]}"></i>accepted</span>'
        + (
            f'<span><i style="background:#dc2626"></i>won revenue ({escape(currency)}, right axis)'
            "</span>"
            if currency
            else ""
        )
        + "</div>"
    )
    return "".join(out) + legend


def _short(amount: float) -> str:
    if amount >= 1e6:
        return f"{amount / 1e6:.1f}M"
    if amount >= 1e3:
        return f"{amount / 1e3:.0f}k"
    return f"{amount:.0f}"


def _attribution_svg(report: KpiReport) -> str:
    by_model = {m: report.attributed[m]["source"] for m in ATTRIBUTIONS}
    sources = list(report.attributed["linear"]["source"])
    if not sources:
        return '<p class="note">Nothing won in the range.</p>'
    currencies = sorted({c for m in by_model.values() for per in m.values() for c in per})
    blocks = []
    for currency in currencies:
        values = {
            (m, s): by_model[m].get(s, {}).get(currency, 0.0) for m in ATTRIBUTIONS for s in sources
        }
        most = max([*values.values(), 1.0])
        width, left, bar_h, group_gap = 960, 160, 14, 14
        group_h = 3 * bar_h + group_gap
        out = [
            f'<svg viewBox="0 0 {width} {len(sources) * group_h + 4}" role="img"'
            f' aria-label="Won revenue by source, {escape(currency)}">'
        ]
        for i, source in enumerate(sources):
            y0 = i * group_h
            out.append(
                f'<text x="{left - 10}" y="{y0 + 1.5 * bar_h + 4}" text-anchor="end">'
                f"{escape(source[:24])}</text>"
            )
            for j, m in enumerate(ATTRIBUTIONS):
                v = values[(m, source)]
                w = (width - left - 130) * v / most
                y = y0 + j * bar_h
                out.append(
                    f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h - 2}" rx="2"'
                    f' fill="{_MODELS[m]}"><title>{_MODEL_NAMES[m]}</title></rect>'
                    f'<text x="{left + w + 6:.1f}" y="{y + bar_h - 3}">'
                    f"{v:,.0f} {escape(currency)}</text>"
                )
        out.append("</svg>")
        blocks.append("".join(out))
    legend = (
        '<div class="legend">'
        + "".join(
            f'<span><i style="background:{_MODELS[m]}"></i>{_MODEL_NAMES[m]}</span>'
            for m in ATTRIBUTIONS
        )
        + "</div>"
    )
    campaigns = report.attributed[report.attribution]["campaign"]
    rows = "".join(
        f"<tr><td>{escape(c)}</td><td>{escape(fmt_money(m))}</td></tr>"
        for c, m in campaigns.items()
    )
    table = (
        f'<h2 style="margin-top:18px">By campaign ({_MODEL_NAMES[report.attribution]})</h2>'
        f"<table><tr><th>campaign</th><th>won revenue</th></tr>{rows}</table>"
        if rows
        else ""
    )
    note = (
        '<p class="note">First touch gives a lead\'s won amount to the source of its first UTM'
        " touch, last touch to its last before the win, linear an equal share to each; leads"
        " with no touch count under (none).</p>"
    )
    return legend + "".join(blocks) + table + note


def _roi_table(report: KpiReport) -> str:
    revenue = report.attributed[report.attribution]["source"]
    rows = "".join(
        f"<tr><td>{escape(s)}</td><td>{escape(fmt_money(revenue.get(s, {})))}</td>"
        f"<td>{report.costs.get(s, 0.0):,.0f}</td>"
        f"<td>{'n/a' if v is None else f'{v:+.0%}'}</td></tr>"
        for s, v in report.roi.items()
    )
    extra = ""
    if report.roi_note:
        extra += f'<p class="note">{escape(report.roi_note)}</p>'
    extra += "".join(
        f'<p class="note bad">costs line {e.line}: {escape(e.message)}</p>'
        for e in report.cost_errors
    )
    return (
        f"<section><h2>ROI by source ({_MODEL_NAMES[report.attribution]} attribution)</h2>"
        "<table><tr><th>source</th><th>won revenue</th><th>cost in range</th><th>ROI</th></tr>"
        f"{rows}</table>{extra}"
        '<p class="note">ROI = (attributed revenue − cost) / cost; costs are prorated by days'
        " to the range.</p></section>"
    )


def _groups_table(report: KpiReport) -> str:
    head = (
        f"<tr><th>{escape(str(report.by))}</th><th>MQLs</th><th>accepted</th><th>→ opp.</th>"
        "<th>→ won</th><th>revenue won</th><th>speed to lead p50</th><th>SLA breach</th>"
        "<th>rejections</th></tr>"
    )
    rows = "".join(
        f"<tr><td>{escape(name)}</td><td>{g.mql:,}</td><td>{fmt_rate(g.accept_rate)}</td>"
        f"<td>{fmt_rate(g.opportunity_rate)}</td><td>{fmt_rate(g.win_rate)}</td>"
        f"<td>{escape(fmt_money(g.revenue))}</td><td>{fmt_s(percentile(g.speed_s, 50))}</td>"
        f"<td>{fmt_rate(g.breach_rate)}</td><td>{sum(g.rejections.values()):,}</td></tr>"
        for name, g in report.groups.items()
    )
    return f"<section><h2>By {escape(str(report.by))}</h2><table>{head}{rows}</table></section>"


def _details(t: Figures) -> str:
    reasons = "".join(
        f"<tr><td>{escape(r)}</td><td>{n:,}</td></tr>" for r, n in t.rejections.items()
    )
    stages = "".join(f"<tr><td>{escape(s)}</td><td>{n:,}</td></tr>" for s, n in t.stages.items())
    return (
        "<section><h2>Rejection reasons</h2><table><tr><th>reason</th><th>leads</th></tr>"
        f"{reasons or '<tr><td>none</td><td></td></tr>'}</table></section>"
        "<section><h2>Leads by current stage</h2><table><tr><th>stage</th><th>leads</th></tr>"
        f"{stages or '<tr><td>none</td><td></td></tr>'}</table></section>"
    )
