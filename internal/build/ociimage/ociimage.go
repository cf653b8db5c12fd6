// Package ociimage owns keybroker's container image: what goes into it (the
// static binary, CA certificates, a non-root user, no shell), its
// configuration and labels, and writing it as an OCI image layout tarball
// without a Docker engine. The same inputs give the same bytes (and so the
// same digest): every time in the image is the commit's, the layers' tar
// entries are sorted with fixed owners, and gzip carries no name or time.
package ociimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Where things are in the image.
const (
	BinaryPath = "/usr/local/bin/keybroker"
	CACertPath = "/etc/ssl/certs/ca-certificates.crt"
	// UID and GID of the image's user, "nonroot" (distroless's numbers).
	UID = 65532
	GID = 65532
)

// Options are the inputs of an image.
type Options struct {
	// Binary is the static keybroker binary (CGO_ENABLED=0) to put in.
	Binary string
	// CACerts is a PEM bundle of trusted CAs (Debian's
	// /etc/ssl/certs/ca-certificates.crt).
	CACerts string
	// Version, Revision and Created label the image; Created (the commit's
	// time) is also every time inside it.
	Version  string
	Revision string
	Created  time.Time
	// Source is the repository's address (the source label).
	Source string
	// Architecture is GOARCH of the binary (default amd64).
	Architecture string
	// RefName names the image in the layout's index (e.g.
	// keybroker:v2.0.0).
	RefName string
}

// file is one entry of a layer.
type file struct {
	name string // without the leading slash
	mode int64
	uid  int
	gid  int
	dir  bool
	body []byte
}

