package assertion

import (
	"errors"
	"fmt"
	"os"

	"sigs.k8s.io/yaml"
)

// maxRegistrationsFile bounds the platforms file.
const maxRegistrationsFile = 1 << 20

// LoadRegistrations reads the operator's platforms file: YAML (or JSON)
// with a list `platforms` of registrations; unknown keys are refused, and
// every registration is validated.
func LoadRegistrations(path string) ([]Registration, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("platforms file: %w", err)
	}
	if len(data) > maxRegistrationsFile {
		return nil, fmt.Errorf("platforms file %s: larger than %d bytes", path, maxRegistrationsFile)
	}
	var f struct {
		Platforms []Registration `json:"platforms"`
	}
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		return nil, fmt.Errorf("platforms file %s: %w", path, err)
	}
	if len(f.Platforms) == 0 {
		return nil, fmt.Errorf("platforms file %s: no platforms", path)
	}
	var errs []error
	for i, r := range f.Platforms {
		if err := r.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("platforms[%d] (%q): %w", i, r.ID, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("platforms file %s: %w", path, err)
	}
	return f.Platforms, nil
}
