package ociimage_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/keybroker/keybroker/internal/build/ociimage"
	"github.com/keybroker/keybroker/internal/runtime/buildinfo"
)

// The tests share one static keybroker binary, stamped as make image
// stamps it, and one image of it: building them is most of what the tests
// cost (a cold `go build` of keybroker), so it is done once per test
// binary, by whichever test needs it first.
var (
	testCreated = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	testCommit  = "0123456789abcdef0123456789abcdef01234567"
	testVersion = "v9.9.9-test"
	// testOptions are the image's inputs but the binary (buildImage sets it).
	testOptions = ociimage.Options{CACerts: "/etc/ssl/certs/ca-certificates.crt", Version: testVersion, Revision: testCommit,
		Created: testCreated, Source: "https://github.com/keybroker/keybroker", Architecture: runtime.GOARCH, RefName: "keybroker:" + testVersion}

	buildOnce  sync.Once
	builtBin   string
	buildErr   error
	buildDir   string
	imageOnce  sync.Once
	imageBytes []byte
	imageHash  v1.Hash
	imageErr   error
)

// removeSharedBuild removes the shared binary's folder after the run.
func removeSharedBuild() error {
	if buildDir == "" {
		return nil
	}
	return os.RemoveAll(buildDir)
}

// sharedBinary builds the binary the tests share, once.
func sharedBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if buildDir, buildErr = os.MkdirTemp("", "keybroker-ociimage-test-"); buildErr != nil {
			return
		}
		builtBin = filepath.Join(buildDir, "keybroker")
		pkg := "github.com/keybroker/keybroker/internal/runtime/buildinfo"
		cmd := exec.Command("go", "build", "-trimpath", "-o", builtBin,
			"-ldflags", "-s -w -buildid= -X "+pkg+".version="+testVersion+" -X "+pkg+".commit="+testCommit+" -X "+pkg+".date="+testCreated.Format(time.RFC3339),
			"github.com/keybroker/keybroker/cmd/keybroker")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// buildImage builds the image of the shared binary and writes its layout.
func buildImage(t *testing.T) ([]byte, v1.Hash, error) {
	t.Helper()
	opts := testOptions
	opts.Binary = sharedBinary(t)
	img, err := ociimage.Build(opts)
	if err != nil {
		return nil, v1.Hash{}, err
	}
	var buf bytes.Buffer
	if err := ociimage.WriteLayout(&buf, img, opts.RefName, opts.Created); err != nil {
		return nil, v1.Hash{}, err
	}
	d, err := img.Digest()
	return buf.Bytes(), d, err
}

// sharedImage is the image the tests share (its layout tarball and
// digest), built once.
func sharedImage(t *testing.T) ([]byte, v1.Hash) {
	t.Helper()
	sharedBinary(t) // fails here, not inside the Once, when it cannot be built
	imageOnce.Do(func() { imageBytes, imageHash, imageErr = buildImage(t) })
	if imageErr != nil {
		t.Fatal(imageErr)
	}
	return imageBytes, imageHash
}

// layout is an OCI layout tarball, read back.
type layout struct {
	files map[string][]byte
}

func readLayout(t *testing.T, b []byte) layout {
	t.Helper()
	l := layout{files: map[string][]byte{}}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return l
		}
		if err != nil {
			t.Fatalf("read the layout tarball: %v", err)
		}
		body, _ := io.ReadAll(tr)
		l.files[h.Name] = body
	}
}

func (l layout) blob(t *testing.T, d v1.Hash, v any) []byte {
	t.Helper()
	b, ok := l.files["blobs/sha256/"+d.Hex]
	if !ok {
		t.Fatalf("the layout has no blob %s", d)
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("blob %s: %v", d, err)
		}
	}
	return b
}

// entries lists a gzipped layer's tar entries with their bodies.
func entries(t *testing.T, gz []byte) map[string]*tar.Header {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatalf("a layer is not gzip: %v", err)
	}
	out := map[string]*tar.Header{}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("read a layer: %v", err)
		}
		out[strings.TrimSuffix(h.Name, "/")] = h
	}
}

func extract(t *testing.T, gz []byte, name string) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("%s is not in the layer: %v", name, err)
		}
		if h.Name == name {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
}

