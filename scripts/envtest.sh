#!/usr/bin/env bash
# A real kube-apiserver + etcd for end-to-end tests, without containers.
#
#   scripts/envtest.sh assets
#       Print the directory holding kube-apiserver, etcd and kubectl (only the
#       path goes to stdout). Honours KUBEBUILDER_ASSETS and
#       TEST_ASSET_KUBE_APISERVER / TEST_ASSET_ETCD / TEST_ASSET_KUBECTL;
#       otherwise builds the binaries from the Go module proxy with the local Go
#       toolchain (wrapper modules in scripts/envtest/{kube,etcd}) into
#       ${BINAUTHZ_ENVTEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/binauthz-operator/envtest}/<k8s-version>/bin
#       and reuses them when present.
#   scripts/envtest.sh start --dir DIR [--owner-pid PID] [--rm-dir]
#       Generate throwaway certificates, start etcd and kube-apiserver on free
#       loopback ports, wait for readiness, write DIR/kubeconfig and DIR/env.
#       Prints the kubeconfig path. With --owner-pid, a watchdog stops
#       everything when PID exits (and with --rm-dir also deletes DIR).
#   scripts/envtest.sh stop --dir DIR
#       Stop what `start` started (TERM, then KILL). Idempotent.
#   scripts/envtest.sh pin-kube VERSION
#       Regenerate scripts/envtest/kube/go.mod for k8s.io/kubernetes VERSION
#       (the staging replace list is derived from that version's go.mod) and
#       resolve go.sum.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SCRIPT_PATH="${SCRIPT_DIR}/$(basename "${BASH_SOURCE[0]}")"
KUBE_MOD_DIR="${SCRIPT_DIR}/envtest/kube"
ETCD_MOD_DIR="${SCRIPT_DIR}/envtest/etcd"

