package cluster

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// fileField is the path of a problem with the file as a whole.
const fileField = "(file)"

// FieldError is one problem in a cairn.yaml, named by its field path.
type FieldError struct {
	Path string // e.g. sites[1].serialPrefix
	Line int    // 0 when unknown
	Msg  string
}

func (e FieldError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("line %d: %s: %s", e.Line, e.Path, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.Path, e.Msg)
}

// maxQuoted is how much of a bad value an error message quotes.
const maxQuoted = 60

// fieldMsg formats an error message, quoting at most an excerpt of each
// string value (a 4 MB value must not come back as a 4 MB line).
func fieldMsg(format string, args ...any) string {
	for i, a := range args {
		if s, ok := a.(string); ok {
			args[i] = excerpt(s, maxQuoted)
		}
	}
	return fmt.Sprintf(format, args...)
}

// FieldMsg is fieldMsg for other packages' one-line errors (drill
// scenarios).
func FieldMsg(format string, args ...any) string { return fieldMsg(format, args...) }

// Excerpt is a bad value as one-line errors quote it: at most 60 runes.
func Excerpt(s string) string { return excerpt(s, 60) }

// FirstLine is the first line of a message (a command's output, a
// server's error) as one-line errors quote it: at most 240 runes.
func FirstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return excerpt(s, 240)
}

// excerpt keeps the first n runes of s and says how long it was.
func excerpt(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return fmt.Sprintf("%s… (%d characters)", string(r[:n]), len(r))
}

// Errors is every problem found in one pass, in file order where known.
type Errors []FieldError

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// decoder walks a YAML node tree against the Spec types so that unknown
// fields and type errors carry their field path, and so that every problem
// is reported rather than only the first.
type decoder struct {
	errs  Errors
	lines map[string]int // field path -> line, for validation errors later
}

// Parse decodes a cairn.yaml without applying defaults or validating it.
// A non-nil Spec is returned even with errors, holding what could be read.
func Parse(data []byte) (*Spec, Errors) {
	spec := &Spec{}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return spec, Errors{{Path: fileField, Line: yamlErrLine(err), Msg: "not valid YAML: " + yamlErrText(err)}}
	}
	d := &decoder{lines: map[string]int{}}
	if root.Kind == 0 || len(root.Content) == 0 {
		return spec, Errors{{Path: fileField, Msg: "is empty; run `cairn init` to write a commented example"}}
	}
	d.decode(root.Content[0], reflect.ValueOf(spec).Elem(), "")
	spec.lines = d.lines
	return spec, d.errs
}

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

func (d *decoder) fail(n *yaml.Node, path, format string, args ...any) {
	d.errs = append(d.errs, FieldError{Path: excerpt(displayPath(path), 80), Line: n.Line, Msg: fieldMsg(format, args...)})
}

func displayPath(p string) string {
	if p == "" {
		return "(top level)"
	}
	return p
}

// maxDepth bounds nesting; the Spec is 5 levels deep, and a self-referring
// YAML alias would otherwise recurse forever.
const maxDepth = 16

func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	d.decodeAt(n, v, path, 0)
}

func (d *decoder) decodeAt(n *yaml.Node, v reflect.Value, path string, depth int) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n == nil || depth > maxDepth || n.Kind == yaml.AliasNode {
		d.fail(&yaml.Node{}, path, "nested too deep, or an alias that refers to itself")
		return
	}
	if path != "" {
		d.lines[path] = n.Line
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // an empty value keeps the default
	}
	if v.CanAddr() && v.Addr().Type().Implements(unmarshalerType) {
		if err := n.Decode(v.Addr().Interface()); err != nil {
			d.fail(n, path, "%s", err.Error())
		}
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			d.fail(n, path, "expected a mapping of fields, got %s", describe(n))
			return
		}
		fields := yamlFields(v.Type())
		seen := map[string]int{} // key -> line of its first occurrence
		for i := 0; i+1 < len(n.Content); i += 2 {
			key, val := n.Content[i], n.Content[i+1]
			sub := joinPath(path, key.Value)
			// YAML leaves a key given twice undefined; the later one would
			// silently win (two acme: blocks, one half lost).
			if first, dup := seen[key.Value]; dup {
				d.fail(key, sub, "given twice, at lines %d and %d: keep one (merge what the two say)", first, key.Line)
				continue
			}
			seen[key.Value] = key.Line
			idx, ok := fields[key.Value]
			if !ok {
				d.fail(key, sub, "unknown field (known fields here: %s)", strings.Join(sortedKeys(fields), ", "))
				continue
			}
			d.decodeAt(val, v.Field(idx), sub, depth+1)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.fail(n, path, "expected a list, got %s", describe(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			d.decodeAt(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i), depth+1)
		}
		v.Set(s)
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.fail(n, path, "expected a string, got %s", describe(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Int:
		if n.Kind != yaml.ScalarNode {
			d.fail(n, path, "expected a whole number, got %s", describe(n))
			return
		}
		i, err := strconv.ParseInt(n.Value, 0, 64)
		if err != nil {
			d.fail(n, path, "expected a whole number, got %q", n.Value)
			return
		}
		v.SetInt(i)
	case reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || n.Decode(&b) != nil {
			d.fail(n, path, "expected true or false, got %s", describe(n))
			return
		}
		v.SetBool(b)
	default:
		// Only the kinds above occur in Spec; a new field of another kind is a
		// programming error caught by the decode tests.
		panic(fmt.Sprintf("cluster: no decoder for %s at %s", v.Type(), path))
	}
}

func joinPath(base, key string) string {
	if base == "" {
		return key
	}
	return base + "." + key
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	default:
		return strconv.Quote(n.Value)
	}
}

