#!/usr/bin/env bash
# A local playground (`make dev`): a real kube-apiserver + etcd (scripts/envtest.sh),
# Google's Pub/Sub emulator (scripts/pubsub-emulator.sh) with a topic and a subscription,
# the Cloud Run emulator seeded with examples/cloudrun-seed.yaml publishing an audit log
# entry of every write to that topic, the controller (consuming the subscription with
# --drift-events when the binary has that flag), the CRD and examples/bindings/. Prints the
# bindings as they become Ready, injects a drift and shows how fast it is fixed, then
# leaves everything running and prints how to use it. Ctrl-C stops it all.
#
#   scripts/dev.sh
#
# Environment:
#   BINAUTHZ_BIN        the operator binary to run (default: build target/debug/binauthz-operator)
#   BINAUTHZ_DEV_DIR    where the control plane, logs and kubeconfig go (default: target/dev)
#   BINAUTHZ_DEV_EMULATOR_ADDR  the emulator's address (default: 127.0.0.1:8787, or a free
#                       port when that one is taken)
#   BINAUTHZ_DEV_METRICS_ADDR   the controller's /metrics address (default: 127.0.0.1:8080,
#                       or a free port when that one is taken)
#   BINAUTHZ_DEV_PUBSUB=0       no Pub/Sub emulator, no audit log, no drift events (for a
#                       machine without Java); the periodic re-check still fixes drift
#   KUBEBUILDER_ASSETS  use these kube-apiserver, etcd and kubectl instead of building them
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'dev: %s\n' "$*" >&2; }
die() { printf 'dev: error: %s\n' "$*" >&2; exit 1; }

dir="${BINAUTHZ_DEV_DIR:-target/dev}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
cp_dir="$dir/control-plane"
pubsub_dir="$dir/pubsub"
# The topic a Logging sink would publish Cloud Run's audit log to, and the operator's
# subscription (Pub/Sub emulator names need 3+ characters).
audit_project=acme-ops
audit_topic="projects/${audit_project}/topics/cloudrun-audit"
audit_subscription="projects/${audit_project}/subscriptions/binauthz-operator"
pubsub_host=""
events=0
seed=examples/cloudrun-seed.yaml
emulator_pid=""
controller_pid=""

if [[ -n "${BINAUTHZ_BIN:-}" ]]; then
    bin="$BINAUTHZ_BIN"
else
    say "building the operator (cargo build)"
    cargo build --locked -q
    bin=target/debug/binauthz-operator
fi
[[ -x "$bin" ]] || die "$bin is not an executable (set BINAUTHZ_BIN or run cargo build)"
[[ -d examples/bindings ]] || die "examples/bindings/ is missing"

# shellcheck disable=SC2317 # called from the EXIT trap
stop_pid() { # stop_pid PID NAME
    local pid="$1" i
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "$2 (pid $pid) ignored TERM; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    { wait "$pid"; } 2>/dev/null || true
}

