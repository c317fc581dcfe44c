#!/usr/bin/env bash
# Static checks of the deployment manifests; fails on any problem. Runs unattended on a
# fresh machine: installs checkov (scripts/tools.sh), Lua and dkjson (apt-get) when
# missing, and uses `kubectl kustomize` (or a kustomize built from its Go module).
#
#   1. deploy/crds/ is byte-identical to crds/ (kustomize cannot read files outside deploy/)
#   2. every kustomization renders: deploy/, deploy/monitoring/, deploy/tenancy/,
#      deploy/policyreports/
#   3. the Deployment's shutdown grace fits in its terminationGracePeriodSeconds
#   4. checkov: the rendered manifests (kubernetes) and the Dockerfile (dockerfile), with no
#      failed check; each exception is justified where it is made
#   5. deploy/argocd/argocd-cm-patch.yaml embeds the Argo CD health check verbatim
#   6. the Argo CD health check answers every case of its health_test.yaml (Argo CD's
#      resource_customizations layout, testdata/ beside it) exactly, under Lua 5.1 (Argo
#      CD's dialect) and 5.4; every testdata/ file is a case; a script that always answers
#      Healthy must be caught by the same runner
#   7. the Helm chart (helm from its Go module, scripts/gotool.sh helm): its copies of crds/,
#      the rules and the dashboard are current; `helm lint --strict` with the defaults and
#      with every option on; its renders go through checkov (step 4); the default render
#      and the kustomize base are the same objects (Helm's own labels aside)
#   8. the alert rules: `promtool check rules` and `promtool test rules` (a firing and a
#      quiet case per alert; promtool from its Go module, scripts/gotool.sh promtool)
set -euo pipefail
cd "$(dirname "$0")/.."

KUSTOMIZE_VERSION=v5.5.0
LUA_PACKAGES=(lua5.1 lua5.4 lua-dkjson)
# The Argo CD health check in Argo CD's resource_customizations layout.
ARGOCD_HEALTH=deploy/argocd/resource_customizations/binauthz.dev/BinAuthzBinding
start=$SECONDS
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

step() { printf '\n== %s\n' "$*"; }
die() { printf 'lint-deploy: error: %s\n' "$*" >&2; exit 1; }

# --- tools -------------------------------------------------------------------------------
tools="$(scripts/tools.sh --with-checkov)"

kustomize_build() { # DIR
  if command -v kubectl >/dev/null 2>&1; then
    kubectl kustomize "$1"
    return
  fi
  local bin="${XDG_CACHE_HOME:-$HOME/.cache}/binauthz-operator/tools/kustomize-$KUSTOMIZE_VERSION"
  if [ ! -x "$bin/kustomize" ]; then
    local go
    go="$(command -v go || echo /usr/local/go/bin/go)"
    [ -x "$go" ] || die "neither kubectl nor Go found: install kubectl, or Go to build kustomize"
    echo "lint-deploy: building kustomize $KUSTOMIZE_VERSION into $bin" >&2
    GOBIN="$bin" "$go" install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION" >&2
  fi
  "$bin/kustomize" build "$1"
}

lua_ready() { command -v "$1" >/dev/null 2>&1 && "$1" -e 'require("dkjson")' >/dev/null 2>&1; }
missing=0
for lua in lua5.1 lua5.4; do lua_ready "$lua" || missing=1; done
if [ "$missing" = 1 ]; then
  sudo=()
  [ "$(id -u)" = 0 ] || sudo=(sudo -n)
  echo "lint-deploy: installing ${LUA_PACKAGES[*]} with apt-get" >&2
  "${sudo[@]}" apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${LUA_PACKAGES[@]}" >&2
  for lua in lua5.1 lua5.4; do lua_ready "$lua" || die "$lua with dkjson is still missing after apt-get"; done
fi

# --- 1. the CRD copy ---------------------------------------------------------------------
for CRD in $(cd crds && ls *.yaml); do
  step "deploy/crds/$CRD matches crds/$CRD"
  cmp -s "crds/$CRD" "deploy/crds/$CRD" \
    || die "deploy/crds/$CRD differs from crds/$CRD; copy it (\`cp crds/$CRD deploy/crds/\`, which \`make crds\` does) and commit"
