# binauthz-operator — developer entry points. `make help` lists them.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo
BIN := target/debug/binauthz-operator

.PHONY: help test lint fmt-check clippy hadolint lint-deploy unit crds chart demo dev bench bench-quick build soak

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## Build the binary (debug, with the emulator: default features)
	$(CARGO) build --locked

test: lint unit ## Every check and every test (what CI runs)

lint: fmt-check clippy hadolint lint-deploy ## Formatting, clippy, Dockerfile lint, deploy/ and chart scan (checkov, helm lint, promtool rule tests, Argo CD health tests)

fmt-check:
	$(CARGO) fmt --all -- --check

# Both builds of the operator: the default one (the `emulator` feature: the emulator
# subcommand and `check --emulator`) and the production one the Dockerfile builds
# (--no-default-features), so the minimal build cannot rot.
clippy:
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings
	$(CARGO) clippy --locked --no-default-features --all-targets -- -D warnings

hadolint:
	"$$(scripts/tools.sh)/hadolint" Dockerfile

lint-deploy:
	scripts/lint-deploy.sh

# The end-to-end suites build what they need from the Go module proxy on first use, once,
# into caches outside the tree: kube-apiserver, etcd and kubectl (scripts/envtest.sh) and,
# for tests/e2e/flux_health.rs, the kstatus helper (scripts/gotool.sh kstatus).
unit: ## All Rust tests (the operator's and the emulator crate's)
	$(CARGO) test --locked --workspace --all-targets

# The demo estate holds one binding the organization policy forbids on purpose
# (examples/bindings/legacy.yaml: OrgPolicyConflict), so `check` ends with exit 1 after
# fixing everything else; any other exit code fails the demo.
DEMO_EXIT := 1

demo: ## Check-and-fix examples/ against the embedded Cloud Run emulator (no credentials, no network)
	$(CARGO) build --locked -q
	@code=0; $(BIN) check -f examples/ --fix --emulator examples/cloudrun-seed.yaml || code=$$?; \
	if [ "$$code" -ne $(DEMO_EXIT) ]; then echo "demo: check exited $$code, expected $(DEMO_EXIT)" >&2; exit 1; fi; \
	echo "demo: exit $$code is expected here: platform/legacy asks for a policy its project's organization policy forbids (OrgPolicyConflict); every other binding complies"

dev: build ## Local playground: kube-apiserver, Pub/Sub emulator, Cloud Run emulator publishing audit logs, controller (drift events when it has --drift-events), examples/bindings/; injects a drift and times its fix (Ctrl-C stops it)
	BINAUTHZ_BIN=$(BIN) scripts/dev.sh

bench: ## Benchmarks of BENCHMARKS.md, every figure (about 40 min on 2 cores; scenario 6 alone 11 min, 7 (fleet scale) 9 min); ARGS=--quick for the smoke run
	scripts/bench.sh $(ARGS)

bench-quick: ## Benchmark smoke run (about 3 min, what CI can afford; fleet scale at 1,000 resources only); publishes nothing
	scripts/bench.sh --quick

crds: ## Regenerate crds/ from the Rust types, one file per CRD (and their copies in deploy/ and the chart)
	$(CARGO) run --locked -q -- crd --dir crds
	cp crds/*.yaml deploy/crds/
	scripts/sync-chart.sh

chart: ## Copy crds/, the alert rules and the dashboard into charts/binauthz-operator; write deploy/monitoring/prometheusrule.yaml
	scripts/sync-chart.sh

# The reliability suite's long runs (RELIABILITY.md). `make test` runs the same tests with
# bounded sizes; this scales them up. Under 30 minutes on 2 cores; figures are written to
# target/reliability/*.json and printed.
SOAK_ENV := BINAUTHZ_FUZZ_CASES=20000 BINAUTHZ_SOAK_RESOURCES=1000 BINAUTHZ_SOAK_JITTER_MS=150 \
	BINAUTHZ_SOAK_INTERVAL_SECS=60 BINAUTHZ_FLOOD_BINDINGS=500 \
	BINAUTHZ_SHARD_KILLS=6 BINAUTHZ_SHARD_RESOURCES=1200

soak: ## Long reliability runs: 20,000 hostile answers, 1,000-resource fault soaks, a 500-binding flood, 6 replica kills over 3 shard-sharing replicas (< 30 min)
	$(CARGO) build --locked --tests
	$(SOAK_ENV) $(CARGO) test --locked --test cloudrun hostile::
	$(SOAK_ENV) $(CARGO) test --locked --test controller fault_soak:: -- --nocapture
	$(SOAK_ENV) $(CARGO) test --locked --test controller resilience:: -- --nocapture --test-threads 1
	$(SOAK_ENV) $(CARGO) test --locked --test apiserver_restart -- --nocapture
	$(SOAK_ENV) $(CARGO) test --locked --test controller shards:: -- --nocapture
	$(SOAK_ENV) $(CARGO) test --locked --test controller no_credential_leak:: -- --nocapture
	@echo "figures: target/reliability/"