func TestTheImageIsReproducibleNonRootShellLessAndItsBinaryRuns(t *testing.T) {
	created, commit := testCreated, testCommit
	first, digest := sharedImage(t)
	second, again, err := buildImage(t)
	if err != nil {
		t.Fatal(err)
	}
	if digest != again || !bytes.Equal(first, second) {
		t.Fatalf("two builds differ: %s and %s", digest, again)
	}
	t.Logf("image digest %s (%d bytes)", digest, len(first))

	l := readLayout(t, first)
	if string(l.files["oci-layout"]) != `{"imageLayoutVersion":"1.0.0"}` {
		t.Fatalf("oci-layout: %s", l.files["oci-layout"])
	}
	var index v1.IndexManifest
	if err := json.Unmarshal(l.files["index.json"], &index); err != nil || len(index.Manifests) != 1 ||
		index.Manifests[0].Digest != digest || index.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != "keybroker:v9.9.9-test" {
		t.Fatalf("index.json: %s %v", l.files["index.json"], err)
	}
	var manifest v1.Manifest
	l.blob(t, digest, &manifest)
	var cfg v1.ConfigFile
	l.blob(t, manifest.Config.Digest, &cfg)
	c := cfg.Config
	if c.User != "65532:65532" || strings.Join(c.Entrypoint, " ") != ociimage.BinaryPath || strings.Join(c.Cmd, " ") != "serve" ||
		cfg.OS != "linux" || cfg.Architecture != runtime.GOARCH || !cfg.Created.Equal(created) {
		t.Fatalf("config: %+v", cfg)
	}
	for k, want := range map[string]string{
		"org.opencontainers.image.version": "v9.9.9-test", "org.opencontainers.image.revision": commit,
		"org.opencontainers.image.created": "2026-12-01T10:00:00Z", "org.opencontainers.image.title": "keybroker",
		"org.opencontainers.image.source":   "https://github.com/keybroker/keybroker",
		"org.opencontainers.image.licenses": "Apache-2.0",
	} {
		if c.Labels[k] != want {
			t.Fatalf("label %s = %q, want %q", k, c.Labels[k], want)
		}
	}

	// Every file of every layer: no shell, nothing owned by the user but
	// its home, every time the commit's.
	all := map[string]*tar.Header{}
	var app []byte
	for _, ld := range manifest.Layers {
		body := l.blob(t, ld.Digest, nil)
		for name, h := range entries(t, body) {
			all[name] = h
			if !h.ModTime.Equal(created) {
				t.Fatalf("%s has time %s, not the commit's", name, h.ModTime)
			}
			if name == strings.TrimPrefix(ociimage.BinaryPath, "/") {
				app = body
			}
		}
	}
	for name, h := range all {
		base := path.Base(name)
		if base == "sh" || base == "bash" || base == "ash" || base == "dash" || base == "busybox" || strings.HasPrefix(name, "bin") {
			t.Fatalf("the image holds %s: it must have no shell", name)
		}
		if h.Uid != 0 && !strings.HasPrefix(name, "home/nonroot") {
			t.Fatalf("%s is owned by %d", name, h.Uid)
		}
	}
	for _, want := range []string{"etc/passwd", "etc/group", "etc/ssl/certs/ca-certificates.crt", "usr/local/bin/keybroker", "home/nonroot", "tmp"} {
		if all[want] == nil {
			t.Fatalf("the image lacks %s", want)
		}
	}
	if all["usr/local/bin/keybroker"].Mode&0o111 == 0 {
		t.Fatal("the binary is not executable")
	}

	// The binary of the image runs, and says the version it was stamped with.
	extracted := filepath.Join(t.TempDir(), "keybroker")
	if err := os.WriteFile(extracted, extract(t, app, "usr/local/bin/keybroker"), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(extracted, "version", "--json").Output()
	if err != nil {
		t.Fatalf("keybroker version from the image: %v", err)
	}
	var bi buildinfo.Info
	if err := json.Unmarshal(out, &bi); err != nil || bi.Version != "v9.9.9-test" || bi.Commit != commit || bi.Date != "2026-12-01T10:00:00Z" {
		t.Fatalf("keybroker version --json: %s %v", out, err)
	}
	if text, _ := exec.Command(extracted, "version").Output(); !strings.HasPrefix(string(text), "keybroker v9.9.9-test (commit 0123456789ab, committed 2026-12-01T10:00:00Z, go") {
		t.Fatalf("keybroker version: %s", text)
	}
}

// The Dockerfile (for Docker users) and make image (here) describe the same
// image: same user, entry point, command, working folder, ports and labels.
func TestTheDockerfileMatchesTheImageMakeImageBuilds(t *testing.T) {
	df, err := os.ReadFile("../../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	final := string(df[strings.LastIndex(string(df), "FROM scratch"):])
	bin := filepath.Join(t.TempDir(), "keybroker")
	if err := os.WriteFile(bin, []byte("not a real binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	img, err := ociimage.Build(ociimage.Options{Binary: bin, CACerts: "/etc/ssl/certs/ca-certificates.crt", Version: "v1", Created: time.Unix(0, 0)})
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	entry, _ := json.Marshal(c.Entrypoint)
	cmd, _ := json.Marshal(c.Cmd)
	want := []string{
		"USER " + c.User, "WORKDIR " + c.WorkingDir, "ENTRYPOINT " + strings.ReplaceAll(string(entry), ",", ", "),
		"CMD " + string(cmd), "EXPOSE 8080/tcp 9464/tcp", "STOPSIGNAL " + c.StopSignal, "ENV " + strings.Join(c.Env, " "),
	}
	for _, w := range want {
		if !strings.Contains(final, w+"\n") {
			t.Fatalf("the Dockerfile's final stage lacks %q", w)
		}
	}
	other := ociimage.Labels(ociimage.Options{Source: "y", Version: "v2", Revision: "r", Created: time.Unix(1, 0)})
	for k, v := range ociimage.Labels(ociimage.Options{Source: "x"}) {
		if !strings.Contains(final, k+"=") {
			t.Fatalf("the Dockerfile lacks the label %s", k)
		}
		// A label no option changes (title, description, licenses) has
		// the same value in both.
		if v == other[k] && !strings.Contains(final, k+"="+strconv.Quote(v)) {
			t.Fatalf("the Dockerfile's label %s is not %q", k, v)
		}
	}
	if len(c.ExposedPorts) != 2 {
		t.Fatalf("ports: %v", c.ExposedPorts)
	}
}
