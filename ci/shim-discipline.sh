#!/usr/bin/env bash
# Shim discipline: outside src/sync/, library code must take every atomic,
# lock, Arc, UnsafeCell, thread and thread-local from `crate::sync`, or loom
# and shuttle cannot see it. Clippy's disallowed_types (clippy.toml) catches
# some uses by type; this scan also catches imports and paths clippy does not
# resolve: use-trees over several lines (nested groups too), aliases,
# `core::sync` / `alloc::sync`, std's `thread_local!`, and cfg'd-out code.
# Whole-line comments (doc examples included) are not scanned.
# Usage: ci/shim-discipline.sh [dir] (default src). Budget 10 s; measured < 1 s.
source "$(dirname "$0")/lib.sh"
step "shim discipline"
dir=${1:-src}
mapfile -t files < <(find "$dir" -name '*.rs' -not -path "$dir/sync/*" | sort)
[ "${#files[@]}" -gt 0 ] || { echo "no Rust files under $dir"; exit 1; }
# Each file is read whole, so a match may span lines. A hit prints
# file:line: text.
# shellcheck disable=SC2016
scan='
    # Whole-line comments go first (their text only: line numbers stay).
    # Doc examples are doctests, crates of their own that may use std;
    # a comment that names a path takes nothing.
    s{^[ \t]*//[^\n]*}{}mg;
    my $s = qr/\s*::\s*/;
    my @rules = (
        # A path through std, core or alloc to what the shim wraps.
        qr/\bstd${s}(?:sync|thread)\b/,
        qr/\b(?:core|alloc)${s}sync\b/,
        qr/\b(?:std|core)${s}cell${s}(?:UnsafeCell\b|\{[^;]*\bUnsafeCell\b)/,
        # A use-tree of std/core/alloc (to its semicolon, nested groups
        # included) naming sync or thread anywhere.
        qr/\buse\s+(?:::)?\s*std${s}\{[^;]*\b(?:sync|thread)\b[^;]*;/,
        qr/\buse\s+(?:::)?\s*(?:core|alloc)${s}\{[^;]*\bsync\b[^;]*;/,
        # The crates themselves renamed, which hides every path above.
        qr/\b(?:use|extern\s+crate)\s+(?:::)?\s*(?:std|core|alloc)\s+as\b/,
        # std`s thread_local! (from the prelude, or by path): only the
        # shim`s, crate::sync::thread_local!, is modelled.
        qr/(?<!sync::)(?<!sync)\bthread_local!/,
        # Other synchronization crates.
        qr/\bparking_lot${s}/, qr/\bcrossbeam[a-z_]*${s}/,
    );
    for my $re (@rules) {
        while (/$re/g) {
            my $line = (substr($_, 0, $-[0]) =~ tr/\n//) + 1;
            (my $text = $&) =~ s/\s+/ /g;
            print "$ARGV:$line: $text\n";
        }
    }
'
# Self-test: the scan reports every line of the fixture marked `bypass`, and
# no other, so a rule that stops matching fails this step.
fixture=$(dirname "$0")/fixtures/shim_bypass.rs
want=$(grep -n '// bypass' "$fixture" | cut -d: -f1 | sort -un)
got=$(perl -0777 -ne "$scan" "$fixture" | cut -d: -f2 | sort -un)
if [ "$want" != "$got" ]; then
    echo "the scan's self-test failed: lines marked bypass in $fixture: $(echo $want)," \
        "lines reported: $(echo $got)"
    exit 1
fi
if ! hits=$(perl -0777 -ne "$scan" "${files[@]}"); then
    echo "the scan itself failed"
    exit 1
fi
if [ -n "$hits" ]; then
    echo "these lines bypass the crate::sync shim (invisible to loom/shuttle):"
    echo "$hits"
    exit 1
fi
echo "ok: ${#files[@]} files outside $dir/sync/ take synchronization from crate::sync only"