func yamlFields(t reflect.Type) map[string]int {
	m := map[string]int{}
	for i := range t.NumField() {
		tag := t.Field(i).Tag.Get("yaml")
		name, _, _ := strings.Cut(tag, ",")
		if name == "" || name == "-" {
			continue
		}
		m[name] = i
	}
	return m
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

var yamlLineRE = regexp.MustCompile(`line (\d+)`)

func yamlErrLine(err error) int {
	m := yamlLineRE.FindStringSubmatch(err.Error())
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

func yamlErrText(err error) string {
	s := strings.TrimPrefix(err.Error(), "yaml: ")
	s = yamlLineRE.ReplaceAllString(s, "")
	return strings.TrimLeft(s, ": ")
}

// SerialPrefix is the first byte of every serial a site issues. It is
// written as two hex digits, with or without 0x: `serialPrefix: 0x01`.
type SerialPrefix struct {
	value uint8
	set   bool
}

// NewSerialPrefix returns a set prefix.
func NewSerialPrefix(v uint8) SerialPrefix { return SerialPrefix{value: v, set: true} }

// Value is the prefix byte.
func (p SerialPrefix) Value() uint8 { return p.value }

// IsSet reports whether the file (or a default) gave a value.
func (p SerialPrefix) IsSet() bool { return p.set }

// Hex is the form Boulder's serialPrefixHex wants, e.g. "1a".
func (p SerialPrefix) Hex() string { return fmt.Sprintf("%02x", p.value) }

func (p SerialPrefix) String() string { return fmt.Sprintf("0x%02x", p.value) }

// UnmarshalYAML reads two hex digits.
func (p *SerialPrefix) UnmarshalYAML(n *yaml.Node) error {
	s := strings.TrimPrefix(strings.TrimPrefix(n.Value, "0x"), "0X")
	v, err := strconv.ParseUint(s, 16, 8)
	if n.Kind != yaml.ScalarNode || err != nil || len(s) == 0 || len(s) > 2 {
		return errors.New("expected two hex digits between 0x01 and 0x7f, e.g. serialPrefix: 0x01")
	}
	*p = SerialPrefix{value: uint8(v), set: true}
	return nil
}

// Duration is a Go duration string in YAML ("2s", "1m30s"), or a whole
// number of days ("90d").
type Duration struct{ time.Duration }

// UnmarshalYAML parses a duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := parseDuration(n.Value)
	if n.Kind != yaml.ScalarNode || err != nil {
		return fmt.Errorf("expected a duration such as 30s, 2m or 7d, got %q", n.Value)
	}
	d.Duration = v
	return nil
}

// maxDays keeps a duration in days within time.Duration (292 years).
const maxDays = 100000

// parseDuration is time.ParseDuration that also reads whole days ("7d").
func parseDuration(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseInt(days, 10, 32)
		if err != nil || n < 0 || n > maxDays || days[0] == '+' {
			return 0, fmt.Errorf("%q is not a whole number of days", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	return time.ParseDuration(s)
}

func (d Duration) String() string { return d.Duration.String() }

// Days is the duration as YAML writes it: whole days as "7d", else as
// String does.
func (d Duration) Days() string {
	if d.Duration > 0 && d.Duration%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d.Duration/(24*time.Hour))
	}
	return d.String()
}
