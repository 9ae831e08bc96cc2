"""BENCHMARKS.svg, drawn by hand (no plotting dependency): spawn mode against its floor, pool-mode rates
against the peers, and idle latency."""
import math
from xml.sax.saxutils import escape

W = 960
COLORS = {"sqlite": "#7b8794", "redis": "#d64545", "amqp": "#f0a202", "postgres": "#336791", "floor": "#3e4c59"}
NAMES = {"sqlite": "sqlite", "redis": "Redis", "amqp": "RabbitMQ", "postgres": "PostgreSQL"}
FONT = 'font-family="DejaVu Sans, Arial, sans-serif"'


def text(x, y, s, size=12, anchor="start", weight="normal", fill="#1f2933", halo=False):
    h = ' stroke="#ffffff" stroke-width="3" paint-order="stroke"' if halo else ""
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" font-weight="{weight}" '
            f'fill="{fill}"{h} {FONT}>{escape(str(s))}</text>')


def rect(x, y, w, h, fill):
    return f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 0):.1f}" height="{max(h, 0):.1f}" fill="{fill}"/>'


def line(x1, y1, x2, y2, stroke="#9aa5b1", dash=None, width=1):
    d = f' stroke-dasharray="{dash}"' if dash else ""
    return f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{stroke}" stroke-width="{width}"{d}/>'


def legend(x, y, items):
    out = []
    for label, color in items:
        out += [rect(x, y - 9, 10, 10, color), text(x + 14, y, label, 11)]
        x += 24 + 7 * len(label)
    return out


def bars(top, title, groups, ymax, fmt, refs=(), unit=""):
    """Grouped vertical bars. groups: [(label, [(series, value, color)])]; refs: [(value, label, color)]."""
    h, left, right = 210, 70, W - 30
    base = top + 30 + h
    out = [text(20, top + 16, title, 14, weight="bold")]
    for k in range(5):
        v = ymax * k / 4
        y = base - h * k / 4
        out += [line(left, y, right, y, "#e4e7eb"), text(left - 6, y + 4, fmt(v), 10, "end")]
    gw = (right - left) / max(len(groups), 1)
    for i, (glabel, series) in enumerate(groups):
        bw = min(46, (gw - 20) / max(len(series), 1))
        x0 = left + i * gw + (gw - bw * len(series)) / 2
        for j, (_, v, color) in enumerate(series):
            if v is None:
                continue
            bh = h * min(v, ymax) / ymax
            x = x0 + j * bw
            out += [rect(x + 2, base - bh, bw - 4, bh, color), text(x + bw / 2, base - bh - 4, fmt(v), 9, "middle")]
        out.append(text(left + i * gw + gw / 2, base + 16, glabel, 11, "middle"))
    # Labels of lines close together alternate ends; where both ends are taken, a label moves up a line.
    last, labels = {"end": None, "start": None}, []
    for v, label, color in sorted((r for r in refs if r[0] is not None and r[0] <= ymax), key=lambda r: r[0]):
        y = base - h * v / ymax
        ly = y - 4
        room = {a: (1e9 if last[a] is None else last[a] - ly) for a in last}
        anchor = "end" if room["end"] >= 11 or room["end"] >= room["start"] else "start"
        ly = min(ly, last[anchor] - 11) if last[anchor] is not None else ly
        last[anchor] = ly
        out.append(line(left, y, right, y, color, "6 4", 1.5))
        labels.append(text(right if anchor == "end" else left + 4, ly, label, 10, anchor, fill=color, halo=True))
    out += labels
    out.append(line(left, base, right, base, "#52606d"))
    if unit:
        out.append(text(left - 6, top + 24, unit, 10, "end"))
    return out


def spawn_panel(top, s):
    groups = []
    for w in s:
        series = [("floor", 100.0, COLORS["floor"])]
        series += [(r["adapter"], 100 * r["of_floor"], COLORS[r["adapter"]]) for r in w["runs"]]
        groups.append((f"{w['label']} (floor {w['floor']['per_s']:,.0f} tasks/s)", series))
    out = bars(top, "1. Spawn mode: tasks/s as % of the direct-spawn floor (same worker, same parallelism)",
               groups, 110, lambda v: f"{v:.0f}%", [(95, "target 95%", "#2f8132")])
    kinds = [k for k in NAMES if any(r["adapter"] == k for w in s for r in w["runs"])]
    return out + legend(70, top + 274, [("floor", COLORS["floor"])] + [(NAMES[k], COLORS[k]) for k in kinds])


