# The two commands a newcomer needs (README): `make quickstart` and `make test`.
# Both install their dependencies first (scripts/deps.sh, idempotent).
SHELL := /bin/bash
export GOTOOLCHAIN := local
export GOFLAGS := -buildvcs=false
TOOLS := $(CURDIR)/.tools/bin
LAB_DIR ?= cairn-lab
FUZZTIME ?= 30s

.PHONY: deps build quickstart test unit integration lint fuzz clean

deps:
	@scripts/deps.sh

build:
	go build -o bin/cairn ./cmd/cairn

# Until `cairn lab up` exists: a 3-site cluster spec and its whole PKI.
quickstart: deps build
	@if [ ! -f $(LAB_DIR)/cairn.yaml ]; then bin/cairn init --dir $(LAB_DIR); fi
	cd $(LAB_DIR) && ../bin/cairn validate && ../bin/cairn pki init && ../bin/cairn pki status

# Everything CI runs: lint, unit and integration tests (real SoftHSM,
# Boulder's ceremony, openssl), and the spec parser fuzz target.
test: deps lint
	go test -count=1 ./...
	$(MAKE) --no-print-directory fuzz

# Fast, hermetic loop for development: integration tests are skipped.
unit:
	go test -short ./...

lint:
	@fmt=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$fmt" ]; then echo "gofmt needed: $$fmt"; exit 1; fi
	go vet ./...
	$(TOOLS)/staticcheck ./...

fuzz:
	go test -run='^$$' -fuzz=FuzzParse -fuzztime=$(FUZZTIME) ./cluster/

clean:
	rm -rf bin .tools
