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

.PHONY: all deps deps-demo deps-rack build kernel initramfs testimage testimage-partition demo rack test test-unit lint bench clean dashboard fuzz

all: build

## deps: install the Debian packages the tests need (all groups)
deps:
	scripts/install-deps.sh vm test ironic postgres netboot rack browser

## deps-demo: install only what the demo needs (QEMU, OVMF, GRUB's EFI files, disk tools)
deps-demo:
	scripts/install-deps.sh vm

## deps-rack: install only what the virtual rack needs (QEMU, iPXE, ipmi_sim, GRUB for BIOS)
deps-rack:
	scripts/install-deps.sh vm netboot rack

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

## kernel: the Debian cloud kernel and its virtio modules (build/kernel), for the virtual ramdisk
kernel: $(BUILD)/kernel/vmlinuz
$(BUILD)/kernel/vmlinuz: scripts/fetch-kernel.sh
	scripts/fetch-kernel.sh -f virtual $(BUILD)/kernel

## kernel-generic: Debian's generic kernel and the drivers of real servers (build/kernel-generic), for the hardware ramdisk
kernel-generic: $(BUILD)/kernel-generic/vmlinuz
$(BUILD)/kernel-generic/vmlinuz: scripts/fetch-kernel.sh
	scripts/fetch-kernel.sh -f hardware $(BUILD)/kernel-generic

## firmware: the firmware files the hardware ramdisk's modules request, from Debian's non-free-firmware (build/firmware)
firmware: $(BUILD)/firmware/manifest.tsv
$(BUILD)/firmware/manifest.tsv: scripts/fetch-firmware.sh $(BUILD)/kernel-generic/vmlinuz
	scripts/fetch-firmware.sh $(BUILD)/kernel-generic $(BUILD)/firmware

## initramfs: the deploy ramdisk (u-root + rivet-agent + modules); FLAVOR=hardware (default: real servers, build/initramfs.cpio.zst) or FLAVOR=virtual (QEMU nodes, build/initramfs-virtual.cpio.zst)
FLAVOR ?= hardware
ifeq ($(FLAVOR),virtual)
initramfs: initramfs-virtual
else ifeq ($(FLAVOR),hardware)
initramfs: initramfs-hardware
else
initramfs:
	@echo "FLAVOR=$(FLAVOR): want hardware or virtual" >&2; exit 2
endif
.PHONY: kernel-generic firmware initramfs-hardware initramfs-virtual

## initramfs-hardware: the ramdisk for real servers, booted with build/kernel-generic/vmlinuz
initramfs-hardware: $(BUILD)/initramfs.cpio.zst
$(BUILD)/initramfs.cpio.zst: $(GOFILES) $(BUILD)/kernel-generic/vmlinuz $(BUILD)/firmware/manifest.tsv
	$(GO) run ./cmd/rivet-initramfs -flavour hardware -modules $(BUILD)/kernel-generic/modules \
		-firmware $(BUILD)/firmware/tree -o $@

## initramfs-virtual: the lean ramdisk for QEMU nodes (virtio only), booted with build/kernel/vmlinuz
initramfs-virtual: $(BUILD)/initramfs-virtual.cpio.zst
$(BUILD)/initramfs-virtual.cpio.zst: $(GOFILES) $(BUILD)/kernel/vmlinuz
	$(GO) run ./cmd/rivet-initramfs -flavour virtual -modules $(BUILD)/kernel/modules -o $@

## testimage: the small bootable OS disk image the demo and e2e test deploy
testimage: $(BUILD)/testimage/disk.raw
$(BUILD)/testimage/disk.raw: $(GOFILES) $(BUILD)/kernel/vmlinuz
	$(GO) run ./internal/testimage/mktestimage -kernel $(BUILD)/kernel/vmlinuz -o $@

## testimage-partition: the partition test image (ext4 root whose GRUB for BIOS the agent installs)
testimage-partition: $(BUILD)/testimage/partition.raw
$(BUILD)/testimage/partition.raw: $(GOFILES) $(BUILD)/kernel/vmlinuz
	$(GO) run ./internal/testimage/mktestimage -partition -kernel $(BUILD)/kernel/vmlinuz -o $@

## rack: a virtual rack of N nodes (UEFI and BIOS in turn) with BMCs and a conductor in a network namespace, until Ctrl-C (root; docs/rack.md)
N ?= 3
RACK_LISTEN ?= 127.0.0.1:6385
rack: deps-rack build kernel-generic initramfs-hardware testimage testimage-partition $(BIN)/rivet-rack
	$(BIN)/rivet-rack -n $(N) -listen $(RACK_LISTEN)

