#!/usr/bin/env python3
"""Tables and an SVG chart of lazyflight's paired benchmark ratios.

Usage: python3 benches/plot.py [--svg OUT.svg] LOG [LOG...]

Each LOG is the saved output of `cargo bench -p lazyflight-benches --bench
group|cache|task` (several benches may share one log; give one log per run).
The paired measurements print tab-separated lines (see
`lazyflight_benches::Paired`):

    paired  <measurement>  <contender>  <median>  <unit>  ratio|above  <figure>
    vs      <measurement>  <peer>       <lazyflight / peer>

This prints the markdown tables of docs/benchmarks.md (one column per run,
with the targets' verdicts) and, with --svg, draws every `vs` ratio as a bar
on a log scale: left of 1 means lazyflight takes less time than the peer.
Only the Python standard library is used; the SVG is written by hand.
"""
import sys
from xml.sax.saxutils import escape

# (measurement, peer, limit, label): lazyflight / peer must be <= limit.
TARGETS = [
    ("group_uncontended", "best_peer", 0.5, "Group uncontended <= 0.5x the best peer crate"),
    ("group_1_63", "shared_mutex_hashmap", 1.0, "Group 1 + 63, above the floor <= 1.0x the Shared baseline"),
    ("cache_hit/1_thread", "quick_cache_sync", 1.0, "Cache hit, 1 thread <= 1.0x quick_cache `get`"),
    ("cache_hit/1_thread", "quick_cache_async", 1.0, "Cache hit, 1 thread <= 1.0x quick_cache `get_value_or_guard_async`"),
    ("cache_hit/2_threads", "quick_cache_sync", 1.0, "Cache hit, 2 threads <= 1.0x quick_cache `get`"),
    ("cache_hit/2_threads", "quick_cache_async", 1.0, "Cache hit, 2 threads <= 1.0x quick_cache `get_value_or_guard_async`"),
    ("cache_miss_64", "quick_cache", 0.5, "Cache 64 callers on one absent key, above the floor <= 0.5x quick_cache"),
    ("collect_ready/built", "futures_buffered", 0.5, "collect_all, 100k ready children (built in the timing) <= 0.5x futures-buffered"),
    ("collect_ready/prebuilt", "futures_buffered", 0.5, "collect_all, 100k ready children (prebuilt) <= 0.5x futures-buffered"),
    ("collect_ready/values", "futures_buffered", 0.5, "collect_all, 100k `Lazy::ready` children <= 0.5x futures-buffered over `future::ready`"),
]
# measurement: ns per child must be <= this.
ABSOLUTE = [
    ("collect_ready/built", 10.0, "collect_all ready children (built in the timing) <= 10 ns each"),
    ("collect_ready/prebuilt", 10.0, "collect_all ready children (prebuilt) <= 10 ns each"),
    ("collect_ready/values", 10.0, "collect_all `Lazy::ready` children <= 10 ns each"),
]
# Peer crates of the Group measurements (the "best peer" of the target).
GROUP_PEERS = ["rs_singleflight", "singleflight_async", "async_singleflight"]


def parse(path):
    paired, vs, order = {}, {}, []
    for line in open(path, errors="replace"):
        f = line.rstrip("\n").split("\t")
        if f[0] == "paired" and len(f) == 7:
            m = f[1]
            if m not in paired:
                paired[m] = {}
                order.append(m)
            paired[m][f[2]] = (float(f[3]), f[4], f[5], float(f[6]))
        elif f[0] == "vs" and len(f) == 4:
            vs.setdefault(f[1], {})[f[2]] = float(f[3])
    return paired, vs, order


def target_ratio(vs, measurement, peer):
    row = vs.get(measurement, {})
    if peer == "best_peer":
        peers = [row[p] for p in GROUP_PEERS if p in row]
        # The best peer is the fastest, so ours / best is the largest ratio.
        return max(peers) if peers else None
    return row.get(peer)


def tables(runs):
    names = [f"run {i + 1}" for i in range(len(runs))]
    order = []
    for paired, _, o in runs:
        order += [m for m in o if m not in order]
    for m in order:
        print(f"\n#### `{m}`\n")
        unit = next(r[0][m][c][1] for r in runs if m in r[0] for c in r[0][m])
        kind = next(r[0][m][c][2] for r in runs if m in r[0] for c in r[0][m])
        fig = "ratio to the first row" if kind == "ratio" else "above the floor"
        head = " | ".join(f"{n}: {unit} | {n}: {fig} | {n}: ours / it" for n in names)
        print(f"| contender | {head} |")
        print("|---" * (1 + 3 * len(names)) + "|")
        contenders = []
        for paired, _, _ in runs:
            contenders += [c for c in paired.get(m, {}) if c not in contenders]
        for c in contenders:
            cells = []
            for paired, vs, _ in runs:
                if c not in paired.get(m, {}):
                    cells += ["", "", ""]
                    continue
                med, _, k, v = paired[m][c]
                cells.append(f"{med:.3f}" if med < 100 else f"{med:.0f}")
                cells.append(f"{v:.2f}x" if k == "ratio" else ("" if c == "floor" else f"+{v:.1f}"))
                r = vs.get(m, {}).get(c)
                cells.append(f"{r:.2f}" if r is not None else "")
            name = f"**{c}**" if c == "lazyflight" else c
            print(f"| {name} | " + " | ".join(cells) + " |")
    print("\n#### Targets\n")
    print("| target | " + " | ".join(names) + " | verdict |")
    print("|---" * (2 + len(names)) + "|")
    for m, peer, limit, label in TARGETS:
        rs = [target_ratio(vs, m, peer) for _, vs, _ in runs]
        if all(r is None for r in rs):
            continue
        ok = all(r is not None and r <= limit for r in rs)
        cells = [f"{r:.2f}x" if r is not None else "" for r in rs]
        print(f"| {label} | " + " | ".join(cells) + f" | {'met' if ok else '**missed**'} |")
    for m, limit, label in ABSOLUTE:
        vals = [p[m]["lazyflight"][0] if m in p and "lazyflight" in p[m] else None for p, _, _ in runs]
        if all(v is None for v in vals):
            continue
        ok = all(v is not None and v <= limit for v in vals)
        cells = [f"{v:.1f} ns" if v is not None else "" for v in vals]
        print(f"| {label} | " + " | ".join(cells) + f" | {'met' if ok else '**missed**'} |")


