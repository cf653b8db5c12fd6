#!/usr/bin/env bash
# tools.sh — build (or reuse) the real servers and CLIs keybroker is tested
# against: HashiCorp Vault, Terraform, OpenTofu; and make sure PostgreSQL's
# server binaries are installed.
#
# Why build from source: the machines this project runs on reach only the Go
# module proxy, Debian and npm. Release binaries and container images cannot be
# downloaded, so every tool comes out of the Go module proxy as source.
#
# Where: ${KEYBROKER_TOOLS_DIR:-$HOME/.cache/keybroker/tools}/bin. CI runs in a
# fresh clone every time; a folder inside the checkout would be rebuilt on every
# run, this one (and Go's own build cache) survives on the same machine. A tool
# is rebuilt only when its binary is missing or reports another version.
#
# Usage: scripts/tools.sh [all|vault|terraform|tofu|postgres|chromium|wrk|runc|axe|helm|linters]...   (default: all)
# Prints nothing on stdout but the tools folder's bin path when asked with
# `scripts/tools.sh path`.
set -euo pipefail

TOOLS_DIR="${KEYBROKER_TOOLS_DIR:-$HOME/.cache/keybroker/tools}"
BIN="$TOOLS_DIR/bin"
BUILD="$TOOLS_DIR/build"

VAULT_VERSION="1.14.0"     # last Vault release under MPL-2.0
VAULT_SDK_VERSION="0.9.2"  # nearest published SDK to the one 1.14.0 was cut with
TERRAFORM_VERSION="1.5.7"  # last Terraform release under MPL-2.0
TOFU_VERSION="1.12.6"      # OpenTofu (MPL-2.0); has write-only attributes
HELM_VERSION="v3.22.0"     # helm (Apache-2.0): lints and renders deploy/helm/keybroker in its tests
AXE_VERSION="4.14.1"       # axe-core (MPL-2.0), the accessibility checks the page's browser tests run

log() { echo "tools: $*" >&2; }

# has_version BIN PATTERN: BIN exists and its `version` output has a line
# matching PATTERN. The output is captured first: with pipefail, `grep -q`
# closing the pipe early would fail the pipeline. CLI configuration warnings
# (a TF_CLI_CONFIG_FILE that does not exist) are ignored.
has_version() {
	[ -x "$1" ] || return 1
	local out
	out=$(TF_CLI_CONFIG_FILE=/dev/null "$1" version 2>/dev/null) || true
	grep -q "$2" <<<"$out"
}