## demo: conductor + QEMU node (virtual ramdisk, kernel shortcut) + real deploy, end to end
demo: deps-demo build kernel initramfs-virtual testimage
	scripts/demo.sh

## test: unit tests and the end-to-end deploy in QEMU (the race detector needs cgo)
test: deps dashboard build kernel initramfs-virtual initramfs-hardware testimage
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

## fuzz: every fuzz target in the module (found by name, not listed) for FUZZTIME each; summary in build/fuzz-summary.md
FUZZTIME ?= 30s
fuzz:
	FUZZTIME=$(FUZZTIME) FUZZ_SUMMARY=$(BUILD)/fuzz-summary.md GO=$(GO) scripts/fuzz.sh

## bench: image-writer throughput against this machine's limits measured in the same run (device: dd/fio direct; stages alone: download, hash, decode), peers, 1 vs 3 disks, CPU, peak RSS, load (root; builds the OS image once into build/bench; BENCH_SIZE=1G for a quicker run, BENCH_ROUNDS, BENCH_CASES=gz,zst to run only those cases and the limits they need, BENCH_PROFILE=dir for pprof profiles; see docs/benchmarks.md)
BENCH_SIZE ?= 2560M
BENCH_ROUNDS ?= 5
bench:
	scripts/install-deps.sh bench
	RIVET_BENCH=1 BENCH_SIZE=$(BENCH_SIZE) BENCH_ROUNDS=$(BENCH_ROUNDS) BENCH_CASES=$(BENCH_CASES) \
		BENCH_PROFILE=$(if $(BENCH_PROFILE),$(abspath $(BENCH_PROFILE))) BENCH_PROFILE_CASES=$(BENCH_PROFILE_CASES) BENCH_PROFILE_ONLY=$(BENCH_PROFILE_ONLY) \
		$(GO) test -run '^$$' -bench '^BenchmarkImageWrite$$' -benchtime 1x -timeout 180m ./imagewriter/

## bench-conductor: conductor load on SQLite — N simulated agents (lookup, heartbeat at IPA's cadence compressed by a short heartbeat timeout, command polling answered by the agents); a boot storm (every agent boots within BENCH_BOOT) then a steady window; p50/p99/max, errors, conductor and agents' CPU, RSS at each N; BENCH_NEIGHBOUR=N runs a CPU-bound process (stress-ng) on N cores beside the conductor
BENCH_AGENTS ?= 1000,5000
BENCH_HEARTBEAT_TIMEOUT ?= 30s
BENCH_WINDOW ?= 60s
BENCH_BOOT ?=
BENCH_NEIGHBOUR ?= 0
BENCH_DASHBOARD_SUBSCRIBERS ?= 0
.PHONY: bench-conductor
bench-conductor: $(BIN)/rivet-conductor
	$(if $(filter-out 0,$(BENCH_NEIGHBOUR)),scripts/install-deps.sh bench)
	$(GO) run ./cmd/rivet-loadtest -conductor $(BIN)/rivet-conductor \
		-n $(BENCH_AGENTS) -heartbeat-timeout $(BENCH_HEARTBEAT_TIMEOUT) -duration $(BENCH_WINDOW) \
		$(if $(BENCH_BOOT),-boot $(BENCH_BOOT)) -neighbour $(BENCH_NEIGHBOUR) \
		-dashboard-subscribers $(BENCH_DASHBOARD_SUBSCRIBERS)

## bench-serving: one cached image (BENCH_SERVE_SIZE) downloaded by BENCH_SERVE_CLIENTS clients at once from the conductor and from nginx (sendfile) in the same run, BENCH_SERVE_ROUNDS rounds, order alternating; aggregate MiB/s, medians, CPU, load
BENCH_SERVE_SIZE ?= 1GiB
BENCH_SERVE_CLIENTS ?= 50
BENCH_SERVE_ROUNDS ?= 3
.PHONY: bench-serving
bench-serving: $(BIN)/rivet-conductor
	scripts/install-deps.sh bench
	$(GO) run ./cmd/rivet-loadtest -serving -conductor $(BIN)/rivet-conductor \
		-serve-size $(BENCH_SERVE_SIZE) -serve-clients $(BENCH_SERVE_CLIENTS) -serve-rounds $(BENCH_SERVE_ROUNDS)
