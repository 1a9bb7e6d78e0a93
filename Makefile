# Rivet — build, demo and test entry points. See README.md.
SHELL := /bin/bash
GO ?= go
BUILD := build
BIN := $(BUILD)/bin
DASHBOARD_WEB := conductor/dashboard/web
DASHBOARD_ASSETS := $(DASHBOARD_WEB)/static/vendor/chart.umd.js
GOFILES := $(shell find . -name '*.go' -not -path './build/*') go.mod go.sum
export CGO_ENABLED := 0
export GOAMD64 := v1

.PHONY: all deps deps-demo build kernel initramfs testimage demo test test-unit lint bench clean dashboard

all: build

## deps: install the Debian packages the tests need (all groups)
deps:
	scripts/install-deps.sh vm test ironic postgres netboot browser

## deps-demo: install only what the demo needs (QEMU, OVMF, GRUB's EFI files, disk tools)
deps-demo:
	scripts/install-deps.sh vm

## build: the three programs into build/bin
build: $(BIN)/rivet-agent $(BIN)/rivet-conductor $(BIN)/rivet

# The dashboard's chart library is embedded when it has been built (make
# dashboard, which make test runs); without it the dashboard shows timings
# as tables, so the demo needs no Node.js.
$(BIN)/%: $(GOFILES) $(wildcard $(DASHBOARD_ASSETS))
	@mkdir -p $(BIN)
	$(GO) build -trimpath -o $@ ./cmd/$*

## dashboard: the dashboard's pinned browser libraries (npm ci in its web/ dir) copied into its embedded assets
dashboard: $(DASHBOARD_ASSETS)
$(DASHBOARD_ASSETS): $(DASHBOARD_WEB)/package.json $(DASHBOARD_WEB)/package-lock.json
	cd $(DASHBOARD_WEB) && npm ci --ignore-scripts --no-audit --no-fund
	cp $(DASHBOARD_WEB)/node_modules/chart.js/dist/chart.umd.min.js $@

## kernel: the Debian cloud kernel and its virtio modules (build/kernel)
kernel: $(BUILD)/kernel/vmlinuz
$(BUILD)/kernel/vmlinuz: scripts/fetch-kernel.sh
	scripts/fetch-kernel.sh $(BUILD)/kernel

## initramfs: the deploy ramdisk (u-root + rivet-agent)
initramfs: $(BUILD)/initramfs.cpio.zst
$(BUILD)/initramfs.cpio.zst: $(GOFILES) $(BUILD)/kernel/vmlinuz
	$(GO) run ./cmd/rivet-initramfs -modules $(BUILD)/kernel/modules -o $@

## testimage: the small bootable OS disk image the demo and e2e test deploy
testimage: $(BUILD)/testimage/disk.raw
$(BUILD)/testimage/disk.raw: $(GOFILES) $(BUILD)/kernel/vmlinuz
	$(GO) run ./internal/testimage/mktestimage -kernel $(BUILD)/kernel/vmlinuz -o $@

## demo: conductor + QEMU node + real deploy, end to end
demo: deps-demo build kernel initramfs testimage
	scripts/demo.sh

## test: unit tests and the end-to-end deploy in QEMU (the race detector needs cgo)
test: deps dashboard build kernel initramfs testimage
	RIVET_REQUIRE_E2E=1 CGO_ENABLED=1 $(GO) test -race -timeout 30m ./...

## lint: gofmt, go vet (linux and darwin), go mod tidy, staticcheck
lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	GOOS=darwin $(GO) vet ./...
	$(GO) mod tidy -diff
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

clean:
	rm -rf $(BUILD)

## bench: image-writer throughput on loop devices vs dd, peak RSS, 1 vs 3 disks (root; builds a 2.5 GiB OS image once into build/bench)
bench:
	RIVET_BENCH=1 $(GO) test -run '^$$' -bench BenchmarkImageWrite -benchtime 1x -timeout 60m ./imagewriter/

## bench-conductor: conductor load on SQLite — N simulated agents (lookup, heartbeat at IPA's cadence compressed by a short heartbeat timeout, command polling answered by the agents); p50/p99, errors, CPU at each N
BENCH_AGENTS ?= 1000,5000
BENCH_HEARTBEAT_TIMEOUT ?= 30s
BENCH_WINDOW ?= 60s
BENCH_DASHBOARD_SUBSCRIBERS ?= 0
.PHONY: bench-conductor
bench-conductor: $(BIN)/rivet-conductor
	$(GO) run ./conductor/loadtest/cmd/rivet-loadtest -conductor $(BIN)/rivet-conductor \
		-n $(BENCH_AGENTS) -heartbeat-timeout $(BENCH_HEARTBEAT_TIMEOUT) -duration $(BENCH_WINDOW) \
		-dashboard-subscribers $(BENCH_DASHBOARD_SUBSCRIBERS)
