# shmstore — `make help` lists the targets. `make test` is what CI runs.

SHELL         := /bin/bash
GO            ?= go
STATICCHECK   := honnef.co/go/tools/cmd/staticcheck@v0.8.2
BIN           := bin
SHMCTL        := $(BIN)/shmctl
LIB           := $(BIN)/libshmstore.so
DEMO_STORE    ?= demo
# Packages with concurrency, tested again with -race and -tags invariants.
CONCURRENT    := ./shm/ ./alloc/ ./handle/ ./ipc/ ./reclaim/ ./txn/ ./objects/ ./cmd/shmctl/ ./internal/proctest/ ./e2e/ ./bindings/capi/abi/ ./internal/release/ .

.DEFAULT_GOAL := help
.PHONY: help check-platform check-cc build lib test test-unit test-race lint demo bench fuzz clean python python-deps python-bench-deps python-bench test-python

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

check-platform:
	@os=$$(uname -s); arch=$$(uname -m); \
	if [ "$$os" != Linux ] || { [ "$$arch" != x86_64 ] && [ "$$arch" != aarch64 ]; }; then \
	  echo "shmstore runs on Linux on amd64 or arm64 only (this is $$os/$$arch)" >&2; exit 1; fi
	@command -v $(GO) >/dev/null || { echo "Go is not installed: get Go 1.26 or newer from https://go.dev/dl/" >&2; exit 1; }
	@$(GO) version | awk '{split($$3,v,"."); sub("go","",v[1]); if (v[1] < 1 || (v[1] == 1 && v[2] < 26)) { print "Go 1.26 or newer is needed, found " $$3 > "/dev/stderr"; exit 1 }}'
	@[ -d /dev/shm ] && [ -w /dev/shm ] || { echo "/dev/shm (tmpfs) must exist and be writable" >&2; exit 1; }

# bin/shmctl is built static (CGO_ENABLED=0): pflag, cobra's flag package,
# imports net, whose cgo resolver would link libc and cost 1 ms a start.
build: check-platform ## build the packages and bin/shmctl
	$(GO) build ./...
	CGO_ENABLED=0 $(GO) build -o $(SHMCTL) ./cmd/shmctl

# The C ABI (bindings/capi) is cgo: it needs a C compiler. Without one, Go
# builds and tests everything else, and bindings/capi's C test skips.
check-cc:
	@command -v $${CC:-gcc} >/dev/null || \
	  echo "*** no C compiler ($${CC:-gcc}): bindings/capi (the C ABI) is not built and its C test is SKIPPED; install gcc to run it" >&2

lib: check-platform ## build bin/libshmstore.so (the C ABI, bindings/capi) with shmstore.h beside it
	@command -v $${CC:-gcc} >/dev/null || { echo "make lib needs a C compiler for cgo ($${CC:-gcc} not found): install gcc" >&2; exit 1; }
	CGO_ENABLED=1 $(GO) build -buildmode=c-shared -o $(LIB) ./bindings/capi
	rm -f $(BIN)/libshmstore.h # cgo's own header: shmstore.h is the contract
	cp bindings/capi/shmstore.h $(BIN)/shmstore.h

test: lint test-unit test-race test-python ## lint, then every test (unit, multi-process, fuzz seeds, the C ABI's C test), then again with -race -tags invariants (-short)

test-unit: check-platform check-cc
	$(GO) test -count=1 ./...

test-race: check-platform
	$(GO) test -count=1 -short -race -tags invariants $(CONCURRENT)

lint: check-platform ## gofmt check, go vet, staticcheck (pinned, run through go run)
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags invariants ./...
	$(GO) run $(STATICCHECK) ./...

# The Python process runs in the background, its output kept until bank's
# table is out; it is killed (by its pid) if bank fails before making the
# accounts it waits for.
DEMO_PY_OUT   := $(BIN)/demo-python.txt

