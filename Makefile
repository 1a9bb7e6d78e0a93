# Rivet — build, demo and test entry points. See README.md.
SHELL := /bin/bash
GO ?= go
BUILD := build
BIN := $(BUILD)/bin
GOFILES := $(shell find . -name '*.go' -not -path './build/*') go.mod go.sum
export CGO_ENABLED := 0
export GOAMD64 := v1

.PHONY: all deps build kernel initramfs testimage demo test test-unit lint bench clean

all: build

## deps: install the Debian packages the VM, the demo and the tests need
deps:
	scripts/install-deps.sh vm test ironic postgres

## build: the three programs into build/bin
build: $(BIN)/rivet-agent $(BIN)/rivet-conductor $(BIN)/rivet

$(BIN)/%: $(GOFILES)
	@mkdir -p $(BIN)
	$(GO) build -trimpath -o $@ ./cmd/$*

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
demo: deps build kernel initramfs testimage
	scripts/demo.sh

## test: unit tests and the end-to-end deploy in QEMU (the race detector needs cgo)
test: deps build kernel initramfs testimage
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

## bench: image-writer throughput against this machine's limits measured in the same run (device: dd/fio direct; stages alone: download, hash, decode), peers, 1 vs 3 disks, CPU, peak RSS, load (root; builds the OS image once into build/bench; BENCH_SIZE=1G for a quicker run, BENCH_ROUNDS, BENCH_PROFILE=dir for pprof profiles; see docs/benchmarks.md)
BENCH_SIZE ?= 2560M
BENCH_ROUNDS ?= 3
bench:
	scripts/install-deps.sh bench
	RIVET_BENCH=1 BENCH_SIZE=$(BENCH_SIZE) BENCH_ROUNDS=$(BENCH_ROUNDS) \
		BENCH_PROFILE=$(if $(BENCH_PROFILE),$(abspath $(BENCH_PROFILE))) BENCH_PROFILE_CASES=$(BENCH_PROFILE_CASES) BENCH_PROFILE_ONLY=$(BENCH_PROFILE_ONLY) \
		$(GO) test -run '^$$' -bench '^BenchmarkImageWrite$$' -benchtime 1x -timeout 180m ./imagewriter/

## bench-conductor: conductor load on SQLite — N simulated agents (lookup, heartbeat at IPA's cadence compressed by a short heartbeat timeout, command polling answered by the agents); p50/p99, errors, CPU at each N
BENCH_AGENTS ?= 1000,5000
BENCH_HEARTBEAT_TIMEOUT ?= 30s
BENCH_WINDOW ?= 60s
.PHONY: bench-conductor
bench-conductor: $(BIN)/rivet-conductor
	$(GO) run ./conductor/loadtest/cmd/rivet-loadtest -conductor $(BIN)/rivet-conductor \
		-n $(BENCH_AGENTS) -heartbeat-timeout $(BENCH_HEARTBEAT_TIMEOUT) -duration $(BENCH_WINDOW)
