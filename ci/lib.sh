# Shared helpers for the ci/ scripts; sourced, not run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
step() { printf '\n==> %s\n' "$*"; }
# `skip WHO REASON`: exit status 3, "skipped, and here is why": ci/all.sh
# reports the step as SKIPPED in its summary, runs the remaining steps, and
# then fails unless LAZYFLIGHT_ALLOW_SKIP=1.
skip() {
    local who=$1
    shift
    echo "$who: SKIPPED: $*" >&2
    exit 3
}
# `need_nightly WHO [COMPONENTS]`: installs the nightly toolchain (minimal
# profile, with the comma-separated components) if there is none, or skips
# the step when it cannot be installed.
need_nightly() {
    local who=$1 components=${2:-}
    if ! rustup toolchain list | grep -q '^nightly'; then
        echo "$who: no nightly toolchain; installing it"
        rustup toolchain install nightly --profile minimal ${components:+--component "$components"} ||
            skip "$who" "no nightly toolchain, and it cannot be installed here (no network to the toolchain server?)"
    fi
}