demo: build python ## create the store "demo"; 3 Go processes and a Python one move money between its accounts; info, txns, check
	@echo "== a fresh store '$(DEMO_STORE)' in $${SHMSTORE_DIR:-/dev/shm/shmstore}"
	@$(SHMCTL) rm --force $(DEMO_STORE) 2>/dev/null || true
	$(SHMCTL) create $(DEMO_STORE)
	@echo "== 3 Go processes (shmctl bank) and a Python one (bindings/python/examples/demo_bank.py) move money between 100 accounts in transactions; a reader checks the total every second"
	@echo "PYTHONPATH=bindings/python $(PYTHON) bindings/python/examples/demo_bank.py $(DEMO_STORE) --duration 5 &"
	@echo "$(SHMCTL) bank $(DEMO_STORE) --procs 3 --duration 5s"
	@PYTHONPATH=bindings/python $(PYTHON) bindings/python/examples/demo_bank.py $(DEMO_STORE) --duration 5 >$(DEMO_PY_OUT) 2>&1 & py=$$!; \
	  $(SHMCTL) bank $(DEMO_STORE) --procs 3 --duration 5s; bank=$$?; \
	  [ $$bank = 0 ] || kill $$py 2>/dev/null; \
	  wait $$py; python=$$?; \
	  echo "== what the Python process did, beside the Go ones"; cat $(DEMO_PY_OUT); \
	  [ $$bank = 0 ] && [ $$python = 0 ]
	@echo "== what the store holds now"
	$(SHMCTL) info $(DEMO_STORE)
	@echo "== the transaction slots and the version clock"
	$(SHMCTL) txns $(DEMO_STORE)
	@echo "== consistency"
	$(SHMCTL) check $(DEMO_STORE)
	@echo "(look inside with: $(SHMCTL) get $(DEMO_STORE) accounts; remove it with: $(SHMCTL) rm $(DEMO_STORE))"

bench: build ## benchmarks with in-process baselines (Go's allocator, an RWMutex map), the multi-process ones (e2e), then shmctl bench
	$(GO) test -run '^$$' -bench . -benchmem ./alloc/
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 1s .
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 1s ./e2e/
	@d=$$(mktemp -d /dev/shm/shmstore-bench-XXXXXX); trap 'rm -rf "$$d"' EXIT; \
	  $(SHMCTL) --dir "$$d" create bench && \
	  $(SHMCTL) --dir "$$d" bench bench --procs 1 --duration 3s && \
	  $(SHMCTL) --dir "$$d" bench bench --procs 2 --duration 3s

fuzz: check-platform ## run the fuzzers for a while (FUZZTIME=30s each)
	$(GO) test -run '^$$' -fuzz '^FuzzResolve$$' -fuzztime $${FUZZTIME:-30s} ./handle/
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $${FUZZTIME:-30s} ./handle/
	$(GO) test -run '^$$' -fuzz '^FuzzABI$$' -fuzztime $${FUZZTIME:-30s} ./bindings/capi/abi/

# The Python binding (bindings/python). Debian's own Python: the python3
# first on PATH may be a pyenv build without Debian's packages.
PYTHON        ?= /usr/bin/python3
PY_DEBS       := python3-dev python3-pytest python3-setuptools python3-hypothesis
PY_BENCH_DEBS := python3-lmdb
PY_EXTRA_DEBS ?=

python-deps: ## install the Debian packages the Python binding builds and tests with (apt-get)
	@missing=""; for p in $(PY_DEBS) $(PY_EXTRA_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "== installing Debian packages for the Python binding:$$missing"; \
	  apt-get install -y $$missing || { echo "== not found: apt-get update, then again"; apt-get update && apt-get install -y $$missing; } || \
	  { echo "could not install$$missing: run 'apt-get update && apt-get install -y$$missing' (as root)" >&2; exit 1; }; \
	fi
	@[ -x $(PYTHON) ] || { echo "$(PYTHON) not found: the Python binding builds with Debian's python3 (PYTHON=... to use another)" >&2; exit 1; }

python-bench-deps: ## the Debian packages of the Python benchmarks (python3-lmdb, to compare with LMDB)
	$(MAKE) python-deps PY_EXTRA_DEBS="$(PY_BENCH_DEBS)"

python: lib python-deps ## build the Python binding in place (bindings/python/shmstore: the extension beside libshmstore.so)
	cd bindings/python && SHMSTORE_PREBUILT_LIB=$(CURDIR)/$(LIB) $(PYTHON) setup.py -q build_ext --inplace

python-bench: python python-bench-deps ## the Python binding against its peers (dict, LMDB, Manager, ShareableList, multiprocessing.Queue): one table
	PYTHONPATH=bindings/python $(PYTHON) bindings/python/bench/bench.py

test-python: python build ## the Python binding's tests (pytest, under 2 minutes; bin/shmctl for the Go+Python ones)
	cd bindings/python && SHMCTL=$(CURDIR)/$(SHMCTL) $(PYTHON) -m pytest -q -p no:cacheprovider tests

clean: ## remove build outputs
	rm -rf $(BIN)
	rm -rf bindings/python/build bindings/python/shmstore/*.so