def svg(runs, out):
    import math

    rows = []  # (measurement, peer, [ratio per run])
    for _, vs, order in runs:
        for m in order:
            for peer in vs.get(m, {}):
                if not any(r[0] == m and r[1] == peer for r in rows):
                    rows.append((m, peer, [run[1].get(m, {}).get(peer) for run in runs]))
    lo, hi = 0.01, 100.0
    left, width, bar_h, gap, top = 330, 520, 14, 6, 70
    colors = ["#3b6ea8", "#e08a2c", "#5a9e4b"]
    group_gap = 14
    x = lambda r: left + width * (math.log10(min(max(r, lo), hi)) - math.log10(lo)) / (
        math.log10(hi) - math.log10(lo))
    parts, y, last_m = [], top, None
    limits = {(m, p): lim for m, p, lim, _ in TARGETS}
    for m, peer, rs in rows:
        if m != last_m:
            y += group_gap
            parts.append(f'<text x="8" y="{y + 12}" font-weight="bold">{escape(m)}</text>')
            y += 18
            last_m = m
        row_h = bar_h * len(runs) + gap
        parts.append(f'<text x="{left - 8}" y="{y + row_h / 2 + 2}" text-anchor="end">'
                     f'vs {escape(peer)}</text>')
        lim = limits.get((m, peer))
        if lim is None and m == "group_uncontended" and peer in GROUP_PEERS:
            lim = 0.5
        if lim is not None:
            parts.append(f'<line x1="{x(lim):.1f}" x2="{x(lim):.1f}" y1="{y - 2}" y2="{y + row_h - gap + 2}" '
                         'stroke="#c0392b" stroke-width="2" stroke-dasharray="3,2"/>')
        for i, r in enumerate(rs):
            if r is None:
                continue
            x0, x1 = sorted([x(1.0), x(r)])
            yy = y + i * bar_h
            parts.append(f'<rect x="{x0:.1f}" y="{yy}" width="{max(x1 - x0, 1):.1f}" height="{bar_h - 2}" '
                         f'fill="{colors[i % len(colors)]}"><title>{escape(m)} vs {escape(peer)}, '
                         f'run {i + 1}: {r:.3f}</title></rect>')
            tx = x1 + 4 if r >= 1 else x0 - 4
            anchor = "start" if r >= 1 else "end"
            parts.append(f'<text x="{tx:.1f}" y="{yy + bar_h - 4}" text-anchor="{anchor}" '
                         f'font-size="10">{r:.2f}</text>')
        y += row_h
    height = y + 40
    axis = []
    for t in [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100]:
        axis.append(f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{top}" y2="{y}" '
                    f'stroke="{"#555" if t == 1 else "#ddd"}" stroke-width="1"/>')
        axis.append(f'<text x="{x(t):.1f}" y="{top - 4}" text-anchor="middle" font-size="10">{t:g}</text>')
        axis.append(f'<text x="{x(t):.1f}" y="{y + 14}" text-anchor="middle" font-size="10">{t:g}</text>')
    legend = []
    for i in range(len(runs)):
        legend.append(f'<rect x="{left + 10 + i * 80}" y="{height - 22}" width="12" height="10" '
                      f'fill="{colors[i % len(colors)]}"/>')
        legend.append(f'<text x="{left + 26 + i * 80}" y="{height - 13}" font-size="11">run {i + 1}</text>')
    legend.append(f'<line x1="{left + 10 + len(runs) * 80}" x2="{left + 10 + len(runs) * 80}" '
                  f'y1="{height - 24}" y2="{height - 10}" stroke="#c0392b" stroke-width="2" '
                  'stroke-dasharray="3,2"/>')
    legend.append(f'<text x="{left + 16 + len(runs) * 80}" y="{height - 13}" font-size="11">target</text>')
    total_w = left + width + 60
    doc = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{total_w}" height="{height}" '
        f'viewBox="0 0 {total_w} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{total_w}" height="{height}" fill="white"/>',
        '<text x="8" y="20" font-size="15" font-weight="bold">lazyflight time / peer time '
        '(paired medians, log scale)</text>',
        '<text x="8" y="38" font-size="11">left of 1: lazyflight takes less time; '
        'dashed red: the target</text>',
        *axis, *parts, *legend, "</svg>",
    ]
    with open(out, "w") as f:
        f.write("\n".join(doc) + "\n")


def main():
    args = sys.argv[1:]
    out = None
    if args[:1] == ["--svg"]:
        out, args = args[1], args[2:]
    if not args:
        sys.exit(__doc__)
    runs = [parse(p) for p in args]
    tables(runs)
    if out:
        svg(runs, out)
        print(f"\nwrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
