package site

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/internal/fsutil"
	"github.com/cairn-pki/cairn/internal/rfc2136"
	"github.com/cairn-pki/cairn/internal/ssupolicy"
)

// A client's own TSIG key may write one record only: the DNS-01 TXT record
// _acme-challenge.<its name>. Each key is a tsig-keygen file named after
// the name, in a directory next to the clients' shared key
// (secrets/tsig-clients/<name>.key); the key's own name is the client's
// name. The cluster rendering grants every key found there.

// ClientKey is one client's own key.
type ClientKey struct {
	Name string      `json:"name"` // the name it may prove, e.g. host.ap.home.arpa
	File string      `json:"file"`
	Key  rfc2136.Key `json:"-"`
}

// Record is the one record the key may write.
func (k ClientKey) Record() string { return ssupolicy.Prefix + k.Name }

// ClientKeysDir is where the per-client keys live.
func ClientKeysDir(spec *cluster.Spec) string {
	return filepath.Join(filepath.Dir(spec.Path(spec.DNS.TSIG.ClientKeyFile)), "tsig-clients")
}

// CheckClientName refuses a name a client key cannot be made for: it must
// be a host name in the cluster zone (or the zone itself), lower case.
func CheckClientName(spec *cluster.Spec, name string) error {
	zone := spec.ACME.Zone
	switch {
	case strings.HasPrefix(name, "*."):
		return fmt.Errorf("%s: give the name without \"*.\" (a wildcard certificate for it is proved with the same record)", name)
	case strings.HasPrefix(name, ssupolicy.Prefix):
		return fmt.Errorf("%s: give the host name, without %q", name, ssupolicy.Prefix)
	case name != zone && !strings.HasSuffix(name, "."+zone):
		return fmt.Errorf("%s: not in the cluster zone %s (acme.zone): the key can only write records there", name, zone)
	}
	if len(name) > 253-len(ssupolicy.Prefix) {
		return fmt.Errorf("%s: too long for a DNS name with %q in front", name, ssupolicy.Prefix)
	}
	for _, l := range strings.Split(name, ".") {
		ok := l != "" && len(l) <= 63 && l[0] != '-' && l[len(l)-1] != '-'
		for _, c := range l {
			ok = ok && (c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-')
		}
		if !ok {
			return fmt.Errorf("%s: label %q is not a lower-case host name label (a-z, 0-9, inner -)", name, l)
		}
	}
	return nil
}

// newTSIGKeyFile writes a new HMAC-SHA256 key file (0600) in tsig-keygen
// format; it never replaces an existing file.
func newTSIGKeyFile(path, name string) error {
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return err
	}
	content := fmt.Sprintf("key \"%s\" {\n\talgorithm hmac-sha256;\n\tsecret \"%s\";\n};\n", name, base64.StdEncoding.EncodeToString(secret))
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	// Created exclusively, then filled: two runs cannot both make it.
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	f.Close()
	return fsutil.WriteFileAtomic(path, []byte(content), 0o600)
}

// AddClientKey makes the key of name; an existing one is an error.
func AddClientKey(spec *cluster.Spec, name string) (ClientKey, error) {
	if err := CheckClientName(spec, name); err != nil {
		return ClientKey{}, err
	}
	path := filepath.Join(ClientKeysDir(spec), name+".key")
	if err := newTSIGKeyFile(path, name); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return ClientKey{}, fmt.Errorf("%s: a key exists (%s): use it, or remove it first", name, path)
		}
		return ClientKey{}, err
	}
	key, err := rfc2136.ReadKey(path)
	return ClientKey{Name: name, File: path, Key: key}, err
}

// RemoveClientKey deletes the key of name.
func RemoveClientKey(spec *cluster.Spec, name string) error {
	if err := CheckClientName(spec, name); err != nil {
		return err
	}
	path := filepath.Join(ClientKeysDir(spec), name+".key")
	if err := os.Remove(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s: no such key (cairn dns key list shows them)", name)
		}
		return err
	}
	return nil
}

// ClientKeys reads every per-client key, sorted by name. A file whose key
// is not named after the file, or whose name is not a client name, is an
// error naming the file: it would otherwise grant something unexpected.
func ClientKeys(spec *cluster.Spec) ([]ClientKey, error) {
	files, err := filepath.Glob(filepath.Join(ClientKeysDir(spec), "*.key"))
	if err != nil {
		return nil, err
	}
	var keys []ClientKey
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".key")
		key, err := rfc2136.ReadKey(f)
		if err != nil {
			return nil, err
		}
		if key.Name != name {
			return nil, fmt.Errorf("%s: the key is named %q, not %q: a client key is named after the file (cairn dns key add writes them)", f, key.Name, name)
		}
		if err := CheckClientName(spec, name); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		keys = append(keys, ClientKey{Name: name, File: f, Key: key})
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].Name < keys[j].Name })
	return keys, nil
}
