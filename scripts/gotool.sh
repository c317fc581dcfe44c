#!/usr/bin/env bash
# Upstream Go tools the tests run (helm, promtool, a kstatus verdict helper, ...), built
# from the Go module proxy with the local Go toolchain, once, into a cache outside the tree.
#
#   scripts/gotool.sh NAME
#       Print the path of the built tool NAME (only the path goes to stdout), building it
#       first when the cache has no build of the current pin. NAME is a wrapper module in
#       scripts/gotools/NAME/: a go.mod (and go.sum) that pins the upstream module and
#       names the command with a `tool PACKAGE` directive (Go 1.24+), or, for a thin
#       helper around an upstream library, a main.go beside the go.mod (built as `.`).
#       An optional file `build-tags` beside the go.mod names Go build tags (one line,
#       comma-separated), e.g. to leave out parts of a large tool the tests never run.
#   scripts/gotool.sh tidy NAME
#       Resolve scripts/gotools/NAME/go.sum after editing its go.mod (needs the proxy).
#
# The cache key is a hash of the wrapper module's files and the Go version, so a new pin
# builds once and an unchanged one never rebuilds. Builds are serialised with a lock: a
# second caller waits and reuses the result. The cache lives in
# ${BINAUTHZ_GOTOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/binauthz-operator/gotools}.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MODULES="${SCRIPT_DIR}/gotools"
CACHE="${BINAUTHZ_GOTOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/binauthz-operator/gotools}"

log() { printf 'gotool: %s\n' "$*" >&2; }
die() { printf 'gotool: error: %s\n' "$*" >&2; exit 1; }

find_go() {
    if [[ -n "${GO:-}" ]]; then printf '%s\n' "$GO"; return; fi
    if command -v go >/dev/null 2>&1; then command -v go; return; fi
    if [[ -x /usr/local/go/bin/go ]]; then printf '%s\n' /usr/local/go/bin/go; return; fi
    die "no Go toolchain found (install Go, or set GO=/path/to/go)"
}

# Never let the go command fetch another toolchain: offline, the local one must do.
go_env() {
    env GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=0 GOFLAGS="-buildvcs=false" "$@"
}

module_dir() { # module_dir NAME
    [[ "$1" =~ ^[a-z0-9][a-z0-9-]*$ ]] || die "tool name '$1' is not a wrapper module name (lowercase letters, digits, '-')"
    local dir="${MODULES}/$1"
    [[ -f "${dir}/go.mod" ]] || die "no wrapper module for '$1': ${dir}/go.mod is missing (tools: $(ls "$MODULES" | tr '\n' ' '))"
    printf '%s\n' "$dir"
}

build_package() { # build_package DIR
    local pkg
    pkg="$(awk '$1 == "tool" && NF == 2 { print $2; exit }' "$1/go.mod")"
    if [[ -z "$pkg" ]]; then
        [[ -f "$1/main.go" ]] || die "$1 names no 'tool PACKAGE' in go.mod and has no main.go: nothing to build"
        pkg=.
    fi
    printf '%s\n' "$pkg"
}

stamp() { # stamp GO DIR
    {
        GOTOOLCHAIN=local "$1" env GOVERSION
        (cd "$2" && find . -type f | LC_ALL=C sort | xargs sha256sum)
    } | sha256sum | cut -c1-16
}

build() { # build NAME
    local name="$1" dir go pkg key out tmp
    dir="$(module_dir "$name")"
    go="$(find_go)"
    pkg="$(build_package "$dir")"
    key="$(stamp "$go" "$dir")"
    out="${CACHE}/${name}/${key}"
    if [[ -x "${out}/${name}" ]]; then
        printf '%s\n' "${out}/${name}"
        return
    fi
    mkdir -p "${CACHE}/${name}"
    exec 9>"${CACHE}/${name}/.lock"
    flock 9
    if [[ ! -x "${out}/${name}" ]]; then
        rm -rf "${CACHE}/${name}"/*.tmp.* # left by an interrupted build; we hold the lock
        tmp="$(mktemp -d "${CACHE}/${name}/${key}.tmp.XXXXXX")"
        log "building ${name} from ${pkg} (first time: a few minutes)"
        local tags=""
        [[ -f "${dir}/build-tags" ]] && tags="$(tr -d '[:space:]' <"${dir}/build-tags")"
        if ! (cd "$dir" && go_env "$go" build -mod=readonly -trimpath -tags "$tags" -ldflags "-s -w" -o "${tmp}/${name}" "$pkg") >&2; then
            rm -rf "$tmp"
            die "building ${name} failed (see the go output above)"
        fi
        # Older builds of this tool are superseded by the new pin.
        find "${CACHE}/${name}" -mindepth 1 -maxdepth 1 -type d ! -name "${key}*" -exec rm -rf {} +
        mv "$tmp" "$out"
    fi
    printf '%s\n' "${out}/${name}"
}

tidy() { # tidy NAME
    local dir go
    dir="$(module_dir "$1")"
    go="$(find_go)"
    (cd "$dir" && env GOTOOLCHAIN=local GOWORK=off "$go" mod tidy) >&2
}

case "${1:-}" in
    tidy) [[ $# -eq 2 ]] || die "usage: scripts/gotool.sh tidy NAME"; tidy "$2" ;;
    "" | -h | --help) sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) [[ $# -eq 1 ]] || die "usage: scripts/gotool.sh NAME"; build "$1" ;;
esac