done
echo ok

# --- 2. render ---------------------------------------------------------------------------
step "render the kustomizations"
for dir in deploy deploy/monitoring deploy/tenancy deploy/policyreports; do
  out="$work/$(echo "$dir" | tr / -).yaml"
  kustomize_build "$dir" >"$out" || die "$dir/ does not render (see above)"
  printf '%-20s %s objects\n' "$dir/" "$(grep -c '^kind:' "$out")"
done
# deploy/shards/ is a component: render it the way an overlay uses it (kustomize wants
# relative paths, so the overlay lives in the tree, under target/).
mkdir -p target
overlay="$(mktemp -d -p target lint-shards.XXXXXX)"
trap 'rm -rf "$work" "$overlay"' EXIT
printf 'resources:\n- ../../deploy\ncomponents:\n- ../../deploy/shards\n' >"$overlay/kustomization.yaml"
kustomize_build "$overlay" >"$work/deploy-shards.yaml" || die "deploy/ with the deploy/shards component does not render (see above)"
"$tools/python" - "$work/deploy-shards.yaml" <<'EOF'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
deployment = next(d for d in docs if d["kind"] == "Deployment")
args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
if "--leader-election" not in args or not any(a.startswith("--shards=") for a in args):
    sys.exit("deploy/shards: the Deployment needs --leader-election and --shards=N")
roles = [d for d in docs if d["kind"] == "Role" and d["metadata"]["name"] == "binauthz-operator-shards"]
if not roles or roles[0]["metadata"].get("namespace") != "binauthz-system":
    sys.exit("deploy/shards: the shards Role must be in binauthz-system")
shards = [a for a in args if a.startswith("--shards=")][0]
print(f"deploy/shards (component) {len(docs)} objects, {deployment['spec']['replicas']} replicas, {shards}")
EOF

# --- 7a. render the chart (checked in 4 and 7) ---------------------------------------------
step "render the Helm chart"
scripts/sync-chart.sh --check || die "the chart's copies are stale (see above)"
helm="$(scripts/gotool.sh helm)"
CHART=charts/binauthz-operator
# Every option on: the objects only they add get scanned too.
ALL_ON=(--set metrics.serviceMonitor.enabled=true --set metrics.prometheusRule.enabled=true
  --set metrics.dashboard.enabled=true --set policyReports.enabled=true
  --set tenancy.admissionPolicy.enabled=true --set shards=6 --set replicas=3
  --set driftEvents.subscription=projects/p/subscriptions/s
  --set image.digest=sha256:0000000000000000000000000000000000000000000000000000000000000000)
"$helm" lint --strict "$CHART" || die "helm lint $CHART failed"
"$helm" lint --strict "$CHART" "${ALL_ON[@]}" || die "helm lint $CHART with every option on failed"
"$helm" template binauthz-operator "$CHART" --namespace binauthz-system --include-crds \
  >"$work/chart-default.yaml" || die "helm template $CHART failed"
"$helm" template binauthz-operator "$CHART" --namespace binauthz-system "${ALL_ON[@]}" \
  >"$work/chart-all-on.yaml" || die "helm template $CHART with every option on failed"
# Values that would deploy something broken are refused, each with its reason.
for bad in "leaderElection.enabled=false" "logFormat=xml" "shutdownGrace=1m" "image.digest=latest" \
  "driftEvents.subscription=my-subscription" "leaderElection.enabled=false,replicas=1,shards=4" "shards=-1"; do
  if "$helm" template binauthz-operator "$CHART" --set "$bad" >/dev/null 2>"$work/refused.txt"; then
    die "the chart accepted --set $bad"
  fi
  printf 'refused --set %-42s %s\n' "$bad" "$(grep -m1 -E '^- at|execution error' "$work/refused.txt" | sed 's/.*): //' | cut -c1-90)"
done
printf '%-20s %s objects\n' "default" "$(grep -c '^kind:' "$work/chart-default.yaml")" \
  "every option on" "$(grep -c '^kind:' "$work/chart-all-on.yaml")"