# shellcheck disable=SC2317 # the EXIT trap
cleanup() {
    trap - EXIT INT TERM
    say "stopping the controller, the emulator and the control plane"
    stop_pid "$controller_pid" controller
    stop_pid "$emulator_pid" emulator
    if [[ -n "$pubsub_host" ]]; then
        scripts/pubsub-emulator.sh stop --dir "$pubsub_dir" || true
    fi
    scripts/envtest.sh stop --dir "$cp_dir" || true
    say "stopped (logs kept in $dir)"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

port_free() { # port_free HOST:PORT
    ! (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null
}

free_addr() { # free_addr PREFERRED
    local p i
    if port_free "$1"; then
        printf '%s\n' "$1"
        return
    fi
    for ((i = 0; i < 100; i++)); do
        p=$((20000 + (RANDOM * 32768 + RANDOM) % 12000))
        if port_free "127.0.0.1:$p"; then
            printf '127.0.0.1:%s\n' "$p"
            return
        fi
    done
    die "no free port found"
}

# --- 1. the control plane ----------------------------------------------------------------
say "starting kube-apiserver and etcd (scripts/envtest.sh; the first run builds them)"
scripts/envtest.sh stop --dir "$cp_dir" # leftovers of a run that was killed
# The watchdog stops the control plane even if this script is killed with SIGKILL.
kubeconfig="$(scripts/envtest.sh start --dir "$cp_dir" --owner-pid $$)"
kubectl="$(sed -n 's/^KUBECTL=//p' "$cp_dir/env")"
[[ -x "$kubectl" ]] || die "no kubectl in $cp_dir/env"
export KUBECONFIG="$kubeconfig"

# --- 2. Pub/Sub and the Cloud Run emulator -----------------------------------------------
emulator_args=()
if [[ "${BINAUTHZ_DEV_PUBSUB:-1}" != 0 ]]; then
    say "starting Google's Pub/Sub emulator (scripts/pubsub-emulator.sh)"
    scripts/pubsub-emulator.sh stop --dir "$pubsub_dir" # leftovers of a run that was killed
    pubsub_host="$(scripts/pubsub-emulator.sh start --dir "$pubsub_dir" --owner-pid $$)"
    for name in "$audit_topic" "$audit_subscription"; do
        body='{}'
        [[ "$name" == "$audit_subscription" ]] && body="{\"topic\":\"$audit_topic\"}"
        curl -fsS -X PUT -H 'content-type: application/json' -d "$body" \
            "http://$pubsub_host/v1/$name" >/dev/null || die "cannot create $name on the Pub/Sub emulator"
    done
    say "Pub/Sub emulator at $pubsub_host: $audit_topic -> $audit_subscription"
    emulator_args+=(--audit-log-topic "$audit_topic" --pubsub-emulator-host "$pubsub_host")
fi
emulator_addr="${BINAUTHZ_DEV_EMULATOR_ADDR:-$(free_addr 127.0.0.1:8787)}"
: >"$dir/emulator.out" # the job's own redirection happens later, in the child
"$bin" emulator --listen "$emulator_addr" --seed "$seed" "${emulator_args[@]}" \
    >"$dir/emulator.out" 2>"$dir/emulator.log" &
emulator_pid=$!
for ((i = 0; i < 100; i++)); do
    emulator_url="$(sed -n '1s/^listening on //p' "$dir/emulator.out")"
    [[ -n "$emulator_url" ]] && break
    kill -0 "$emulator_pid" 2>/dev/null || die "the emulator exited: $(tail -n 5 "$dir/emulator.log")"
    sleep 0.1
done
[[ -n "$emulator_url" ]] || die "the emulator printed no address (see $dir/emulator.log)"
say "Cloud Run emulator at $emulator_url (seed $seed)"

# --- 3. the CRD --------------------------------------------------------------------------
"$kubectl" apply --server-side -f crds/ >/dev/null
# (Polled: `kubectl wait` fails instead of waiting while the new CRD has no conditions.)
for ((i = 0; ; i++)); do
    established="$("$kubectl" get crd binauthzbindings.binauthz.dev -o \
        'go-template={{range .status.conditions}}{{if eq .type "Established"}}{{.status}}{{end}}{{end}}' \
        2>/dev/null || true)"
    [[ "$established" == True ]] && break
    ((i < 300)) || die "the CRD is not Established after 30 s"
    sleep 0.1
done

# --- 4. the controller -------------------------------------------------------------------
metrics_addr="${BINAUTHZ_DEV_METRICS_ADDR:-$(free_addr 127.0.0.1:8080)}"
controller_args=()
if [[ -n "$pubsub_host" ]]; then
    if "$bin" controller --help 2>/dev/null | grep -q -- '--drift-events'; then
        controller_args+=(--drift-events "$audit_subscription")
        events=1
    else
        say "this controller has no --drift-events flag: drift is fixed by the periodic re-check only"
    fi
fi
if [[ -n "$pubsub_host" ]]; then
    export PUBSUB_EMULATOR_HOST="$pubsub_host"
fi
# A short inventory TTL: a binding edited right after a drift sees the drift at once.
NO_COLOR=1 "$bin" controller \
    --cloud-run-endpoint "$emulator_url" --metrics-addr "$metrics_addr" \
    --inventory-ttl 2s --shutdown-grace 5s "${controller_args[@]}" >"$dir/controller.log" 2>&1 &
controller_pid=$!
for ((i = 0; ; i++)); do
    curl -fsS "http://$metrics_addr/healthz" >/dev/null 2>&1 && break
    kill -0 "$controller_pid" 2>/dev/null || die "the controller exited: $(tail -n 5 "$dir/controller.log")"
    ((i < 300)) || die "the controller did not answer /healthz in 30 s (see $dir/controller.log)"
    sleep 0.1
done
if ((events)); then
    say "controller running (metrics on http://$metrics_addr/metrics; drift events from $audit_subscription)"
else
    say "controller running (metrics on http://$metrics_addr/metrics)"
fi

# --- 5. the example bindings -------------------------------------------------------------
grep -h '^  namespace:' examples/bindings/*.yaml | awk '{print $2}' | sort -u |
    while read -r ns; do
        "$kubectl" create namespace "$ns" --dry-run=client -o yaml | "$kubectl" apply -f - >/dev/null
    done
"$kubectl" apply -f examples/bindings/

# --- 6. watch them become Ready ----------------------------------------------------------
# Done when every binding's status describes its current generation with a Ready
# condition and no remediation in flight (Reconciling not True).
pending() {
    "$kubectl" get bab -A --no-headers -o 'custom-columns=G:.metadata.generation,O:.status.observedGeneration,R:.status.conditions[?(@.type=="Ready")].status,C:.status.conditions[?(@.type=="Reconciling")].status' |
        awk '$1 != $2 || $3 == "<none>" || $4 == "True" { n++ } END { print n + 0 }'
}
last=""
for ((i = 0; i < 120; i++)); do
    left="$(pending)" # before the table, so that the last table shows the settled state
    table="$("$kubectl" get bab -A -o wide)"
    if [[ "$table" != "$last" ]]; then
        printf '\n%s\n' "$table"
        last="$table"
    fi
    [[ "$left" == 0 ]] && break
    kill -0 "$controller_pid" 2>/dev/null || die "the controller exited: $(tail -n 5 "$dir/controller.log")"
    sleep 1
done
[[ "$(pending)" == 0 ]] || say "some bindings have no Ready condition yet; see $dir/controller.log"

drift_name=projects/acme-prod/locations/us-central1/services/checkout
# Is checkout's Binary Authorization set? (The emulator answers pretty JSON; a cleared
# field is absent.)
has_binauthz() {
    local body
    body="$(curl -fsS -H 'Authorization: Bearer dev' "$emulator_url/v2/$drift_name" 2>/dev/null)" || return 1
    [[ "$body" == *'"binaryAuthorization"'* ]]
}
# --- 7. a drift, fixed by the event it causes --------------------------------------------
if ((events)); then
    say "injecting a drift: someone clears Binary Authorization on checkout with gcloud"
    curl -fsS -XPOST "$emulator_url/_emulator/drift" -H 'content-type: application/json' \
        -d "{\"name\":\"$drift_name\",\"binaryAuthorization\":null,\"by\":\"mallory@example.com\"}" >/dev/null
    t0=$(date +%s%N)
    fixed=""
    for ((i = 0; i < 300; i++)); do
        if has_binauthz; then
            fixed=$((($(date +%s%N) - t0) / 1000000))
            break
        fi
        sleep 0.1
    done
    if [[ -n "$fixed" ]]; then
        say "drift on checkout fixed in ${fixed} ms (audit log entry -> $audit_subscription -> one GET, one PATCH)"
    else
        say "drift on checkout not fixed within 30 s; see $dir/controller.log (the periodic re-check will fix it)"
    fi
fi

if ((events)); then
    drift_note="# ... the operator reads the audit log entry from $audit_subscription and puts it
  # back within seconds; watch it come back:
  until curl -s -H 'Authorization: Bearer x' $emulator_url/v2/$drift_name | grep -q binaryAuthorization; do sleep 0.2; done; echo fixed"
elif [[ -n "$pubsub_host" ]]; then
    drift_note="# ... the operator puts it back at prod-critical's next pass (interval 5m), or at once
  # when the binding changes (a spec change triggers a pass):
  kubectl patch bab prod-critical -n platform --type merge -p '{\"spec\":{\"interval\":\"1m\"}}'
  # The audit log entry the drift made (what an event-driven operator would consume):
  curl -s -XPOST http://$pubsub_host/v1/$audit_subscription:pull -H 'content-type: application/json' -d '{\"maxMessages\":5}'"
else
    drift_note="# ... the operator puts it back at prod-critical's next pass (interval 5m), or at once
  # when the binding changes (a spec change triggers a pass):
  kubectl patch bab prod-critical -n platform --type merge -p '{\"spec\":{\"interval\":\"1m\"}}'"
fi
pubsub_note=""
if [[ -n "$pubsub_host" ]]; then
    pubsub_note="
  Pub/Sub emulator:   PUBSUB_EMULATOR_HOST=$pubsub_host ($audit_topic -> $audit_subscription)"
fi

cat <<EOF

The playground is running. In another terminal:

  export KUBECONFIG=$kubeconfig
  alias kubectl=$kubectl   # the kubectl matching the API server

  kubectl get bab -A -o wide
  kubectl describe bab prod-critical -n platform
  kubectl get events.events.k8s.io -n platform

  # Someone turns Binary Authorization off on checkout (Cloud Run emulator admin API;
  # "apiVersion":"v2" logs it as a v2 UpdateService call instead of gcloud's v1) ...
  curl -s -XPOST $emulator_url/_emulator/drift -H 'content-type: application/json' \\
    -d '{"name":"$drift_name","binaryAuthorization":null}'
  $drift_note
  curl -s $emulator_url/_emulator/audit        # every change, by whom
  curl -s $emulator_url/_emulator/auditlog     # audit log entries published to Pub/Sub
  curl -s $emulator_url/_emulator/counters     # calls by method

  # Edit a binding (e.g. mode: Audit, or another policy) and watch its status:
  kubectl edit bab staging -n platform
  kubectl get bab -A -o wide -w

  Cloud Run emulator: $emulator_url (docs/emulator.md)$pubsub_note
  Metrics:            http://$metrics_addr/metrics
  Logs:               $dir/controller.log, $dir/emulator.log, $cp_dir/kube-apiserver.log

Ctrl-C stops everything.
EOF
say "ready"

# --- 8. run until Ctrl-C (or until a process dies) ---------------------------------------
set +e
wait -n "$controller_pid" "$emulator_pid"
status=$?
set -e
if ! kill -0 "$controller_pid" 2>/dev/null; then
    say "the controller exited ($status); last lines of $dir/controller.log:"
    tail -n 20 "$dir/controller.log" >&2
elif ! kill -0 "$emulator_pid" 2>/dev/null; then
    say "the emulator exited ($status); last lines of $dir/emulator.log:"
    tail -n 20 "$dir/emulator.log" >&2
fi
exit 1
