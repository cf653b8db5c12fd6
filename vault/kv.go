package vault

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"
)

// Secret is one version of a secret read from KV v2: its string data
// fields (which fields a credential has is the caller's business: the
// package knows only the paths and fields it is given). Its String,
// GoString, LogValue and MarshalJSON never show a value, so a Secret
// printed by mistake leaks nothing.
type Secret struct {
	Data    map[string]string
	Version int
}

// names are the secret's field names, sorted.
func (s Secret) names() []string { return slices.Sorted(maps.Keys(s.Data)) }

func (s Secret) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "vault.Secret{Version:%d", s.Version)
	for _, n := range s.names() {
		b.WriteString(" " + n + ":<redacted>")
	}
	b.WriteString("}")
	return b.String()
}
func (s Secret) GoString() string { return s.String() }

// Format makes every verb print String.
func (s Secret) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, s.String()) }

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value {
	attrs := []slog.Attr{slog.Int("version", s.Version)}
	for _, n := range s.names() {
		attrs = append(attrs, slog.String(n, "<redacted>"))
	}
	return slog.GroupValue(attrs...)
}

// MarshalJSON writes the version and each field as "<redacted>".
func (s Secret) MarshalJSON() ([]byte, error) {
	data := make(map[string]string, len(s.Data))
	for n := range s.Data {
		data[n] = "<redacted>"
	}
	return json.Marshal(struct {
		Version int               `json:"version"`
		Data    map[string]string `json:"data"`
	}{s.Version, data})
}

// Version describes one version of a secret (metadata only).
type Version struct {
	Version     int
	CreatedTime time.Time
	// DeletionTime is set when the version is soft-deleted (or scheduled
	// for deletion).
	DeletionTime time.Time
	Destroyed    bool
}

// Alive reports whether the version can be read.
func (v Version) Alive() bool { return !v.Destroyed && v.DeletionTime.IsZero() }

// Metadata is a secret's version history.
type Metadata struct {
	CurrentVersion int
	// Versions, oldest first.
	Versions []Version
}

// Current returns the current version's entry, if Vault still lists it.
func (m Metadata) Current() (Version, bool) {
	for _, v := range m.Versions {
		if v.Version == m.CurrentVersion {
			return v, true
		}
	}
	return Version{}, false
}

// KV is a KV v2 secrets engine at one mount. A secret's data fields are
// strings.
type KV struct {
	c     *Client
	mount string
	kv    *api.KVv2
}

// KV returns the KV v2 engine at mount (e.g. "byok").
func (c *Client) KV(mount string) *KV {
	mount = strings.Trim(mount, "/")
	return &KV{c: c, mount: mount, kv: c.api.KVv2(mount)}
}

// Mount is the engine's mount path.
func (kv *KV) Mount() string { return kv.mount }

func (kv *KV) where(path string) string { return kv.mount + "/" + path }

// Get reads the current version of the secret at path. A missing secret and
// a deleted or destroyed current version are both ErrNotFound.
func (kv *KV) Get(ctx context.Context, path string) (Secret, error) {
	s, err := kv.read(ctx, "kv_get", path, nil)
	return kv.secret(s, err, "read secret at "+kv.where(path))
}

// GetVersion reads one version of the secret at path.
func (kv *KV) GetVersion(ctx context.Context, path string, version int) (Secret, error) {
	s, err := kv.read(ctx, "kv_get_version", path, map[string][]string{"version": {strconv.Itoa(version)}})
	return kv.secret(s, err, fmt.Sprintf("read version %d of secret at %s", version, kv.where(path)))
}

// kvData is the body of a KV v2 read.
type kvData struct {
	Data *struct {
		Data     map[string]any `json:"data"`
		Metadata *struct {
			Version int `json:"version"`
		} `json:"metadata"`
	} `json:"data"`
	Errors []string `json:"errors"`
}

// read reads path's data/ endpoint and tells the answers apart that
// vault/api's KVv2 lumps together as "not found": a secret or version that
// is not there (a 404 with no error, or with the version's metadata and no
// data) is ErrNotFound; a 404 that says why ("no handler for route": a node
// that has just become active and has not mounted the engine yet, or a
// wrong mount) is ErrUnavailable, so that no key is ever cached as missing
// because Vault was not ready to say.
func (kv *KV) read(ctx context.Context, op, path string, params map[string][]string) (*kvData, error) {
	var out kvData
	err := kv.c.do(ctx, op, func(ctx context.Context) error {
		out = kvData{}
		resp, err := kv.c.api.Logical().ReadRawWithDataWithContext(ctx, kv.mount+"/data/"+path, params)
		if resp != nil {
			defer resp.Body.Close()
		}
		// vault/api answers a 404 with an error and the body kept, to be
		// read here; other failures end the attempt.
		if err != nil && (resp == nil || resp.StatusCode != http.StatusNotFound) {
			return err
		}
		if resp.StatusCode >= 300 && resp.StatusCode < 400 {
			return &api.ResponseError{HTTPMethod: http.MethodGet, URL: resp.Request.URL.String(), StatusCode: resp.StatusCode}
		}
		if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&out); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("vault answered %d with a body that is not JSON: %w", resp.StatusCode, err)
		}
		if resp.StatusCode == http.StatusNotFound && len(out.Errors) > 0 {
			return errors.Join(ErrUnavailable, fmt.Errorf("vault answered 404: %s", strings.Join(out.Errors, "; ")))
		}
		return nil
	})
	return &out, err
}