# --- 3. shutdown grace -------------------------------------------------------------------
step "the Deployment's shutdown grace fits its termination grace period"
"$tools/python" - "$work/deploy.yaml" <<'EOF'
import re, sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
deployment = next(d for d in docs if d["kind"] == "Deployment")
pod = deployment["spec"]["template"]["spec"]
args = pod["containers"][0]["args"]
grace = [a for a in args if a.startswith("--shutdown-grace=")]
if len(grace) != 1 or not re.fullmatch(r"--shutdown-grace=(\d+)s", grace[0]):
    sys.exit("deploy/deployment.yaml: the controller needs exactly one --shutdown-grace=<N>s argument")
seconds = int(re.fullmatch(r"--shutdown-grace=(\d+)s", grace[0]).group(1))
period = pod["terminationGracePeriodSeconds"]
if period < seconds + 5:
    sys.exit(f"deploy/deployment.yaml: terminationGracePeriodSeconds {period} leaves less than 5s "
             f"after --shutdown-grace={seconds}s; raise it to at least {seconds + 5}")
print(f"--shutdown-grace={seconds}s, terminationGracePeriodSeconds={period}: ok")
EOF

# --- 4. checkov --------------------------------------------------------------------------
step "checkov: rendered manifests, the Argo CD snippet, the Dockerfile"
for f in "$work"/deploy*.yaml "$work"/chart-*.yaml deploy/argocd/argocd-cm-patch.yaml; do
  cat "$f"
  echo --- # files do not end with a document separator: without one, documents merge
done >"$work/all.yaml"
# --skip-download and no update check: nothing leaves the machine; the built-in checks are
# all we use.
# CKV_DOCKER_2 (HEALTHCHECK) is skipped: Kubernetes ignores an image's HEALTHCHECK and
# probes /healthz and /readyz itself (deploy/deployment.yaml), and the scratch image has no
# shell or HTTP client a HEALTHCHECK could run. Manifest exceptions are checkov.io/skipN
# annotations beside the resource they concern.
CKV_SKIP_PACKAGE_UPDATE_CHECK=true "$tools/checkov" --quiet --compact --skip-download \
  --framework kubernetes dockerfile -f "$work/all.yaml" -f Dockerfile \
  --skip-check CKV_DOCKER_2 \
  || die "checkov found problems in deploy/, the chart or the Dockerfile (fix them, or justify an exception: see above)"

# --- 5. the argocd-cm snippet ------------------------------------------------------------
step "deploy/argocd/argocd-cm-patch.yaml embeds ${ARGOCD_HEALTH}/health.lua verbatim"
ARGOCD_HEALTH="$ARGOCD_HEALTH" "$tools/python" - <<'EOF'
import os, sys, yaml
key = "resource.customizations.health.binauthz.dev_BinAuthzBinding"
script = os.environ["ARGOCD_HEALTH"] + "/health.lua"
embedded = yaml.safe_load(open("deploy/argocd/argocd-cm-patch.yaml"))["data"].get(key)
if embedded != open(script).read():
    sys.exit("deploy/argocd/argocd-cm-patch.yaml: data." + key + " differs from "
             + script + "; re-embed it (indent each non-empty line by 4 spaces)")
print("ok")
EOF

