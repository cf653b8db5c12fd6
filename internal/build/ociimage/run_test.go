package ociimage_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/client"
	"github.com/keybroker/keybroker/internal/fixtures/devenv"
	"github.com/keybroker/keybroker/internal/fixtures/testenv"
	"github.com/keybroker/keybroker/internal/fixtures/testenv/kbtest"
	"github.com/keybroker/keybroker/internal/fixtures/vaulttest"
	"github.com/keybroker/keybroker/providers"
)

func TestMain(m *testing.M) { testenv.Main(m, removeSharedBuild) }

// unpack writes an image's layers into dir, as a container runtime does.
func unpack(t *testing.T, l layout, manifest v1.Manifest, dir string) {
	t.Helper()
	for _, ld := range manifest.Layers {
		zr, err := gzip.NewReader(bytes.NewReader(l.blob(t, ld.Digest, nil)))
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(zr)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			target := filepath.Join(dir, filepath.Clean("/"+h.Name))
			switch h.Typeflag {
			case tar.TypeDir:
				if err := os.MkdirAll(target, os.FileMode(h.Mode&0o777)|os.ModeDir); err != nil {
					t.Fatal(err)
				}
			case tar.TypeReg:
				b, _ := io.ReadAll(tr)
				if err := os.WriteFile(target, b, os.FileMode(h.Mode&0o777)); err != nil {
					t.Fatal(err)
				}
			}
			// Modes with sticky bits and owners as the layer says.
			if err := os.Chmod(target, os.FileMode(h.Mode&0o777)|map[bool]os.FileMode{true: os.ModeSticky}[h.Mode&0o1000 != 0]); err != nil {
				t.Fatal(err)
			}
			if err := os.Lchown(target, h.Uid, h.Gid); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestTheImageServesResolvesUnderRunc runs the image with Debian's runc (an
// OCI runtime, no Docker engine) as a resolver replica over the real Vault
// and PostgreSQL: as user 65532, on a read-only root, with every
// capability dropped, its reader secret id mounted read-only; and resolves a
// key through it.
func TestTheImageServesResolvesUnderRunc(t *testing.T) {
	runc, err := exec.LookPath("runc")
	if err != nil {
		t.Fatal("runc is not installed: run scripts/tools.sh runc")
	}
	const pepper = "image-test-pepper-0123456789"
	g := kbtest.NewGround(t, kbtest.Options{Pepper: pepper})
	ctx := context.Background()
	key := "sk-proj-image-" + testenv.RandomID(t) + testenv.RandomID(t)
	if _, err := g.Broker.PutKey(ctx, broker.PutKeyRequest{Actor: broker.Actor{Subject: "test"}, Ref: broker.WorkspaceKey("ws1", "openai", broker.DefaultKeyID), Credential: providers.APIKey(key)}); err != nil {
		t.Fatal(err)
	}

	layoutBytes, _ := sharedImage(t)
	l := readLayout(t, layoutBytes)
	var index v1.IndexManifest
	if err := json.Unmarshal(l.files["index.json"], &index); err != nil {
		t.Fatal(err)
	}
	var manifest v1.Manifest
	l.blob(t, index.Manifests[0].Digest, &manifest)
	var cfg v1.ConfigFile
	l.blob(t, manifest.Config.Digest, &cfg)

	// The bundle: the unpacked image, and runc's default spec changed as a
	// Kubernetes pod with the chart's security context would run it.
	bundle := t.TempDir()
	if err := os.Chmod(bundle, 0o755); err != nil {
		t.Fatal(err)
	}
	rootfs := filepath.Join(bundle, "rootfs")
	unpack(t, l, manifest, rootfs)
	if out, err := exec.Command(runc, "spec", "--bundle", bundle).CombinedOutput(); err != nil {
		t.Fatalf("runc spec: %v %s", err, out)
	}
	secrets := filepath.Join(bundle, "secrets")
	if err := os.Mkdir(secrets, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(secrets, "reader-secret-id"), []byte(vaulttest.SecretID(t, g.Identities.AppRoleMount, g.Identities.ReaderRole)), 0o644); err != nil {
		t.Fatal(err)
	}
	vaultAddr, _ := testenv.Vault(t)
	addr := freeAddr(t)
	var spec map[string]any
	specPath := filepath.Join(bundle, "config.json")
	b, _ := os.ReadFile(specPath)
	if err := json.Unmarshal(b, &spec); err != nil {
		t.Fatal(err)
	}
	env := append(cfg.Config.Env, "DATABASE_URL="+testenv.RuntimeURL(t, g.DBURL), "VAULT_ADDR="+vaultAddr,
		"KEYBROKER_KV_MOUNT="+g.Identities.Mount, "KEYBROKER_VAULT_AUTH=approle", "KEYBROKER_APPROLE_MOUNT="+g.Identities.AppRoleMount,
		"KEYBROKER_FINGERPRINT_PEPPER="+pepper, "KEYBROKER_RESOLVER_KEYS="+kbtest.ResolverKeys, "KEYBROKER_ADMIN_TOKEN_KEYS="+kbtest.AdminTokenKeys, "KEYBROKER_MODE=resolver", "KEYBROKER_LISTEN_ADDR="+addr, "KEYBROKER_METRICS_ADDR=",
		"KEYBROKER_READER_ROLE_ID="+g.Identities.Result.RoleIDs[g.Identities.ReaderRole],
		"KEYBROKER_READER_SECRET_ID_FILE=/run/secrets/keybroker/reader-secret-id")
	var uid, gid int
	if _, err := fmt.Sscanf(cfg.Config.User, "%d:%d", &uid, &gid); err != nil {
		t.Fatalf("the image's user %q: %v", cfg.Config.User, err)
	}
	spec["process"] = map[string]any{
		"terminal": false, "user": map[string]any{"uid": uid, "gid": gid},
		"args": append(append([]string{}, cfg.Config.Entrypoint...), cfg.Config.Cmd...),
		"env":  env, "cwd": cfg.Config.WorkingDir, "noNewPrivileges": true,
		"capabilities": map[string]any{"bounding": []string{}, "effective": []string{}, "permitted": []string{}},
	}
	spec["root"] = map[string]any{"path": "rootfs", "readonly": true}
	linux := spec["linux"].(map[string]any)
	var namespaces []any
	for _, ns := range linux["namespaces"].([]any) {
		if ns.(map[string]any)["type"] != "network" { // the host's loopback: Vault and PostgreSQL are there
			namespaces = append(namespaces, ns)
		}
	}
	linux["namespaces"] = namespaces
	spec["mounts"] = append(spec["mounts"].([]any), map[string]any{"destination": "/run/secrets/keybroker", "type": "bind", "source": secrets,
		"options": []string{"rbind", "ro"}}, map[string]any{"destination": "/etc/resolv.conf", "type": "bind", "source": "/etc/resolv.conf", "options": []string{"rbind", "ro"}})
	b, _ = json.Marshal(spec)
	if err := os.WriteFile(specPath, b, 0o644); err != nil {
		t.Fatal(err)
	}

	id := "keybroker-test-" + testenv.RandomID(t)
	logs := &testenv.SyncBuffer{}
	run := exec.Command(runc, "run", "--bundle", bundle, id)
	run.Stdout, run.Stderr = logs, logs
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = exec.Command(runc, "kill", id, "TERM").Run()
		done := make(chan struct{})
		go func() { _ = run.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = exec.Command(runc, "kill", id, "KILL").Run()
			_ = run.Process.Signal(syscall.SIGKILL)
			<-done
		}
		_ = exec.Command(runc, "delete", "--force", id).Run()
	})
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := devenv.WaitHTTP(wctx, "http://"+addr+"/readyz", nil, nil); err != nil {
		t.Fatalf("the container does not get ready: %v\n%s", err, logs.String())
	}
	resolver, err := client.New(client.Config{Address: "http://" + addr, Token: g.ResolverToken})
	if err != nil {
		t.Fatal(err)
	}
	r, err := resolver.Resolve(ctx, "ws1", "openai")
	if err != nil || r.APIKey != key {
		t.Fatalf("resolve through the container: %v\n%s", err, logs.String())
	}
	// The process in the container is the image's user, not root.
	ps, err := exec.Command(runc, "ps", "--format", "json", id).Output()
	var pids []int
	if err != nil || json.Unmarshal(ps, &pids) != nil || len(pids) == 0 {
		t.Fatalf("runc ps: %v %s", err, ps)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pids[0]))
	if err != nil || !strings.Contains(string(status), fmt.Sprintf("\nUid:\t%d\t%d\t%d\t%d\n", uid, uid, uid, uid)) {
		t.Fatalf("the container's process is not user %d: %v\n%s", uid, err, status)
	}
	if !strings.Contains(string(status), "\nCapEff:\t0000000000000000\n") || !strings.Contains(string(status), "\nNoNewPrivs:\t1\n") {
		t.Fatalf("the container's process keeps capabilities or may gain privileges:\n%s", status)
	}
	if strings.Contains(logs.String(), key) {
		t.Fatal("the container's logs hold the key")
	}
}