log() { printf 'envtest: %s\n' "$*" >&2; }
die() { printf 'envtest: error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------
# Versions: the wrapper go.mod files are the single source of truth.

mod_version() { # mod_version GOMOD MODULE
    awk -v m="$2" '($1 == "require" && $2 == m) { print $3; exit } ($1 == m) { print $2; exit }' "$1"
}

kube_version() {
    local v
    v="$(mod_version "${KUBE_MOD_DIR}/go.mod" k8s.io/kubernetes)"
    [[ -n "$v" ]] || die "cannot read the k8s.io/kubernetes version from ${KUBE_MOD_DIR}/go.mod"
    printf '%s\n' "$v"
}

etcd_version() {
    local v
    v="$(mod_version "${ETCD_MOD_DIR}/go.mod" go.etcd.io/etcd/server/v3)"
    [[ -n "$v" ]] || die "cannot read the etcd version from ${ETCD_MOD_DIR}/go.mod"
    printf '%s\n' "$v"
}

# ---------------------------------------------------------------------------
# Building

find_go() {
    if [[ -n "${GO:-}" ]]; then printf '%s\n' "$GO"; return; fi
    if command -v go >/dev/null 2>&1; then command -v go; return; fi
    if [[ -x /usr/local/go/bin/go ]]; then printf '%s\n' /usr/local/go/bin/go; return; fi
    die "no Go toolchain found (install Go >= 1.26, set GO=/path/to/go, or set KUBEBUILDER_ASSETS to a directory with kube-apiserver, etcd and kubectl)"
}

# Never let the go command fetch another toolchain: offline, the local one must do.
go_env() {
    env GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false" "$@"
}

check_go_version() { # check_go_version GO
    local gv major minor
    gv="$(GOTOOLCHAIN=local "$1" env GOVERSION)"
    gv="${gv#go}"
    major="${gv%%.*}"
    minor="${gv#*.}"
    minor="${minor%%.*}"
    if ! [[ "$major" =~ ^[0-9]+$ && "$minor" =~ ^[0-9]+$ ]] || ((major < 1 || (major == 1 && minor < 26))); then
        die "Go ${gv} is too old: etcd $(etcd_version) needs Go >= 1.26 (or set KUBEBUILDER_ASSETS)"
    fi
}

# A fingerprint of everything that determines the binaries; a cache whose
# stamp differs is rebuilt.
build_stamp() { # build_stamp GO
    {
        printf 'stamp-format 1\n'
        GOTOOLCHAIN=local "$1" env GOVERSION
        cat "${KUBE_MOD_DIR}/go.mod" "${KUBE_MOD_DIR}/go.sum" "${ETCD_MOD_DIR}/go.mod" "${ETCD_MOD_DIR}/go.sum"
        printf '%s\n' "$(kube_ldflags)"
    } | sha256sum | cut -d' ' -f1
}

kube_ldflags() {
    local v major minor flags="-s -w" pkg
    v="$(kube_version)"
    major="${v#v}"; major="${major%%.*}"
    minor="${v#v*.}"; minor="${minor%%.*}"
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        flags+=" -X ${pkg}.gitVersion=${v} -X ${pkg}.gitMajor=${major} -X ${pkg}.gitMinor=${minor}"
        flags+=" -X ${pkg}.gitTreeState=clean"
    done
    printf '%s\n' "$flags"
}

cache_root() {
    printf '%s\n' "${BINAUTHZ_ENVTEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/binauthz-operator/envtest}"
}

have_all() { # have_all DIR
    [[ -x "$1/kube-apiserver" && -x "$1/etcd" && -x "$1/kubectl" ]]
}

build_into() { # build_into GO OUTDIR
    local go="$1" out="$2" t0 t1
    t0=$(date +%s)
    log "building kube-apiserver and kubectl $(kube_version) (first time: several minutes, ~1 GB of modules)"
    (cd "$KUBE_MOD_DIR" && go_env "$go" build -trimpath -tags selinux,notest,grpcnotrace \
        -ldflags "$(kube_ldflags)" -o "$out/" \
        k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl) >&2 || return 1
    log "building etcd $(etcd_version)"
    (cd "$ETCD_MOD_DIR" && go_env "$go" build -trimpath -ldflags "-s -w" -o "$out/etcd" \
        go.etcd.io/etcd/server/v3) >&2 || return 1
    t1=$(date +%s)
    log "built in $((t1 - t0)) s"
}

# Prints the directory with the built binaries, building them if needed.
built_assets() {
    local go root dir bin stamp tmp
    go="$(find_go)"
    check_go_version "$go"
    root="$(cache_root)"
    dir="${root}/$(kube_version)"
    bin="${dir}/bin"
    mkdir -p "$dir"
    stamp="$(build_stamp "$go")"
    if have_all "$bin" && [[ "$(cat "${dir}/stamp" 2>/dev/null || true)" == "$stamp" ]]; then
        printf '%s\n' "$bin"
        return
    fi
    # One builder at a time; a second caller waits and then reuses the result.
    exec 9>"${dir}/.lock"
    if ! flock -n 9; then
        log "another process is building the binaries; waiting for it"
        flock 9
    fi
    if have_all "$bin" && [[ "$(cat "${dir}/stamp" 2>/dev/null || true)" == "$stamp" ]]; then
        exec 9>&-
        printf '%s\n' "$bin"
        return
    fi
    rm -rf "${dir}"/bin.tmp.* # left by an interrupted build; we hold the lock
    tmp="$(mktemp -d "${dir}/bin.tmp.XXXXXX")"
    if ! build_into "$go" "$tmp"; then
        rm -rf "$tmp"
        die "building the binaries failed (see the go output above)"
    fi
    rm -rf "$bin" "${dir}/stamp"
    chmod 755 "$tmp"
    mv "$tmp" "$bin"
    printf '%s\n' "$stamp" >"${dir}/stamp"
    exec 9>&-
    printf '%s\n' "$bin"
}

# Resolve one binary: TEST_ASSET_* > KUBEBUILDER_ASSETS > built.
resolve_one() { # resolve_one NAME OVERRIDE_VAR
    local name="$1" var="$2" val
    val="${!var:-}"
    if [[ -n "$val" ]]; then
        [[ -x "$val" ]] || die "${var}=${val} is not an executable file"
        printf '%s\n' "$val"
        return
    fi
    if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
        if [[ -x "${KUBEBUILDER_ASSETS}/${name}" ]]; then
            printf '%s\n' "${KUBEBUILDER_ASSETS}/${name}"
            return
        fi
        die "KUBEBUILDER_ASSETS=${KUBEBUILDER_ASSETS} has no executable ${name} (set ${var}, or unset KUBEBUILDER_ASSETS to build the binaries)"
    fi
    printf '\n' # to be built
}

cmd_assets() {
    local api etcd kubectl built dir
    api="$(resolve_one kube-apiserver TEST_ASSET_KUBE_APISERVER)"
    etcd="$(resolve_one etcd TEST_ASSET_ETCD)"
    kubectl="$(resolve_one kubectl TEST_ASSET_KUBECTL)"
    if [[ -z "$api" || -z "$etcd" || -z "$kubectl" ]]; then
        built="$(built_assets)"
        [[ -n "$api" ]] || api="${built}/kube-apiserver"
        [[ -n "$etcd" ]] || etcd="${built}/etcd"
        [[ -n "$kubectl" ]] || kubectl="${built}/kubectl"
    fi
    # All three in one directory: print it as it is.
    if [[ "$(dirname "$api")" == "$(dirname "$etcd")" && "$(dirname "$api")" == "$(dirname "$kubectl")" \
        && "$(basename "$api")" == kube-apiserver && "$(basename "$etcd")" == etcd && "$(basename "$kubectl")" == kubectl ]]; then
        printf '%s\n' "$(cd "$(dirname "$api")" && pwd)"
        return
    fi
    # Otherwise assemble a directory of symlinks so callers still get one path.
    dir="$(cache_root)/assembled/$(printf '%s\n%s\n%s\n' "$api" "$etcd" "$kubectl" | sha256sum | cut -c1-16)"
    mkdir -p "$dir"
    ln -sfn "$(readlink -f "$api")" "${dir}/kube-apiserver"
    ln -sfn "$(readlink -f "$etcd")" "${dir}/etcd"
    ln -sfn "$(readlink -f "$kubectl")" "${dir}/kubectl"
    printf '%s\n' "$dir"
}

cmd_pin_kube() {
    local version="${1:-}" go info gomod minor
    [[ "$version" =~ ^v1\.[0-9]+\.[0-9]+$ ]] || die "usage: $0 pin-kube v1.Y.Z"
    go="$(find_go)"
    info="$(GOTOOLCHAIN=local "$go" mod download -json "k8s.io/kubernetes@${version}")"
    gomod="$(printf '%s\n' "$info" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
    [[ -f "$gomod" ]] || die "could not download the go.mod of k8s.io/kubernetes@${version}"
    minor="${version#v1.}"
    {
        printf '// Wrapper module: builds kube-apiserver and kubectl from k8s.io/kubernetes.\n'
        printf '// Generated by scripts/envtest.sh pin-kube; the replace list mirrors the\n'
        printf '// staging modules k8s.io/kubernetes replaces, pinned to their published releases.\n'
        printf 'module binauthz-operator/envtest/kube\n\n'
        printf 'go %s\n\n' "$(awk '$1 == "go" { print $2; exit }' "$gomod")"
        grep -E '^godebug ' "$gomod" || true
        printf '\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$version"
        grep -E '^[[:space:]]*k8s\.io/[^[:space:]]+ => \./staging/src/' "$gomod" |
            awk -v v="v0.${minor}" '{ printf "\t%s => %s %s\n", $1, $1, v }'
        printf ')\n'
    } >"${KUBE_MOD_DIR}/go.mod"
    rm -f "${KUBE_MOD_DIR}/go.sum"
    : >"${KUBE_MOD_DIR}/go.sum"
    log "resolving go.sum (downloads the modules)"
    (cd "$KUBE_MOD_DIR" && GOTOOLCHAIN=local GOWORK=off GOFLAGS="-mod=mod -buildvcs=false" "$go" list -deps -tags selinux,notest,grpcnotrace \
        k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl >/dev/null)
    log "wrote ${KUBE_MOD_DIR}/go.mod and go.sum for ${version}"
}

# ---------------------------------------------------------------------------
# Running a control plane

pid_alive() { # pid_alive PIDFILE
    local pid
    [[ -f "$1" ]] || return 1
    pid="$(cat "$1" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null
}

stop_pidfile() { # stop_pidfile PIDFILE
    local f="$1" pid i
    [[ -f "$f" ]] || return 0
    pid="$(cat "$f" 2>/dev/null || true)"
    if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "$(basename "$f" .pid) (pid ${pid}) ignored TERM; killing"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$f"
}

stop_dir() { # stop_dir DIR
    local dir="$1"
    # The watchdog first, so it does not race with us (unless we are it).
    if [[ "${BINAUTHZ_ENVTEST_WATCHDOG:-}" != 1 ]]; then
        stop_pidfile "${dir}/watchdog.pid"
    else
        rm -f "${dir}/watchdog.pid"
    fi
    stop_pidfile "${dir}/kube-apiserver.pid"
    stop_pidfile "${dir}/etcd.pid"
    rm -rf "${dir}/etcd-data"
}

cmd_stop() {
    local dir=""
    while (($#)); do
        case "$1" in
            --dir) dir="${2:-}"; shift 2 || die "--dir needs a value" ;;
            *) die "stop: unknown argument $1" ;;
        esac
    done
    [[ -n "$dir" ]] || die "usage: $0 stop --dir DIR"
    [[ -d "$dir" ]] || return 0
    stop_dir "$dir"
}

port_in_use() { # port_in_use PORT
    ss -Hltn "sport = :$1" 2>/dev/null | grep -q . && return 0
    # Fall back to a connection attempt if ss is missing or said nothing.
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# A random loopback port below the usual ephemeral range, not listening now.
# Between this check and the bind another process may take it: start retries.
free_port() {
    local p i
    for ((i = 0; i < 200; i++)); do
        p=$((20000 + (RANDOM * 32768 + RANDOM) % 12000))
        if ! port_in_use "$p"; then
            printf '%s\n' "$p"
            return
        fi
    done
    die "no free port found"
}

gen_certs() { # gen_certs PKI_DIR
    local pki="$1"
    mkdir -p "$pki"
    (
        cd "$pki"
        umask 077
        openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 30 \
            -subj "/CN=binauthz-envtest-ca" \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
            -addext "subjectKeyIdentifier=hash" 2>/dev/null
        cat >serving.ext <<'EOF'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
EOF
        cat >client.ext <<'EOF'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
EOF
        openssl req -new -newkey rsa:2048 -nodes -keyout serving.key -out serving.csr \
            -subj "/CN=localhost" 2>/dev/null
        openssl x509 -req -in serving.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
            -days 30 -extfile serving.ext -out serving.crt 2>/dev/null
        openssl req -new -newkey rsa:2048 -nodes -keyout admin.key -out admin.csr \
            -subj "/O=system:masters/CN=admin" 2>/dev/null
        openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
            -days 30 -extfile client.ext -out admin.crt 2>/dev/null
        openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key 2>/dev/null
        openssl pkey -in sa.key -pubout -out sa.pub 2>/dev/null
        rm -f serving.csr admin.csr serving.ext client.ext ca.srl
    ) || die "generating certificates with openssl failed"
}

write_kubeconfig() { # write_kubeconfig DIR URL
    local dir="$1" url="$2" pki="$1/pki"
    umask 077
    cat >"${dir}/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: envtest
  cluster:
    server: ${url}
    certificate-authority-data: $(base64 -w0 <"${pki}/ca.crt")
contexts:
- name: envtest
  context:
    cluster: envtest
    user: admin
    namespace: default
current-context: envtest
users:
- name: admin
  user:
    client-certificate-data: $(base64 -w0 <"${pki}/admin.crt")
    client-key-data: $(base64 -w0 <"${pki}/admin.key")
EOF
}

# Does PID own the socket listening on PORT? (True when ss cannot tell.) A
# health check could otherwise be answered by a stranger that won the race.
port_owned_by() { # port_owned_by PID PORT
    local out
    out="$(ss -Hltnp "sport = :$2" 2>/dev/null || true)"
    [[ "$out" == *"pid="* ]] || return 0
    [[ "$out" == *"pid=$1,"* ]]
}

# Why a started process is gone, for the retry decision.
port_clash_in() { grep -qiE 'address already in use|bind: address' "$1" 2>/dev/null; }

# One attempt; returns 0 when both are ready, 2 on a port clash, 1 otherwise.
start_once() { # start_once DIR ASSETS DEADLINE
    local dir="$1" assets="$2" deadline="$3" pki="$1/pki"
    local etcd_port peer_port api_port url
    # Called in an `||` context, where errexit is off: check explicitly.
    etcd_port="$(free_port)" || return 1
    peer_port="$(free_port)" || return 1
    while [[ "$peer_port" == "$etcd_port" ]]; do peer_port="$(free_port)" || return 1; done
    rm -rf "${dir}/etcd-data"
    mkdir -p "${dir}/etcd-data" || return 1
    log "starting etcd on 127.0.0.1:${etcd_port}"
    setsid "${assets}/etcd" \
        --name default \
        --data-dir "${dir}/etcd-data" \
        --listen-client-urls "http://127.0.0.1:${etcd_port}" \
        --advertise-client-urls "http://127.0.0.1:${etcd_port}" \
        --listen-peer-urls "http://127.0.0.1:${peer_port}" \
        --initial-advertise-peer-urls "http://127.0.0.1:${peer_port}" \
        --initial-cluster "default=http://127.0.0.1:${peer_port}" \
        --unsafe-no-fsync=true \
        >"${dir}/etcd.log" 2>&1 </dev/null &
    printf '%s\n' "$!" >"${dir}/etcd.pid"
    until curl -fsS --max-time 2 "http://127.0.0.1:${etcd_port}/health" >/dev/null 2>&1; do
        if ! pid_alive "${dir}/etcd.pid"; then
            port_clash_in "${dir}/etcd.log" && return 2
            log "etcd exited; last lines of ${dir}/etcd.log:"
            tail -n 20 "${dir}/etcd.log" >&2 || true
            return 1
        fi
        if (($(date +%s) >= deadline)); then
            log "etcd not healthy in time; last lines of ${dir}/etcd.log:"
            tail -n 20 "${dir}/etcd.log" >&2 || true
            return 1
        fi
        sleep 0.2
    done
    if ! port_owned_by "$(cat "${dir}/etcd.pid")" "$etcd_port"; then
        log "127.0.0.1:${etcd_port} answered, but not from our etcd"
        return 2
    fi

    api_port="$(free_port)" || return 1
    while [[ "$api_port" == "$etcd_port" || "$api_port" == "$peer_port" ]]; do api_port="$(free_port)" || return 1; done
    url="https://127.0.0.1:${api_port}"
    mkdir -p "${dir}/apiserver-certs" || return 1
    log "starting kube-apiserver on ${url}"
    setsid "${assets}/kube-apiserver" \
        --etcd-servers="http://127.0.0.1:${etcd_port}" \
        --secure-port="${api_port}" \
        --bind-address=127.0.0.1 \
        --advertise-address=127.0.0.1 \
        --cert-dir="${dir}/apiserver-certs" \
        --tls-cert-file="${pki}/serving.crt" \
        --tls-private-key-file="${pki}/serving.key" \
        --client-ca-file="${pki}/ca.crt" \
        --authorization-mode=RBAC \
        --allow-privileged=true \
        --disable-admission-plugins=ServiceAccount \
        --service-cluster-ip-range=10.0.0.0/24 \
        --service-account-issuer="${url}/" \
        --service-account-key-file="${pki}/sa.pub" \
        --service-account-signing-key-file="${pki}/sa.key" \
        >"${dir}/kube-apiserver.log" 2>&1 </dev/null &
    printf '%s\n' "$!" >"${dir}/kube-apiserver.pid"
    until curl -fsS --max-time 5 --cacert "${pki}/ca.crt" --cert "${pki}/admin.crt" --key "${pki}/admin.key" \
        "${url}/readyz" >/dev/null 2>&1; do
        if ! pid_alive "${dir}/kube-apiserver.pid"; then
            port_clash_in "${dir}/kube-apiserver.log" && return 2
            log "kube-apiserver exited; last lines of ${dir}/kube-apiserver.log:"
            tail -n 20 "${dir}/kube-apiserver.log" >&2 || true
            return 1
        fi
        if ! pid_alive "${dir}/etcd.pid"; then
            log "etcd died while kube-apiserver was starting; last lines of ${dir}/etcd.log:"
            tail -n 20 "${dir}/etcd.log" >&2 || true
            return 1
        fi
        if (($(date +%s) >= deadline)); then
            log "kube-apiserver not ready in time; last lines of ${dir}/kube-apiserver.log:"
            tail -n 20 "${dir}/kube-apiserver.log" >&2 || true
            return 1
        fi
        sleep 0.3
    done

    write_kubeconfig "$dir" "$url" || return 1
    {
        printf 'KUBECONFIG=%s\n' "${dir}/kubeconfig"
        printf 'APISERVER_URL=%s\n' "$url"
        printf 'ETCD_URL=%s\n' "http://127.0.0.1:${etcd_port}"
        printf 'KUBEBUILDER_ASSETS=%s\n' "$assets"
        printf 'KUBECTL=%s\n' "${assets}/kubectl"
    } >"${dir}/env" || return 1
    return 0
}

start_watchdog() { # start_watchdog DIR OWNER_PID RM_DIR
    local dir="$1" owner="$2" rm_dir="$3" starttime=""
    # The owner's start time guards against its PID being reused.
    if [[ -r "/proc/${owner}/stat" ]]; then
        starttime="$(sed 's/^.*) //' "/proc/${owner}/stat" | cut -d' ' -f20)"
    fi
    # shellcheck disable=SC2016 # expanded by the inner bash
    BINAUTHZ_ENVTEST_WATCHDOG=1 setsid bash -c '
        owner="$1" starttime="$2" script="$3" dir="$4" rm_dir="$5"
        alive() {
            kill -0 "$owner" 2>/dev/null || return 1
            [[ -z "$starttime" ]] && return 0
            local stat
            stat="$(sed "s/^.*) //" "/proc/$owner/stat" 2>/dev/null)" || return 1
            # Fields after the command: state is 1st, start time 20th; a zombie is gone.
            [[ "${stat%% *}" != Z ]] || return 1
            [[ "$(cut -d" " -f20 <<<"$stat")" == "$starttime" ]]
        }
        while alive; do sleep 1; done
        echo "owner $owner is gone; stopping the control plane in $dir"
        "$script" stop --dir "$dir"
        if [[ "$rm_dir" == 1 ]]; then rm -rf "$dir"; fi
    ' envtest-watchdog "$owner" "$starttime" "$SCRIPT_PATH" "$dir" "$rm_dir" \
        >>"${dir}/watchdog.log" 2>&1 </dev/null &
    printf '%s\n' "$!" >"${dir}/watchdog.pid"
}

cmd_start() {
    local dir="" owner="" rm_dir=0 assets attempt rc t0 deadline
    while (($#)); do
        case "$1" in
            --dir) dir="${2:-}"; shift 2 || die "--dir needs a value" ;;
            --owner-pid) owner="${2:-}"; shift 2 || die "--owner-pid needs a value" ;;
            --rm-dir) rm_dir=1; shift ;;
            *) die "start: unknown argument $1" ;;
        esac
    done
    [[ -n "$dir" ]] || die "usage: $0 start --dir DIR [--owner-pid PID] [--rm-dir]"
    if [[ -n "$owner" ]]; then
        [[ "$owner" =~ ^[0-9]+$ ]] || die "--owner-pid must be a number"
        kill -0 "$owner" 2>/dev/null || die "owner process ${owner} is not running"
    fi
    for tool in openssl curl setsid base64 sha256sum; do
        command -v "$tool" >/dev/null 2>&1 || die "${tool} is required"
    done
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    if pid_alive "${dir}/kube-apiserver.pid" || pid_alive "${dir}/etcd.pid"; then
        die "a control plane is already running in ${dir}; run: $0 stop --dir ${dir}"
    fi
    assets="$(cmd_assets)"
    t0=$(date +%s)
    gen_certs "${dir}/pki"
    # Whatever happens below, never leave half a control plane behind.
    trap 'stop_dir "$dir"' EXIT
    trap 'exit 130' INT TERM
    deadline=$((t0 + ${BINAUTHZ_ENVTEST_START_TIMEOUT:-90}))
    for attempt in 1 2 3 4; do
        rc=0
        start_once "$dir" "$assets" "$deadline" || rc=$?
        if ((rc == 0)); then break; fi
        stop_dir "$dir"
        if ((rc == 2 && attempt < 4)) && (($(date +%s) < deadline)); then
            log "port taken between choice and bind; retrying (attempt $((attempt + 1)))"
            continue
        fi
        die "the control plane did not start (logs in ${dir})"
    done
    if [[ -n "$owner" ]]; then
        start_watchdog "$dir" "$owner" "$rm_dir"
    fi
    trap - EXIT INT TERM
    log "ready in $(($(date +%s) - t0)) s: $(sed -n 's/^APISERVER_URL=//p' "${dir}/env")"
    printf '%s\n' "${dir}/kubeconfig"
}

usage() {
    sed -n '2,/^set -euo/p' "$SCRIPT_PATH" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
    exit 2
}

main() {
    local sub="${1:-}"
    (($#)) && shift
    case "$sub" in
        assets) cmd_assets "$@" ;;
        start) cmd_start "$@" ;;
        stop) cmd_stop "$@" ;;
        pin-kube) cmd_pin_kube "$@" ;;
        -h | --help | help | "") usage ;;
        *) die "unknown subcommand ${sub} (assets, start, stop, pin-kube)" ;;
    esac
}

main "$@"; exit $?  # one line: bash must not read on if this file changes meanwhile