def pool_panel(top, s, peers):
    cs = sorted({r["concurrency"] for r in s})
    by = {(r["adapter"], r["concurrency"]): r["per_s"] for r in s}
    groups = [(f"concurrency {c}", [(k, by.get((k, c)), COLORS[k]) for k in NAMES if (k, c) in by]) for c in cs]
    refs = [(5000, "target 5,000/s", "#2f8132")]
    for p in peers:
        name = p["peer"].split(" (")[0] + (" threads" if "thread" in p["peer"] else "")
        refs.append((p["per_s"], f"{name} on {NAMES.get(p['broker'], p['broker'])}: {p['per_s']:,.0f}/s", "#616e7c"))
    top_v = max([v for v in by.values()] + [r[0] for r in refs] + [1])
    ymax = 10 ** math.floor(math.log10(top_v)) * math.ceil(top_v * 1.15 / 10 ** math.floor(math.log10(top_v)))
    out = bars(top, "2. Pool mode: no-op Python worker, results stored (tasks/s); dashed: target and peers",
               groups, ymax, lambda v: f"{v:,.0f}", refs)
    kinds = [(n, COLORS[k]) for k, n in NAMES.items() if any(r["adapter"] == k for r in s)]
    return out + legend(70, top + 274, kinds)


def latency_panel(top, lat):
    """Horizontal bars on a log scale: median, with a tick at p95."""
    rows = [(f"floor: {m} started directly", v, COLORS["floor"]) for m, v in lat["floor"].items()]
    rows += [(f"{r['adapter']} {r['mode']}", r, COLORS[r["adapter"]]) for r in lat["runs"]]
    left, right, rh = 200, W - 60, 17
    lo, hi = 0.1, 1000.0
    xs = lambda v: left + (right - left) * (math.log10(max(v, lo)) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))  # noqa: E731
    out = [text(20, top + 16, "3. Idle latency, submit -> result visible (ms, log scale): bar = median, tick = p95",
                14, weight="bold")]
    y0 = top + 34
    for v in (0.1, 1, 10, 100, 1000):
        out += [line(xs(v), y0 - 4, xs(v), y0 + rh * len(rows), "#e4e7eb"),
                text(xs(v), y0 + rh * len(rows) + 14, f"{v:g} ms", 10, "middle")]
    out.append(line(xs(1.5), y0 - 4, xs(1.5), y0 + rh * len(rows), "#2f8132", "6 4", 1.5))
    out.append(text(xs(1.5) - 4, y0 - 6, "pool target 1.5 ms", 10, "end", fill="#2f8132"))
    if any(r["adapter"] == "postgres" and r["mode"] == "pool" for r in lat["runs"]):
        out.append(line(xs(2.0), y0 - 4, xs(2.0), y0 + rh * len(rows), COLORS["postgres"], "6 4", 1.5))
        out.append(text(xs(2.0) + 4, y0 - 6, "PostgreSQL pool target 2 ms", 10, fill=COLORS["postgres"]))
    for i, (label, r, color) in enumerate(rows):
        y = y0 + i * rh
        med, p95 = r.get("median_ms"), r.get("p95_ms")
        out.append(text(left - 8, y + 11, label, 11, "end"))
        if med is None:
            continue
        out += [rect(left, y + 2, xs(med) - left, rh - 5, color), line(xs(p95), y + 1, xs(p95), y + rh - 2, "#1f2933", width=2),
                text(xs(max(med, p95)) + 6, y + 11, f"{med:.2f} / {p95:.2f}", 10)]
    return out, y0 + rh * len(rows) + 24


def svg(res):
    s = res["sections"]
    parts, y = [], 10
    if "spawn" in s:
        parts += spawn_panel(y, s["spawn"])
        y += 290
    if "pool" in s:
        parts += pool_panel(y, s["pool"], s.get("peers", []))
        y += 290
    if "latency" in s:
        p, y = latency_panel(y, s["latency"])
        parts += p
    parts.append(text(W - 20, y + 6, f"bench/run, {res['machine']['date']}, {res['machine']['cores']} cores", 10, "end",
                      fill="#7b8794"))
    h = y + 16
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" viewBox="0 0 {W} {h}">\n'
            f'<rect width="{W}" height="{h}" fill="#ffffff"/>\n' + "\n".join(parts) + "\n</svg>\n")
