# keybroker — the two commands a newcomer needs:
#   make dev    run keybroker with its own local Vault and PostgreSQL
#   make test   build or reuse the test tools, lint, run every test
#   make test-unit   the tests that need no server, in seconds
#
# Tools (Vault, Terraform, OpenTofu) are built from source into
# $(KEYBROKER_TOOLS_DIR)/bin, outside the checkout, and reused.

export KEYBROKER_TOOLS_DIR ?= $(HOME)/.cache/keybroker/tools
GO ?= go
GOTEST_FLAGS ?= -race -count=1 -timeout 45m
TOOLS_BIN = $(KEYBROKER_TOOLS_DIR)/bin
# The Terraform provider's reference docs, generated from its schema and
# terraform/examples (terraform-plugin-docs; it finds Terraform on PATH).
TFPLUGINDOCS = PATH="$(TOOLS_BIN):$$PATH" $(TOOLS_BIN)/tfplugindocs generate --provider-name keybroker \
	--provider-dir cmd/terraform-provider-keybroker --examples-dir ../../terraform/examples \
	--website-source-dir ../../terraform/templates
# What a build says about itself (internal/runtime/buildinfo): the version from the
# newest v* tag (v2.0.0-dev before the first), the commit, and the commit's
# time, never the clock, so that two builds of a commit are the same bytes.
VERSION ?= $(shell git describe --tags --match 'v*' --dirty 2>/dev/null || echo v2.0.0-dev)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null)
COMMIT_DATE ?= $(shell TZ=UTC git log -1 --format=%cd --date=format-local:%Y-%m-%dT%H:%M:%SZ 2>/dev/null)
BUILDINFO = github.com/keybroker/keybroker/internal/runtime/buildinfo
LDFLAGS = -s -w -buildid= -X $(BUILDINFO).version=$(VERSION) -X $(BUILDINFO).commit=$(COMMIT) -X $(BUILDINFO).date=$(COMMIT_DATE)
# Packages whose tests need no server (no Vault, PostgreSQL, CLI or browser).
UNIT_PKGS = ./ids/ ./policies/ ./internal/app/ ./internal/runtime/tlsfiles/ ./internal/runtime/keyring/ ./internal/runtime/proxytoken/ ./client/

.PHONY: all build image chart tools dev test test-compat test-unit lint generate fmt bench screenshots

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/keybroker ./cmd/keybroker

# The container image as an OCI layout tarball (bin/keybroker-image.tar),
# built without a Docker engine: a static linux/amd64 binary, Debian's CA
# certificates, a non-root user, no shell. It prints the digest; building a
# commit twice gives the same one. `docker load -i` or `podman load -i` it;
# with Docker, `docker build .` (Dockerfile) makes the same contents.
image:
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/linux-amd64/keybroker ./cmd/keybroker
	$(GO) run ./cmd/keybroker-image -binary bin/linux-amd64/keybroker -version $(VERSION) -revision $(COMMIT) \
		-created $(COMMIT_DATE) -source https://github.com/keybroker/keybroker -out bin/keybroker-image.tar

tools:
	scripts/tools.sh all

dev:
	scripts/tools.sh postgres vault
	$(GO) run ./cmd/keybroker dev

# gofmt, go vet, staticcheck (staticcheck.conf), go.mod tidy, and generated
# docs and the OpenAPI document not stale (they are regenerated, and must
# then equal what git has). vet and `keybroker docs` compile as make build
# and make image do (CGO_ENABLED=0, -trimpath), so that the image tests'
# static build (internal/build/ociimage) finds the whole tree compiled and
# only links.
lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change:"; echo "$$unformatted"; exit 1; fi
	CGO_ENABLED=0 $(GO) vet -trimpath ./...
	$(TOOLS_BIN)/staticcheck ./...
	$(GO) mod tidy -diff
	@$(TFPLUGINDOCS) --rendered-website-dir ../../terraform/docs >/dev/null
	@CGO_ENABLED=0 $(GO) run -trimpath ./cmd/keybroker docs > docs/reference/flags.md
	@CGO_ENABLED=0 $(GO) run -trimpath ./cmd/keybroker docs providers > docs/reference/providers.md
	@CGO_ENABLED=0 $(GO) run ./cmd/keybroker-openapi > handlers/openapi.json
	@if [ -n "$$(git status --porcelain terraform/docs docs/reference handlers/openapi.json)" ]; then git status --short terraform/docs docs/reference handlers/openapi.json; \
		echo "generated docs were stale (regenerated now: review and commit them)"; exit 1; fi

# Regenerate what is generated: the Terraform provider's docs, the
# settings reference (docs/reference/flags.md, from the commands' flags), the
# providers reference (docs/reference/providers.md, from the catalogue)
# and the OpenAPI document (handlers/openapi.json, from the route table and
# the wire types: docs/openapi.md).
generate:
	scripts/tools.sh terraform linters
	$(TFPLUGINDOCS) --rendered-website-dir ../../terraform/docs
	$(GO) run ./cmd/keybroker docs > docs/reference/flags.md
	$(GO) run ./cmd/keybroker docs providers > docs/reference/providers.md
	$(GO) run ./cmd/keybroker-openapi > handlers/openapi.json

# Refresh the admin page's screenshots in docs/ui (docs/ui.md shows them):
# the browser tests save them there instead of ui-screenshots/.
screenshots:
	scripts/tools.sh postgres vault chromium axe
	KEYBROKER_SCREENSHOTS=docs/ui $(GO) test -count=1 -run 'TestAdminPage.*InARealBrowser|TestUISignIn.*InARealBrowser' ./handlers

# The Helm chart as bin/keybroker-<version>.tgz, its appVersion stamped
# with this build's version (the image's tag).
chart:
	scripts/tools.sh helm
	$(TOOLS_BIN)/helm lint --strict deploy/helm/keybroker --set tls.enabled=true --set tls.secretName=keybroker-tls
	$(TOOLS_BIN)/helm package deploy/helm/keybroker --app-version $(VERSION) --destination bin

# The integration tests that touch Vault, again, against another Vault (or
# OpenBao) binary: make test-compat VAULT_BIN=/path/to/vault. Vault releases
# after 1.14 cannot be built from the Go module proxy (docs/deploy.md says
# why), so this machine's CI does not run it.
COMPAT_PKGS = ./vault/ ./broker/ ./handlers/ ./cmd/keybroker/ ./terraform/ ./internal/fixtures/testenv/ ./internal/runtime/webhook/ ./internal/runtime/telemetry/ ./internal/build/ociimage/
test-compat:
	@if [ -z "$(VAULT_BIN)" ]; then echo "make test-compat VAULT_BIN=/path/to/vault: the Vault (or OpenBao) binary to test against"; exit 2; fi
	scripts/tools.sh postgres terraform tofu chromium runc axe
	KEYBROKER_VAULT_BIN=$(VAULT_BIN) $(GO) test $(GOTEST_FLAGS) $(COMPAT_PKGS)

test-unit:
	$(GO) test -count=1 $(UNIT_PKGS)

test: tools lint
	$(GO) test $(GOTEST_FLAGS) ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

# The benchmark against the alternatives (docs/benchmarks.md); flags via BENCH_FLAGS.
bench:
	scripts/tools.sh postgres vault wrk
	$(GO) run ./cmd/keybroker-bench $(BENCH_FLAGS)