# --- 6. Argo CD health check -------------------------------------------------------------
step "Argo CD health check against ${ARGOCD_HEALTH}/health_test.yaml"
# Lua reads no YAML: inline each case's input object into one JSON list.
ARGOCD_HEALTH="$ARGOCD_HEALTH" "$tools/python" - >"$work/argocd-cases.json" <<'EOF'
import json, os, sys, yaml
# Times stay strings, as in the JSON objects Argo CD hands the script.
class Loader(yaml.SafeLoader):
    yaml_implicit_resolvers = {
        first: [r for r in resolvers if r[0] != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
root = os.environ["ARGOCD_HEALTH"]
tests = yaml.load(open(os.path.join(root, "health_test.yaml")), Loader)["tests"]
cases, listed = [], set()
for test in tests:
    path = test["inputPath"]
    listed.add(os.path.normpath(path))
    cases.append({"inputPath": path, "status": test["healthStatus"]["status"],
                  "message": test["healthStatus"]["message"],
                  "object": yaml.load(open(os.path.join(root, path)), Loader)})
unlisted = sorted(os.path.join("testdata", f) for f in os.listdir(os.path.join(root, "testdata"))
                  if os.path.normpath(os.path.join("testdata", f)) not in listed)
if unlisted:
    sys.exit(root + "/health_test.yaml: no case for " + ", ".join(unlisted))
json.dump(cases, sys.stdout)
EOF
for lua in lua5.1 lua5.4; do
  "$lua" scripts/argocd-health-test.lua "$ARGOCD_HEALTH/health.lua" "$work/argocd-cases.json" \
    || die "the health check fails under $lua"
done
# The runner must be able to fail: a script that calls everything Healthy is rejected.
printf 'return { status = "Healthy", message = "always healthy" }\n' >"$work/always-healthy.lua"
if lua5.4 scripts/argocd-health-test.lua "$work/always-healthy.lua" "$work/argocd-cases.json" >/dev/null; then
  die "argocd-health-test.lua accepted a health check that always answers Healthy"
fi
echo "an always-Healthy script is rejected: ok"

# --- 7. the chart renders what the kustomize base is ----------------------------------------
step "the chart's default render and deploy/ are the same objects"
"$tools/python" - "$work/deploy.yaml" "$work/chart-default.yaml" <<'EOF'
import difflib, json, sys, yaml
# Labels only Helm adds (release bookkeeping); everything else must be equal.
HELM_LABELS = {"helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/instance",
               "app.kubernetes.io/version"}
def objects(path, source):
    out = {}
    for doc in yaml.safe_load_all(open(path)):
        if not doc:
            continue
        meta = doc.setdefault("metadata", {})
        labels = {k: v for k, v in (meta.get("labels") or {}).items() if k not in HELM_LABELS}
        if labels:
            meta["labels"] = labels
        else:
            meta.pop("labels", None)
        key = (doc["kind"], meta.get("namespace", ""), meta["name"])
        if key in out:
            sys.exit(f"{source}: {key} twice")
        out[key] = doc
    return out
kustomize = objects(sys.argv[1], "deploy/")
chart = objects(sys.argv[2], "the chart")
# The chart leaves the namespace to `helm install --create-namespace` (README).
kustomize = {k: v for k, v in kustomize.items() if k[0] != "Namespace"}
# Helm installs crds/ verbatim (no templating): its CRD cannot carry kustomize's part-of label.
for key, doc in kustomize.items():
    if key[0] == "CustomResourceDefinition":
        labels = doc["metadata"].get("labels", {})
        labels.pop("app.kubernetes.io/part-of", None)
        if not labels:
            doc["metadata"].pop("labels", None)
problems = []
for key in sorted(set(kustomize) | set(chart)):
    if key not in chart:
        problems.append(f"only in deploy/: {key}")
    elif key not in kustomize:
        problems.append(f"only in the chart: {key}")
    elif kustomize[key] != chart[key]:
        a = json.dumps(kustomize[key], indent=1, sort_keys=True).splitlines()
        b = json.dumps(chart[key], indent=1, sort_keys=True).splitlines()
        diff = "\n".join(difflib.unified_diff(a, b, "deploy/", "chart", lineterm="", n=2))
        problems.append(f"{key} differs:\n{diff}")
if problems:
    sys.exit("the chart's default render differs from deploy/:\n" + "\n".join(problems))
print(f"{len(chart)} objects, the same in both: ok")
EOF

# --- 8. alert rules -----------------------------------------------------------------------
step "promtool: deploy/monitoring/alerts.rules.yaml and its unit tests"
promtool="$(scripts/gotool.sh promtool)"
(cd deploy/monitoring && "$promtool" check rules alerts.rules.yaml && "$promtool" test rules alerts.test.yaml) \
  || die "the alert rules or their tests fail (deploy/monitoring/alerts.test.yaml)"

printf '\nlint-deploy: all checks passed in %ss\n' "$((SECONDS - start))"
