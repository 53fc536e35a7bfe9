# The two commands a newcomer needs (README): `make lab` and `make test`.
# Both install their dependencies first (scripts/deps.sh, idempotent):
# `make lab` only what the lab runs, `make test` also the test-only tools.
SHELL := /bin/bash
export GOTOOLCHAIN := local
export GOFLAGS := -buildvcs=false
TOOLS := $(CURDIR)/.tools/bin
# Tests find lego v5 (built by `deps.sh test`) on PATH; bin/cairn finds it
# in ../.tools/bin from any directory.
export PATH := $(TOOLS):$(PATH)
LAB_DIR ?= cairn-lab
FUZZTIME ?= 30s

.PHONY: deps deps-lab build lab lab-down quickstart test unit lint rules fuzz bench clean

deps:
	@scripts/deps.sh test

deps-lab:
	@scripts/deps.sh lab

build:
	go build -o bin/cairn ./cmd/cairn
	go build -o bin/cairn-front ./cmd/cairn-front

# The lab: 3 Boulder sites + cluster DNS on loopback (./cairn-lab).
# Each phase says how long it took (deps per phase, then the build, then
# `lab up`, which builds Boulder the first time).
lab: deps-lab
	@s=$$SECONDS; $(MAKE) --no-print-directory build; echo "make lab: build cairn: $$((SECONDS - s)) s"
	@s=$$SECONDS; bin/cairn lab up; rc=$$?; echo "make lab: lab up: $$((SECONDS - s)) s"; exit $$rc

lab-down: build
	bin/cairn lab down

# Spec and PKI only, without starting anything.
quickstart: deps-lab build
	@if [ ! -f $(LAB_DIR)/cairn.yaml ]; then bin/cairn init --dir $(LAB_DIR); fi
	cd $(LAB_DIR) && ../bin/cairn validate && ../bin/cairn pki init && ../bin/cairn pki status

# Everything CI runs: lint, unit and integration tests (real SoftHSM,
# Boulder, MariaDB, Redis, BIND, Knot, certbot, lego), and the spec fuzzer.
# Three test packages at a time: every lab burns CPU while it waits (its
# probes, about a quarter of a core for 3 sites), so a fourth package
# beside them slowed all of them more than it ran (fresh clones: 16 m 00 s
# to 16 m 40 s with 3, 16 m 17 s to 18 m 56 s with 4, 17 m 51 s with 2,
# whose last packages ran alone). The longest packages start first, longest first
# (go test starts them in the order given, measured in make test), so
# none of them starts late and ends alone. Lint, the alert
# rules and the spec fuzzer (10 s here, one worker; `make fuzz`: 30 s)
# run beside the tests at the lowest priority (a session whose autogroup
# has nice 19: scripts/in-session.sh), on the CPU the tests leave idle;
# their output follows the tests' and any failure fails `make test`.
# Each test binary runs in a session of its own, none favoured (go test
# -exec): otherwise every test binary and what it runs (Ansible,
# Terraform, certbot, lego, the built-in clients) shares one session's
# part of the CPU against the labs' daemons (each in a session of its
# own), and the Ansible-bound tests took three times their time alone;
# with those two at nice -5 the labs' drills beside them lost real
# clients' renewals under load (one run in three). go test's own
# limit of 10 minutes per package is too tight for the nspawn hosts'
# test on 2 busy cores: 30.
SLOW_TESTS := internal/nspawntest provision drill upgrade failover lab
# The tests that start cairn (labs, hosts) copy bin/ (CAIRN_TEST_PREBUILT)
# instead of each linking its own.
test: deps build
	@side=$$(mktemp -d); \
	( scripts/in-session.sh 19 $(MAKE) --no-print-directory lint > $$side/lint 2>&1; echo $$? > $$side/lint.rc ) & \
	( scripts/in-session.sh 19 $(MAKE) --no-print-directory rules > $$side/rules 2>&1; echo $$? > $$side/rules.rc ) & \
	( scripts/in-session.sh 19 $(MAKE) --no-print-directory fuzz FUZZTIME=10s FUZZFLAGS=-parallel=1 > $$side/fuzz 2>&1; echo $$? > $$side/fuzz.rc ) & \
	CAIRN_TEST_PREBUILT=$(CURDIR)/bin go test -exec "$(CURDIR)/scripts/in-session.sh 0" -count=1 -p 3 -timeout 30m $(addprefix ./,$(SLOW_TESTS)) $$(go list ./... | grep -v -x -E '$(subst $() ,|,$(patsubst %,.*/%,$(SLOW_TESTS)))'); rc=$$?; \
	wait; for s in lint rules fuzz; do echo "--- make $$s:"; cat $$side/$$s; \
	  if [ "$$(cat $$side/$$s.rc)" != 0 ]; then echo "make $$s failed"; rc=1; fi; done; \
	rm -rf $$side; exit $$rc

# The alert rules users load (monitoring/): syntax and unit tests.
rules:
	promtool check rules monitoring/cairn-rules.yml
	cd monitoring && promtool test rules tests/*.yml

# Fast, hermetic loop for development: integration tests are skipped.
unit:
	go test -short ./...

lint:
	@scripts/check-tree.sh
	@fmt=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$fmt" ]; then echo "gofmt needed: $$fmt"; exit 1; fi
	go vet ./...
	$(TOOLS)/staticcheck ./...

fuzz:
	go test -run='^$$' -fuzz=FuzzParse -fuzztime=$(FUZZTIME) $(FUZZFLAGS) ./cluster/

# Performance figures of docs/lab.md: a fresh 3-site lab on its own addresses.
bench: deps-lab
	go test -run '^$$' -bench Lab -benchtime 1x -timeout 30m ./lab/

clean:
	rm -rf bin .tools
