#!/usr/bin/env python3
"""Prints the ratio tables of docs/benchmarks.md from one benchmark run.

Usage: python3 benches/ratios.py CRITERION_DIR BENCH_LOG

CRITERION_DIR is $CARGO_TARGET_DIR/criterion; BENCH_LOG is the saved output
of `cargo bench -p lazyflight-benches`, from which the paired measurements
(printed by benches/alazy.rs and benches/contended.rs) are read.

The paired figures are the primary ones: every round times all contenders
back to back, so the load drifting on a shared machine cancels out in the
per-round ratios and differences. The criterion groups (each contender
measured for 2 s, one after the other) are listed too, from their medians.
"""
import json
import os
import re
import sys


def verdict(ok):
    return "met" if ok else "**missed**"


def crit(root, group, bench):
    path = os.path.join(root, group, bench, "new", "estimates.json")
    with open(path) as f:
        return json.load(f)["median"]["point_estimate"]  # ns per iteration


def paired_fast(text, what):
    """{name: (median ns, median per-round ratio)} of fast_path_paired/what."""
    m = re.search(rf"fast_path_paired/{what}: .*?\n((?:  .*\n)+)", text)
    rows = re.findall(r"  (\w+)\s+median\s+([\d.]+) ns, per-round ratio to \w+ \(median\)\s+([\d.]+)",
                      m.group(1))
    return {name: (float(ns), float(r)) for name, ns, r in rows}


def paired_contended(text, n):
    """(floor us, {name: (median us, above-floor us)}) of contended_init_paired/n."""
    m = re.search(rf"contended_init_paired/{n}: .*?\n((?:  .*\n)+)", text)
    body = m.group(1)
    floor = float(re.search(r"floor\s+median\s+([\d.]+) us", body).group(1))
    rows = re.findall(r"  (\w+)\s+median\s+([\d.]+) us, above floor .*?([\d.-]+) us", body)
    return floor, {name: (float(t), float(a)) for name, t, a in rows}


def main():
    root, log = sys.argv[1], sys.argv[2]
    text = open(log).read()

    get = paired_fast(text, "get")
    print("| `get`, filled cell (paired) | ns per call | vs `OnceLock::get` |")
    print("|---|---|---|")
    for name, (ns, r) in get.items():
        print(f"| {name} | {ns:.3f} | {r:.2f}x |")
    ours = get["lazyflight"][1]
    print(f"\nTarget `get` <= 1.1x `OnceLock::get`: {ours:.2f}x, {verdict(ours <= 1.1)}\n")

    goi = paired_fast(text, "get_or_init_filled")
    print("| `get_or_init`, filled cell, one poll (paired) | ns per call | vs raw load |")
    print("|---|---|---|")
    for name, (ns, r) in goi.items():
        print(f"| {name} | {ns:.3f} | {r:.2f}x |")
    ours, tokio = goi["lazyflight"][1], goi["tokio"][1]
    print(f"\nTarget `get_or_init` <= 1.5x raw: {ours:.2f}x (tokio {tokio:.2f}x, "
          f"ours / tokio {ours / tokio:.2f}), {verdict(ours <= 1.5)}\n")

    print("| contended init (paired), per 1024 tasks | floor | lazyflight | tokio "
          "| async-once-cell | raw_mutex_vec | lazyflight owned | ours / tokio | raw / tokio "
          "| owned / tokio | target <= 0.5x (ours, owned) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for n in [2, 64, 1024]:
        floor, rows = paired_contended(text, n)
        a = {k: v[1] for k, v in rows.items()}
        r = a["lazyflight"] / a["tokio"]
        o = a["lazyflight_owned"] / a["tokio"]
        print(f"| N = {n} | {floor:.0f} us | +{a['lazyflight']:.1f} us | +{a['tokio']:.1f} us "
              f"| +{a['async_once_cell']:.1f} us | +{a['raw_mutex_vec']:.1f} us "
              f"| +{a['lazyflight_owned']:.1f} us "
              f"| {r:.2f}x | {a['raw_mutex_vec'] / a['tokio']:.2f}x | {o:.2f}x "
              f"| {verdict(r <= 0.5)}, {verdict(o <= 0.5)} |")

    print("\nCriterion groups (medians; each contender measured separately, seconds apart):\n")
    print("| group | " + " | ".join(["contender", "median", "ratio"]) + " |")
    print("|---|---|---|---|")
    for group, ref, names, per in [
        ("get", "std_oncelock",
         ["lazyflight", "std_oncelock", "once_cell", "tokio", "async_once_cell", "raw_acquire"], 8),
        ("get_or_init_filled", "raw_acquire",
         ["lazyflight", "tokio", "async_once_cell", "std_oncelock", "once_cell", "raw_acquire"], 1),
    ]:
        base = crit(root, group, ref)
        for b in names:
            m = crit(root, group, b)
            print(f"| {group} | {b} | {m / per:.3f} ns/call | {m / base:.2f}x {ref} |")
    for n in [2, 64, 1024]:
        g = f"contended_init_{n}"
        floor = crit(root, g, "floor")
        tokio = crit(root, g, "tokio") - floor
        for b in ["floor", "lazyflight", "tokio", "async_once_cell", "raw_mutex_vec",
                  "lazyflight_owned"]:
            m = crit(root, g, b)
            extra = "" if b == "floor" else f"+{(m - floor) / 1000:.0f} us, {(m - floor) / tokio:.2f}x tokio's"
            print(f"| {g} | {b} | {m / 1000:.0f} us | {extra} |")


if __name__ == "__main__":
    main()
