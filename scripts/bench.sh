#!/usr/bin/env bash
# Runs the benchmarks of BENCHMARKS.md (the method is written there).
#
#   scripts/bench.sh                 every figure (about 40 min on 2 cores): release build,
#                                    criterion's planner benchmark, then the operator
#                                    benchmark driver (benches/operator/); refreshes the
#                                    generated part of BENCHMARKS.md and docs/bench/
#   scripts/bench.sh --quick         a short smoke run (about 3 min) that keeps the harness
#                                    working (CI); publishes nothing
#   scripts/bench.sh --only cost,convergence
#                                    a subset: cost, convergence, reaction, planner,
#                                    drift-events, scale
#   scripts/bench.sh --no-publish    measure without touching BENCHMARKS.md
#
# Other arguments go to the driver (`cargo bench --bench operator -- --help`).
# Raw results go to target/bench/results.json, the tables to target/bench/results.md,
# the plots to target/bench/convergence.svg and scale.svg, logs and inputs to target/bench/work/.
# The controller scenarios need the envtest binaries (scripts/envtest.sh builds them
# once, or set KUBEBUILDER_ASSETS).
set -euo pipefail

main() {
    cd "$(dirname "${BASH_SOURCE[0]}")/.."
    local quick=0 publish=1 only="" t0 t1 t2
    local driver=()
    while (($#)); do
        case "$1" in
            --quick) quick=1; driver+=(--quick) ;;
            --no-publish) publish=0 ;;
            --only) only="${2:-}"; driver+=(--only "$only"); shift ;;
            --only=*) only="${1#--only=}"; driver+=("$1") ;;
            *) driver+=("$1") ;;
        esac
        shift
    done
    if ((quick == 0 && publish == 1)); then driver+=(--publish); fi

    t0=$(date +%s)
    # Build everything first: no compilation may overlap a measurement.
    cargo bench --locked --no-run --bench plan --bench operator
    t1=$(date +%s)
    if [[ -z "$only" || ",${only}," == *",planner,"* ]]; then
        if ((quick)); then
            cargo bench --locked --bench plan -- --warm-up-time 0.5 --measurement-time 1 \
                --sample-size 10 '10k-resources-100-bindings/plan$'
        else
            # 20 samples, not criterion's 100: the catch-all cases take up to 0.6 s an
            # iteration and the whole run has a 30-minute budget.
            cargo bench --locked --bench plan -- --sample-size 20
        fi
    fi
    cargo bench --locked --bench operator -- "${driver[@]}"
    t2=$(date +%s)
    echo "bench: build $((t1 - t0)) s, measurements $((t2 - t1)) s, total $((t2 - t0)) s" >&2
}

main "$@"; exit $?  # one line: bash must not read on if this file changes meanwhile