# modcopy MODULE@VERSION DEST: download a module's source from the proxy and
# copy it to DEST as a writable tree (the module cache is read-only).
modcopy() {
	local mod="$1" dest="$2" dir
	dir=$(cd / && GOFLAGS=-mod=mod go mod download -json "$mod" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	if [ -z "$dir" ] || [ ! -d "$dir" ]; then
		log "could not download $mod from the Go module proxy"
		return 1
	fi
	rm -rf "$dest"
	mkdir -p "$(dirname "$dest")"
	cp -r "$dir" "$dest"
	chmod -R u+w "$dest"
}

build_vault() {
	if has_version "$BIN/vault" "^Vault v$VAULT_VERSION\b"; then
		log "vault v$VAULT_VERSION already built ($BIN/vault)"
		return
	fi
	log "building vault v$VAULT_VERSION from module source (10-13 min cold on 2 cores, ~1.5 min with a warm Go build cache)"
	local src="$BUILD/vault-$VAULT_VERSION"
	modcopy "github.com/hashicorp/vault@v$VAULT_VERSION" "$src"
	# The root go.mod replaces github.com/hashicorp/vault/{api,sdk,...} with
	# ./api, ./sdk, ... — nested modules that the proxy's module zip leaves
	# out. That is why `go install github.com/hashicorp/vault@v1.14.0` fails.
	# Drop those replace lines so the published modules are used instead.
	sed -i -E '/^replace github\.com\/hashicorp\/vault\/[A-Za-z0-9_/-]+ => \.\//d' "$src/go.mod"
	# The SDK v1.14.0 was cut with was never published. sdk v0.9.2 has all
	# it needs, plus one start-up check added after the cut: framework's
	# init()-time validation panics with "defines a CreateOperation but no
	# ExistenceCheck" on some of 1.14.0's system paths. Use a local copy of
	# v0.9.2 with that check removed.
	modcopy "github.com/hashicorp/vault/sdk@v$VAULT_SDK_VERSION" "$src/sdk-local"
	# The block starts at its comment and ends at the first line that is just
	# two tabs and a brace (the `if p.ExistenceCheck == nil {` block's close).
	local backend="$src/sdk-local/framework/backend.go"
	sed -i '/Detect the coding error of attempting to define a CreateOperation/,/^\t\t}$/d' "$backend"
	if grep -q "defines a CreateOperation but no ExistenceCheck" "$backend"; then
		log "could not remove the ExistenceCheck start-up check from $backend"
		return 1
	fi
	echo "replace github.com/hashicorp/vault/sdk => ./sdk-local" >>"$src/go.mod"
	mkdir -p "$BIN"
	(cd "$src" && GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "$BIN/vault.tmp" .)
	mv "$BIN/vault.tmp" "$BIN/vault"
	rm -rf "$src"
	"$BIN/vault" version >&2
}

build_terraform() {
	if has_version "$BIN/terraform" "^Terraform v$TERRAFORM_VERSION\b"; then
		log "terraform v$TERRAFORM_VERSION already built ($BIN/terraform)"
		return
	fi
	log "building terraform v$TERRAFORM_VERSION (2-3 min cold)"
	mkdir -p "$BIN"
	GOBIN="$BIN" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" "github.com/hashicorp/terraform@v$TERRAFORM_VERSION"
	"$BIN/terraform" version >&2
}

build_tofu() {
	if has_version "$BIN/tofu" "^OpenTofu v$TOFU_VERSION\b"; then
		log "tofu v$TOFU_VERSION already built ($BIN/tofu)"
		return
	fi
	log "building tofu v$TOFU_VERSION (2-3 min cold)"
	# go install refuses OpenTofu for the replace directive in its go.mod;
	# build inside the module's own source folder instead (read-only is fine:
	# -mod=readonly writes nothing there).
	local dir
	dir=$(cd / && go mod download -json "github.com/opentofu/opentofu@v$TOFU_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	mkdir -p "$BIN"
	(cd "$dir" && CGO_ENABLED=0 go build -mod=readonly -trimpath \
		-ldflags "-s -w -X github.com/opentofu/opentofu/version.dev=no" -o "$BIN/tofu.tmp" ./cmd/tofu)
	mv "$BIN/tofu.tmp" "$BIN/tofu"
	"$BIN/tofu" version >&2
}

# apt_install PACKAGE: installs a Debian package (as root, or with sudo).
apt_install() {
	local sudo=""
	[ "$(id -u)" = 0 ] || sudo="sudo"
	$sudo apt-get update -qq >&2
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$1" >&2
}

# Debian's PostgreSQL 15 server, started by the tests and `keybroker dev`.
STATICCHECK_VERSION="v0.8.2"     # honnef.co/go/tools (MIT): make lint
TFPLUGINDOCS_VERSION="v0.25.0"   # terraform-plugin-docs (MPL-2.0): make generate, make lint

# build_gotool NAME MODULE/CMD VERSION: go install a Go command into $BIN,
# unless the binary there was built from that version (its build info says).
build_gotool() {
	local name="$1" pkg="$2" version="$3"
	if [ -x "$BIN/$name" ] && go version -m "$BIN/$name" 2>/dev/null | grep -q "[[:space:]]mod[[:space:]].*[[:space:]]$version\b"; then
		log "$name $version already built ($BIN/$name)"
		return
	fi
	log "building $name $version from module source"
	mkdir -p "$BIN"
	(cd / && GOBIN="$BIN" GOFLAGS=-mod=mod go install "$pkg@$version")
}

ensure_postgres() {
	if command -v initdb >/dev/null 2>&1 || [ -x /usr/lib/postgresql/15/bin/initdb ]; then
		log "postgresql server binaries present"
		return
	fi
	log "installing Debian's postgresql (15)"
	apt_install postgresql
}

# ensure_command COMMAND: installs the Debian package of that name when the
# command is missing. Chromium drives the admin page's browser tests; wrk is
# the HTTP load generator of `make bench` (and of its test); runc (an OCI
# runtime) runs the container image in its test, without a Docker engine.
ensure_command() {
	if command -v "$1" >/dev/null 2>&1; then
		log "$1 present"
		return
	fi
	log "installing Debian's $1"
	apt_install "$1"
}

# install_axe: axe-core from the npm registry, into the tools folder (the
# browser tests read $TOOLS_DIR/npm/node_modules/axe-core/axe.min.js, or
# KEYBROKER_AXE_JS).
install_axe() {
	local js="$TOOLS_DIR/npm/node_modules/axe-core/axe.min.js" have=""
	[ -f "$TOOLS_DIR/npm/node_modules/axe-core/package.json" ] &&
		have=$(sed -n 's/^[[:space:]]*"version": "\(.*\)",$/\1/p' "$TOOLS_DIR/npm/node_modules/axe-core/package.json" | head -1)
	if [ -f "$js" ] && [ "$have" = "$AXE_VERSION" ]; then
		log "axe-core $AXE_VERSION present ($js)"
		return
	fi
	command -v npm >/dev/null 2>&1 || apt_install npm
	log "installing axe-core $AXE_VERSION from the npm registry"
	mkdir -p "$TOOLS_DIR/npm"
	npm install --silent --no-audit --no-fund --prefix "$TOOLS_DIR/npm" "axe-core@$AXE_VERSION" >&2
}

build_helm() {
	build_gotool helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION"
}

build_linters() {
	build_gotool staticcheck honnef.co/go/tools/cmd/staticcheck "$STATICCHECK_VERSION"
	build_gotool tfplugindocs github.com/hashicorp/terraform-plugin-docs/cmd/tfplugindocs "$TFPLUGINDOCS_VERSION"
}

[ $# -gt 0 ] || set -- all
for what in "$@"; do
	case "$what" in
	all) ensure_postgres; ensure_command chromium; ensure_command wrk; ensure_command runc; install_axe; build_vault; build_terraform; build_tofu; build_helm; build_linters ;;
	linters) build_linters ;;
	axe) install_axe ;;
	helm) build_helm ;;
	chromium | wrk | runc) ensure_command "$what" ;;
	vault) build_vault ;;
	terraform) build_terraform ;;
	tofu) build_tofu ;;
	postgres) ensure_postgres ;;
	path) echo "$BIN" ;;
	*) log "unknown tool: $what"; exit 2 ;;
	esac
done
