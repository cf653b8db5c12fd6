// Command keybroker-image builds keybroker's container image as an OCI
// image layout tarball, without a Docker engine (make image runs it):
//
//	keybroker-image -binary bin/linux-amd64/keybroker -version v2.0.0 \
//	    -revision $(git rev-parse HEAD) -created 2026-12-01T10:00:00Z -out bin/keybroker-image.tar
//
// It prints the image's digest. The same inputs give the same digest.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/keybroker/keybroker/internal/build/ociimage"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "keybroker-image:", err)
		os.Exit(1)
	}
}

func run() error {
	var o ociimage.Options
	var created, out string
	flag.StringVar(&o.Binary, "binary", "", "the static keybroker binary (CGO_ENABLED=0)")
	flag.StringVar(&o.CACerts, "ca-certs", "/etc/ssl/certs/ca-certificates.crt", "the PEM bundle of trusted CAs to put in the image")
	flag.StringVar(&o.Version, "version", "dev", "the version label")
	flag.StringVar(&o.Revision, "revision", "", "the commit label")
	flag.StringVar(&created, "created", "", "the commit's time (RFC 3339): the created label and every time in the image")
	flag.StringVar(&o.Source, "source", "", "the repository's address (the source label)")
	flag.StringVar(&o.Architecture, "arch", "amd64", "the binary's architecture (GOARCH)")
	flag.StringVar(&o.RefName, "ref", "", "the image's name in the layout (default keybroker:<version>)")
	flag.StringVar(&out, "out", "keybroker-image.tar", "where to write the OCI layout tarball")
	flag.Parse()
	if o.Binary == "" || created == "" {
		return fmt.Errorf("-binary and -created are required")
	}
	t, err := time.Parse(time.RFC3339, created)
	if err != nil {
		return fmt.Errorf("-created: %w", err)
	}
	o.Created = t
	if o.RefName == "" {
		o.RefName = "keybroker:" + o.Version
	}
	img, err := ociimage.Build(o)
	if err != nil {
		return err
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	if err := ociimage.WriteLayout(w, img, o.RefName, t); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", out, err)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("%s %s %s\n", out, o.RefName, digest)
	return nil
}
