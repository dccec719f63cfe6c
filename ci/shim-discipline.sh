#!/usr/bin/env bash
# Shim discipline: outside src/sync/, library code must take every atomic,
# lock, Arc, UnsafeCell and thread from `crate::sync`, or loom and shuttle
# cannot see it. Clippy's disallowed_types (clippy.toml) catches uses by type;
# this grep also catches imports and paths clippy does not resolve (use-trees,
# macros, cfg'd-out code). Budget 10 s; measured < 1 s.
source "$(dirname "$0")/lib.sh"
step "shim discipline"
pattern='std::sync|std::thread|(std|core)::cell::(UnsafeCell|\{[^}]*UnsafeCell)|core::sync::atomic::(Atomic|\{[^}]*Atomic)|std::\{[^}]*\b(sync|thread)\b|\bparking_lot::|\bcrossbeam[a-z_]*::'
if hits=$(grep -rnE "$pattern" src --include='*.rs' | grep -v '^src/sync/'); then
    echo "these lines bypass the crate::sync shim (invisible to loom/shuttle):"
    echo "$hits"
    exit 1
fi
echo "ok: no std::sync / std::thread / raw UnsafeCell outside src/sync/"
