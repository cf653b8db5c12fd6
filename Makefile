# keybroker — the two commands a newcomer needs:
#   make dev    run keybroker with its own local Vault and PostgreSQL
#   make test   build or reuse the test tools, check formatting and vet, run every test
#
# Tools (Vault, Terraform, OpenTofu) are built from source into
# $(KEYBROKER_TOOLS_DIR)/bin, outside the checkout, and reused.

export KEYBROKER_TOOLS_DIR ?= $(HOME)/.cache/keybroker/tools
GO ?= go
GOTEST_FLAGS ?= -race -count=1 -timeout 45m

.PHONY: all build tools dev test lint fmt bench

all: build

build:
	$(GO) build -o bin/keybroker ./cmd/keybroker

tools:
	scripts/tools.sh all

dev:
	scripts/tools.sh postgres vault
	$(GO) run ./cmd/keybroker dev

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

test: tools lint
	$(GO) test $(GOTEST_FLAGS) ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

# The benchmark against the alternatives (BENCHMARKS.md); flags via BENCH_FLAGS.
bench:
	scripts/tools.sh postgres vault wrk
	$(GO) run ./cmd/keybroker-bench $(BENCH_FLAGS)
