package cluster

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// DefaultFile is the spec file name commands look for.
const DefaultFile = "cairn.yaml"

// Load reads, defaults and validates a cairn.yaml. On problems it returns
// the spec read so far and an Errors value listing every one of them.
func Load(path string) (*Spec, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, fmt.Errorf("%s not found: run `cairn init` to write one, or pass -f FILE", path)
		}
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	// The directory as the kernel names it: every rendered path derives
	// from it, and the same lab reached through a symlink (a linked home
	// or checkout) must render the same files, or `lab up` would restart
	// every process for a configuration that did not change.
	abs, err := filepath.Abs(path)
	if err == nil {
		abs, err = filepath.EvalSymlinks(abs)
	}
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", path, err)
	}
	spec, errs := ParseAndValidate(data)
	spec.Dir = filepath.Dir(abs)
	spec.File = abs
	if len(errs) > 0 {
		return spec, errs
	}
	return spec, nil
}

// ParseAndValidate decodes data, applies defaults and validates. Every
// decoding problem is reported, plus every validation problem on fields that
// decoded cleanly (a field that failed to decode is not reported twice).
func ParseAndValidate(data []byte) (*Spec, Errors) {
	spec, errs := Parse(data)
	spec.ApplyDefaults()
	for _, ve := range spec.Validate() {
		if !slices.ContainsFunc(errs, func(de FieldError) bool { return related(de.Path, ve.Path) }) {
			errs = append(errs, ve)
		}
	}
	// File order; problems with no line (defaults, absent fields) last.
	slices.SortStableFunc(errs, func(a, b FieldError) int { return sortLine(a) - sortLine(b) })
	return spec, errs
}

func sortLine(e FieldError) int {
	if e.Line == 0 {
		return 1 << 30
	}
	return e.Line
}

// related reports whether one path is the other or lies inside it.
// A problem with the whole file covers every field.
func related(a, b string) bool {
	return a == fileField || a == b || strings.HasPrefix(b, a+".") || strings.HasPrefix(b, a+"[") ||
		strings.HasPrefix(a, b+".") || strings.HasPrefix(a, b+"[")
}

// Path resolves a path from the spec against the spec file's directory.
func (s *Spec) Path(p string) string {
	if filepath.IsAbs(p) || s.Dir == "" {
		return p
	}
	return filepath.Join(s.Dir, p)
}