func (kv *KV) secret(d *kvData, err error, what string) (Secret, error) {
	if err != nil {
		return Secret{}, fmt.Errorf("%s: %w", what, err)
	}
	// A deleted or destroyed version comes back as a 404 with metadata and
	// no data.
	if d == nil || d.Data == nil || d.Data.Data == nil {
		return Secret{}, fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	s := struct {
		Data            map[string]any
		VersionMetadata *struct{ Version int }
	}{Data: d.Data.Data}
	if d.Data.Metadata != nil {
		s.VersionMetadata = &struct{ Version int }{d.Data.Metadata.Version}
	}
	data := make(map[string]string, len(s.Data))
	for k, v := range s.Data {
		// Fields that are not strings are no credential's: left out,
		// and a credential that needs them finds them missing.
		if str, ok := v.(string); ok {
			data[k] = str
		}
	}
	version := 0
	if s.VersionMetadata != nil {
		version = s.VersionMetadata.Version
	}
	return Secret{Data: data, Version: version}, nil
}

// Put writes data as a new version with check-and-set: cas is the version
// the caller believes is current (0: the secret must not exist yet). It
// returns the new version, or ErrCASMismatch when another write won.
func (kv *KV) Put(ctx context.Context, path string, data map[string]string, cas int) (int, error) {
	fields := make(map[string]any, len(data))
	for k, v := range data {
		fields[k] = v
	}
	var s *api.KVSecret
	err := kv.c.do(ctx, "kv_put", func(ctx context.Context) (err error) {
		s, err = kv.kv.Put(ctx, path, fields, api.WithCheckAndSet(cas))
		return err
	})
	if err != nil {
		// Vault answers a lost check-and-set with a plain 400. Rather than
		// match its message, look at the current version: if it is not the
		// one expected, the write lost a race.
		if statusOf(err) == http.StatusBadRequest {
			if md, merr := kv.Metadata(ctx, path); (merr == nil && md.CurrentVersion != cas) || (errors.Is(merr, ErrNotFound) && cas != 0) {
				return 0, fmt.Errorf("write secret at %s with cas=%d: %w", kv.where(path), cas, errors.Join(ErrCASMismatch, err))
			}
		}
		return 0, fmt.Errorf("write secret at %s with cas=%d: %w", kv.where(path), cas, err)
	}
	if s == nil || s.VersionMetadata == nil {
		return 0, fmt.Errorf("write secret at %s: vault answered without version metadata", kv.where(path))
	}
	return s.VersionMetadata.Version, nil
}

// Metadata reads the version history of the secret at path (no key
// material). A path that never held a secret, or whose metadata was
// destroyed, is ErrNotFound.
func (kv *KV) Metadata(ctx context.Context, path string) (Metadata, error) {
	var md *api.KVMetadata
	err := kv.c.do(ctx, "kv_metadata", func(ctx context.Context) (err error) {
		md, err = kv.kv.GetMetadata(ctx, path)
		return err
	})
	if err != nil {
		return Metadata{}, fmt.Errorf("read metadata of secret at %s: %w", kv.where(path), err)
	}
	out := Metadata{CurrentVersion: md.CurrentVersion}
	for _, v := range md.Versions {
		out.Versions = append(out.Versions, Version{
			Version: v.Version, CreatedTime: v.CreatedTime, DeletionTime: v.DeletionTime, Destroyed: v.Destroyed,
		})
	}
	sort.Slice(out.Versions, func(i, j int) bool { return out.Versions[i].Version < out.Versions[j].Version })
	return out, nil
}

// DeleteVersion soft-deletes one version (undelete can bring it back). It
// uses the delete/ endpoint, which a writer may call without read access to
// data/.
func (kv *KV) DeleteVersion(ctx context.Context, path string, version int) error {
	err := kv.c.do(ctx, "kv_delete_version", func(ctx context.Context) error {
		return kv.kv.DeleteVersions(ctx, path, []int{version})
	})
	if err != nil {
		return fmt.Errorf("delete version %d of secret at %s: %w", version, kv.where(path), err)
	}
	return nil
}

// Destroy removes the secret at path with every version and its metadata,
// for good.
func (kv *KV) Destroy(ctx context.Context, path string) error {
	err := kv.c.do(ctx, "kv_destroy", func(ctx context.Context) error {
		return kv.kv.DeleteMetadata(ctx, path)
	})
	if err != nil {
		return fmt.Errorf("destroy secret at %s: %w", kv.where(path), err)
	}
	return nil
}

// List returns the names under the folder dir (a folder's names end in
// "/"). An empty or missing folder gives an empty list.
func (kv *KV) List(ctx context.Context, dir string) ([]string, error) {
	var s *api.Secret
	err := kv.c.do(ctx, "kv_list", func(ctx context.Context) (err error) {
		s, err = kv.c.api.Logical().ListWithContext(ctx, kv.mount+"/metadata/"+dir)
		return err
	})
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("list secrets under %s: %w", kv.where(dir), err)
	}
	if s == nil || s.Data == nil {
		return nil, nil
	}
	raw, _ := s.Data["keys"].([]any)
	names := make([]string, 0, len(raw))
	for _, k := range raw {
		if name, ok := k.(string); ok {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names, nil
}