// Build assembles the image.
func Build(o Options) (v1.Image, error) {
	if o.Architecture == "" {
		o.Architecture = "amd64"
	}
	bin, err := os.ReadFile(o.Binary)
	if err != nil {
		return nil, fmt.Errorf("read the binary: %w", err)
	}
	certs, err := os.ReadFile(o.CACerts)
	if err != nil {
		return nil, fmt.Errorf("read the CA certificates: %w", err)
	}
	created := o.Created.UTC().Truncate(time.Second)
	// Two layers: what rarely changes (users, certificates), then the binary.
	base := []file{
		{name: "etc", mode: 0o755, dir: true},
		{name: "etc/passwd", mode: 0o644, body: []byte(fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", UID, GID))},
		{name: "etc/group", mode: 0o644, body: []byte(fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", GID))},
		{name: "etc/ssl", mode: 0o755, dir: true},
		{name: "etc/ssl/certs", mode: 0o755, dir: true},
		{name: CACertPath[1:], mode: 0o644, body: certs},
		{name: "home", mode: 0o755, dir: true},
		{name: "home/nonroot", mode: 0o700, uid: UID, gid: GID, dir: true},
		{name: "tmp", mode: 0o1777, dir: true},
	}
	app := []file{
		{name: "usr", mode: 0o755, dir: true},
		{name: "usr/local", mode: 0o755, dir: true},
		{name: "usr/local/bin", mode: 0o755, dir: true},
		{name: BinaryPath[1:], mode: 0o755, body: bin},
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	for _, l := range []struct {
		files []file
		by    string
	}{{base, "users, CA certificates"}, {app, "keybroker " + o.Version}} {
		layer, err := newLayer(l.files, created)
		if err != nil {
			return nil, err
		}
		img, err = mutate.Append(img, mutate.Addendum{Layer: layer, MediaType: types.OCILayer,
			History: v1.History{Created: v1.Time{Time: created}, CreatedBy: l.by}})
		if err != nil {
			return nil, fmt.Errorf("add a layer: %w", err)
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("read the image config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS, cf.Created = o.Architecture, "linux", v1.Time{Time: created}
	cf.Config = v1.Config{
		User:         fmt.Sprintf("%d:%d", UID, GID),
		Entrypoint:   []string{BinaryPath},
		Cmd:          []string{"serve"},
		WorkingDir:   "/home/nonroot",
		Env:          []string{"SSL_CERT_FILE=" + CACertPath, "HOME=/home/nonroot"},
		ExposedPorts: map[string]struct{}{"8080/tcp": {}, "9464/tcp": {}},
		StopSignal:   "SIGTERM",
		Labels:       Labels(o),
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("set the image config: %w", err)
	}
	return img, nil
}

// Labels are the image's OCI annotations (org.opencontainers.image.*).
func Labels(o Options) map[string]string {
	l := map[string]string{
		"org.opencontainers.image.title":       "keybroker",
		"org.opencontainers.image.description": "Vault-backed secrets broker for bring-your-own-key API keys",
		"org.opencontainers.image.licenses":    "Apache-2.0", // the LICENSE file at the repository's root
		"org.opencontainers.image.version":     o.Version,
		"org.opencontainers.image.revision":    o.Revision,
		"org.opencontainers.image.created":     o.Created.UTC().Format(time.RFC3339),
	}
	if o.Source != "" {
		l["org.opencontainers.image.source"] = o.Source
	}
	return l
}

// newLayer is a gzipped tar of files, sorted by name, every entry at t.
func newLayer(files []file, t time.Time) (v1.Layer, error) {
	sort.Slice(files, func(i, j int) bool { return files[i].name < files[j].name })
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: f.mode, Uid: f.uid, Gid: f.gid, ModTime: t, Format: tar.FormatPAX,
			Uname: map[bool]string{true: "nonroot", false: "root"}[f.uid == UID], Gname: map[bool]string{true: "nonroot", false: "root"}[f.gid == GID]}
		if f.dir {
			h.Typeflag, h.Name = tar.TypeDir, f.name+"/"
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.body))
		}
		// PAX records would otherwise carry access and change times.
		h.AccessTime, h.ChangeTime = time.Time{}, time.Time{}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("layer entry %s: %w", f.name, err)
		}
		if _, err := tw.Write(f.body); err != nil {
			return nil, fmt.Errorf("layer entry %s: %w", f.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("close the layer: %w", err)
	}
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(raw.Bytes()); err != nil {
		return nil, fmt.Errorf("compress the layer: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("compress the layer: %w", err)
	}
	compressed := gz.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(compressed)), nil },
		tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("make the layer: %w", err)
	}
	return layer, nil
}

// WriteLayout writes img as an OCI image layout in a tar stream
// (oci-layout, index.json, blobs/sha256/...), in a fixed order with fixed
// times: `docker load`, `podman load` and `skopeo copy oci-archive:` read
// it.
func WriteLayout(w io.Writer, img v1.Image, refName string, t time.Time) error {
	manifest, err := img.RawManifest()
	if err != nil {
		return fmt.Errorf("image manifest: %w", err)
	}
	digest, err := img.Digest()
	if err != nil {
		return fmt.Errorf("image digest: %w", err)
	}
	config, err := img.RawConfigFile()
	if err != nil {
		return fmt.Errorf("image config: %w", err)
	}
	cfgName, err := img.ConfigName()
	if err != nil {
		return fmt.Errorf("image config digest: %w", err)
	}
	mt, err := img.MediaType()
	if err != nil {
		return err
	}
	index, err := json.Marshal(v1.IndexManifest{
		SchemaVersion: 2, MediaType: types.OCIImageIndex,
		Manifests: []v1.Descriptor{{MediaType: mt, Size: int64(len(manifest)), Digest: digest,
			Annotations: map[string]string{"org.opencontainers.image.ref.name": refName}}},
	})
	if err != nil {
		return err
	}
	blobs := map[string][]byte{digest.Hex: manifest, cfgName.Hex: config}
	layers, err := img.Layers()
	if err != nil {
		return fmt.Errorf("image layers: %w", err)
	}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return err
		}
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return fmt.Errorf("read layer %s: %w", d, err)
		}
		blobs[d.Hex] = b
	}
	tw := tar.NewWriter(w)
	put := func(name string, dir bool, body []byte) error {
		h := &tar.Header{Name: name, Mode: 0o644, ModTime: t.UTC().Truncate(time.Second), Typeflag: tar.TypeReg, Size: int64(len(body)), Format: tar.FormatPAX}
		if dir {
			h.Mode, h.Typeflag, h.Size = 0o755, tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		_, err := tw.Write(body)
		return err
	}
	if err := put("oci-layout", false, []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return err
	}
	if err := put("index.json", false, index); err != nil {
		return err
	}
	for _, d := range []string{"blobs/", "blobs/sha256/"} {
		if err := put(d, true, nil); err != nil {
			return err
		}
	}
	names := make([]string, 0, len(blobs))
	for h := range blobs {
		names = append(names, h)
	}
	sort.Strings(names)
	for _, h := range names {
		if err := put(path.Join("blobs/sha256", h), false, blobs[h]); err != nil {
			return fmt.Errorf("write blob %s: %w", h, err)
		}
	}
	return tw.Close()
}
