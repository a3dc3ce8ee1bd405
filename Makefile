# ferry: the two commands a fresh machine with only Go needs are
#   make demo   (build, then run the main job end to end on an embedded store)
#   make test   (every test, with the race detector, and each fuzz target briefly)

GO        ?= go
BIN       := bin/ferry
FUZZTIME  ?= 5s
PKGS      := ./...

.PHONY: all build test test-short demo bench bench-quick bench-go fuzz lint clean crashloop

all: build

# The version: the newest v* tag and the commits since (git describe), else
# the release line in development; the commit comes from Go's VCS stamping,
# which -buildvcs=auto turns on even where GOFLAGS turns it off.
VERSION   ?= $(shell git describe --tags --match 'v[0-9]*' --dirty 2>/dev/null || echo v0.2.0-dev)

build:
	$(GO) build -buildvcs=auto -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/ferry

# The test suite: vet, race-enabled tests, then a short run of every fuzz target.
test: build
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 -timeout 20m $(PKGS)
	$(MAKE) --no-print-directory fuzz FUZZTIME=3s

test-short:
	$(GO) test -count=1 $(PKGS)

demo: build
	@sh scripts/demo.sh $(BIN)

# The whole comparison with rsync and restic (installed with apt-get when
# missing), the WAN, scale curves, watch latency and gc; writes
# bench/results/*.md and bench/results/latest.md. Hours on a small machine.
bench: build
	$(BIN) bench all

# The same harness on small corpora, one run each (under two minutes; CI
# runs it so the harness never rots). Results go to bench/results/quick/.
bench-quick: build
	$(BIN) bench all --quick

# The kill -9 crash loop at length: 1,000 iterations of the real server
# killed under four pushers and a puller (make test runs 30), written to
# bench/results/crashloop.md. About an hour on 2 cores.
CRASHLOOP_ITERS ?= 1000
crashloop:
	FERRY_CRASHLOOP_ITERS=$(CRASHLOOP_ITERS) FERRY_CRASHLOOP_REPORT=$(CURDIR)/bench/results/crashloop.md \
		$(GO) test -count=1 -timeout 4h -run '^TestCrashLoop$$' -v ./cmd/ferry

# Go benchmarks of the hot paths (compare runs with benchstat).
bench-go:
	$(GO) test -run XXX -bench . -benchtime 5x -count 3 ./chunk ./cas ./scan

# Each fuzz target, briefly. Go fuzzes one target per invocation. Go 1.26's
# coordinator can report a bare "context deadline exceeded" as -fuzztime
# ends (golang/go#75804, fixed in 1.27) without finding anything: such a run,
# with no failing input written, is run once more; anything else fails.
fuzz:
	@set -e; for spec in $$(grep -rhoE --include='*_test.go' '^func (Fuzz[A-Za-z0-9_]+)' . | sed 's/func //' | sort -u); do \
		pkg=$$(grep -rlE --include='*_test.go' "^func $$spec\(" . | head -1 | xargs dirname); \
		echo "fuzz $$pkg $$spec ($(FUZZTIME))"; \
		out=$$($(GO) test $$pkg -run XXX -fuzz "^$$spec\$$" -fuzztime $(FUZZTIME) 2>&1) && continue; \
		if echo "$$out" | grep -q 'context deadline exceeded' && ! echo "$$out" | grep -q 'Failing input written'; then \
			echo "  the fuzz coordinator's deadline race (golang/go#75804), nothing found: once more"; \
			out=$$($(GO) test $$pkg -run XXX -fuzz "^$$spec\$$" -fuzztime $(FUZZTIME) 2>&1) && continue; \
		fi; \
		echo "$$out"; exit 1; \
	done

lint:
	@test -z "$$(gofmt -l . | tee /dev/stderr)" || (echo "gofmt: files above need formatting" && exit 1)
	$(GO) vet $(PKGS)

clean:
	rm -rf bin
