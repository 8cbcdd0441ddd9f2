# AutonomyOps HA orchestrator. `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
# VERSION is this build's version, derived from `git describe --tags` by
# packaging/pkgversion: a tag v0.2.0 gives 0.2.0, three commits later
# 0.2.0+git3.g<hash> (+.dirty for uncommitted changes). It is linked into both
# binaries (--version), and mkpkg versions the .deb and .rpm with it.
# `make VERSION=v1.2.3 ...` is converted the same way.
override VERSION := $(shell $(GO) run ./packaging/cmd/pkgversion $(VERSION))
ifeq ($(VERSION),)
$(error cannot derive VERSION: run `$(GO) run ./packaging/cmd/pkgversion` to see why)
endif
LDFLAGS := -s -w -X github.com/autonomyops/orchestrator/node.Version=$(VERSION) -X github.com/autonomyops/orchestrator/ctl.Version=$(VERSION)
BIN := bin

.PHONY: help build run test test-unit lint bench package image test-integration test-mutants sim sim-mutants clean

help:
	@echo "make build             build bin/autonomy-orchestrator and bin/autonomyctl"
	@echo "make run               run a local cluster in the foreground (Ctrl-C stops it)"
	@echo "make test              lint + unit, in-process cluster and multi-process tests"
	@echo "make sim               the replication simulator for 30 minutes on fresh seeds (SIM_DURATION, SIM_SEEDS)"
	@echo "make sim-mutants       plant each bug of walrepl/sim_mutants_test.go; the simulator must find it"
	@echo "make bench             benchmarks against the disk and etcd"
	@echo "make package           build dist/*.deb and dist/*.rpm"

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/autonomy-orchestrator ./node/cmd/autonomy-orchestrator
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/autonomyctl ./ctl/cmd/autonomyctl

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags failpoints ./walrepl/...

test: lint build
	$(GO) test -race -count=1 -timeout 10m -skip '^TestSimulator$$' ./walrepl/...
	SIM_DURATION=$${SIM_DURATION:-60s} $(GO) test -count=1 -timeout 40m -run '^TestSimulator$$' -v ./walrepl/
	$(GO) test -count=1 -timeout 15m $$($(GO) list ./... | grep -v -e /walrepl -e /test/integration)

# The seeded simulator of the replication core (walrepl/sim_test.go). Fresh
# seeds every run, printed; a failure prints the command that replays it.
sim:
	SIM_DURATION=$${SIM_DURATION:-30m} $(GO) test -count=1 -timeout 0 -run '^TestSimulator$$' -v ./walrepl/

# Each planted bug of walrepl/sim_mutants_test.go must be found by the simulator.
sim-mutants:
	SIM_MUTANTS=$${SIM_MUTANTS:-all} SIM_MUTANT_SEEDS=$${SIM_MUTANT_SEEDS:-20000} $(GO) test -count=1 -timeout 60m -run 'TestSimMutantsApply|TestSimulatorFindsMutants' -v ./walrepl/

package: build
	$(GO) run ./packaging/cmd/mkpkg --version $(VERSION) --bin-dir $(BIN) --out dist

# Docker fault suite (issue 5): image FROM scratch with the test-only failpoints.
image:
	bash test/integration/build-image.sh

test-integration: image
	$(GO) test -tags integration -count=1 -timeout 40m -v ./test/integration/...

# Planted bugs: each scenario of the fault suite must catch at least one
# (test/integration/mutants.go). About half an hour; not part of CI.
test-mutants: image
	AUTONOMY_MUTANTS=$${AUTONOMY_MUTANTS:-all} $(GO) test -tags integration -count=1 -timeout 150m -v -run 'TestMutantsApply|TestPlantedBugs' ./test/integration/...

# Side-by-side benchmark against the raw disk and a three-member etcd (issue 7).
bench: build
	$(GO) run ./test/bench -out bench-results.json

clean:
	rm -rf $(BIN) dist bench-results.json

NODES ?= 3
run: build
	$(GO) run ./node/cmd/devcluster -n $(NODES)
