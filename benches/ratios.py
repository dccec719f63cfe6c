#!/usr/bin/env python3
"""Prints the ratio tables of docs/benchmarks.md from one criterion run.

Usage: python3 benches/ratios.py [CRITERION_DIR [BENCH_LOG]]
(default: $CARGO_TARGET_DIR/criterion, else target/criterion). BENCH_LOG is
the saved output of `cargo bench -p lazyflight-benches`; the paired
contended-init summary (printed by benches/contended.rs) is read from it.

Uses each benchmark's median (robust to the preemptions of a shared
machine). Every ratio compares contenders of the same group, which ran back
to back in one process.
"""
import json
import os
import re
import sys


def median(root, group, bench):
    path = os.path.join(root, group, bench, "new", "estimates.json")
    with open(path) as f:
        return json.load(f)["median"]["point_estimate"]  # nanoseconds


def verdict(ok):
    return "met" if ok else "**missed**"


def main():
    default = os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "criterion")
    root = sys.argv[1] if len(sys.argv) > 1 else default

    print("| `get` (filled) | median | vs `OnceLock::get` | vs raw |")
    print("|---|---|---|---|")
    std = median(root, "get", "std_oncelock")
    raw = median(root, "get", "raw_acquire")
    for b in ["lazyflight", "std_oncelock", "once_cell", "tokio", "async_once_cell", "raw_acquire"]:
        m = median(root, "get", b)
        print(f"| {b} | {m:.2f} ns | {m / std:.2f}x | {m / raw:.2f}x |")
    ours = median(root, "get", "lazyflight")
    print(f"\nTarget `get` <= 1.1x `OnceLock::get`: {ours / std:.2f}x, {verdict(ours / std <= 1.1)}\n")

    print("| `get_or_init` (filled, one poll) | median | vs raw |")
    print("|---|---|---|")
    raw = median(root, "get_or_init_filled", "raw_acquire")
    for b in ["lazyflight", "tokio", "async_once_cell", "raw_acquire"]:
        m = median(root, "get_or_init_filled", b)
        print(f"| {b} | {m:.2f} ns | {m / raw:.2f}x |")
    ours = median(root, "get_or_init_filled", "lazyflight") / raw
    tokio = median(root, "get_or_init_filled", "tokio") / raw
    print(f"\nTarget `get_or_init` <= 1.5x raw: {ours:.2f}x (tokio {tokio:.2f}x), {verdict(ours <= 1.5)}\n")

    print("| separate groups, per iteration of 1024 tasks | floor | lazyflight above floor "
          "| tokio above floor | async-once-cell above floor | raw_mutex_vec above floor "
          "| ours / tokio |")
    print("|---|---|---|---|---|---|---|")
    verdicts = []
    for n in [2, 64, 1024]:
        g = f"contended_init_{n}"
        floor = median(root, g, "floor")
        above = {b: median(root, g, b) - floor
                 for b in ["lazyflight", "tokio", "async_once_cell", "raw_mutex_vec"]}
        ratio = above["lazyflight"] / above["tokio"] if above["tokio"] > 0 else float("nan")
        verdicts.append((n, ratio))
        us = lambda ns: f"{ns / 1000:.0f} us"
        print(f"| N = {n} | {us(floor)} | {us(above['lazyflight'])} | {us(above['tokio'])} "
              f"| {us(above['async_once_cell'])} | {us(above['raw_mutex_vec'])} | {ratio:.2f}x |")
    print()
    for n, r in verdicts:
        print(f"Separate groups, N = {n}: above-floor cost <= 0.5x tokio's: {r:.2f}x, {verdict(r <= 0.5)}")

    if len(sys.argv) > 2:
        paired(sys.argv[2])


def paired(log):
    """The paired measurement: per-round differences to the floor."""
    text = open(log).read()
    print("\n| paired, per round of 1024 tasks | floor | lazyflight above floor "
          "| tokio above floor | async-once-cell above floor | raw_mutex_vec above floor "
          "| ours / tokio | raw / tokio | target <= 0.5x |")
    print("|---|---|---|---|---|---|---|---|---|")
    for m in re.finditer(r"contended_init_paired/(\d+): (\d+) rounds.*?\n(.*?)above-floor ratio "
                         r"lazyflight / tokio = ([\d.-]+)", text, re.S):
        n, body, ratio = m.group(1), m.group(3), float(m.group(4))
        floor = re.search(r"floor\s+median\s+([\d.]+) us", body).group(1)
        above = dict(re.findall(r"(\w+)\s+median\s+[\d.]+ us, above floor .*?([\d.-]+) us", body))
        raw = float(above["raw_mutex_vec"]) / float(above["tokio"])
        print(f"| N = {n} | {floor} us | {above['lazyflight']} us | {above['tokio']} us "
              f"| {above['async_once_cell']} us | {above['raw_mutex_vec']} us "
              f"| {ratio:.2f}x | {raw:.2f}x | {verdict(ratio <= 0.5)} |")


if __name__ == "__main__":
    main()
