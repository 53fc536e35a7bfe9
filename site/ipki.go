package site

import (
	"cmp"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/internal/fsutil"
)

// Boulder's gRPC services authenticate each other with one certificate per
// service, used as both server and client certificate, named <svc>.boulder.
var grpcIdentities = []string{"sa", "ca", "ra", "va", "rva", "publisher", "nonce", "wfe", "crl-updater", "crl-storer", "admin", "health-checker"}

// Internal certificates (gRPC, Redis, DoH, the agent and the controller's
// credential for it) live leafValidity and are made again by any render
// when less than leafRenewBefore is left, or always when rotating.
const (
	leafValidity    = 90 * 24 * time.Hour
	leafRenewBefore = 30 * 24 * time.Hour
)

// ipki is a site's internal mTLS CA. It is separate at every site so the
// sites' meshes can never talk to each other. Its key is in caDir, which
// for a site is next to the spec on the rendering machine
// (InternalCADir), never in the bundle: a site host cannot mint internal
// credentials. The leaves and the CA certificate are in dir.
type ipki struct {
	dir, caDir string
	cert       *x509.Certificate
	key        crypto.Signer
	now        time.Time
	// rotate: every leaf is made again, whatever its validity.
	rotate bool
	// validity of the leaves it makes (leafValidity if zero).
	validity time.Duration
}

// InternalCADir is where a site's internal gRPC CA (key and certificate)
// lives, relative to the spec: on the rendering machine only.
func InternalCADir(site string) string {
	return filepath.Join(cluster.DefaultSecretsDir, "ipki", site)
}

func (k *ipki) caFile() string              { return filepath.Join(k.dir, "ca.pem") }
func (k *ipki) certFile(name string) string { return filepath.Join(k.dir, name, "cert.pem") }
func (k *ipki) keyFile(name string) string  { return filepath.Join(k.dir, name, "key.pem") }

// loadOrCreateIPKI reuses the CA in dir or creates it, named caName; the
// leaves are written in dir too.
func loadOrCreateIPKI(dir, caName string, now time.Time) (*ipki, error) {
	return loadOrCreateCA(dir, dir, caName, now)
}

// loadOrCreateCA reuses the CA in caDir (ca.key, ca.pem) or creates it,
// and writes its certificate as dir/ca.pem, where its leaves go.
func loadOrCreateCA(caDir, dir, caName string, now time.Time) (*ipki, error) {
	k := &ipki{dir: dir, caDir: caDir, now: now}
	keyPath, certPath := filepath.Join(caDir, "ca.key"), filepath.Join(caDir, "ca.pem")
	if fsutil.Exists(keyPath) && fsutil.Exists(certPath) {
		cert, key, err := readPair(certPath, keyPath)
		if err != nil {
			return nil, fmt.Errorf("internal CA: %w", err)
		}
		k.cert, k.key = cert, key
		return k, k.publishCA()
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          randSerial(),
		Subject:               pkix.Name{CommonName: caName},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	if err := writeKeyPair(certPath, keyPath, der, key); err != nil {
		return nil, err
	}
	k.cert, _ = x509.ParseCertificate(der)
	k.key = key
	return k, k.publishCA()
}

// publishCA writes the CA certificate where the leaves are (what every
// component trusts), when that is not the CA's own directory.
func (k *ipki) publishCA() error {
	if k.dir == k.caDir {
		return nil
	}
	if err := os.MkdirAll(k.dir, 0o755); err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(k.caFile(), pemCert(k.cert), 0o644)
}

// moveCAOutOfBundle moves an internal CA that an older cairn kept inside
// the bundle (bundle/ipki/ca.key) to caDir, so the site keeps its CA and
// every leaf stays valid, and the bundle no longer holds the key.
func moveCAOutOfBundle(bundleIPKI, caDir string) error {
	oldKey, oldCert := filepath.Join(bundleIPKI, "ca.key"), filepath.Join(bundleIPKI, "ca.pem")
	if !fsutil.Exists(oldKey) {
		return nil
	}
	if !fsutil.Exists(filepath.Join(caDir, "ca.key")) {
		if err := os.MkdirAll(caDir, 0o700); err != nil {
			return err
		}
		for _, f := range []struct {
			from, to string
			mode     os.FileMode
		}{{oldKey, filepath.Join(caDir, "ca.key"), 0o600}, {oldCert, filepath.Join(caDir, "ca.pem"), 0o644}} {
			b, err := os.ReadFile(f.from)
			if err != nil {
				return fmt.Errorf("moving the internal CA out of the bundle: %w", err)
			}
			if err := fsutil.WriteFileAtomic(f.to, b, f.mode); err != nil {
				return err
			}
		}
	}
	return os.Remove(oldKey)
}

// leaf makes (once) a serverAuth+clientAuth certificate for name with the
// given SANs; an existing one is kept while it is valid for > 30 days and
// names the same SANs (an address change makes a new one), unless the
// PKI rotates.
func (k *ipki) leaf(name string, dnsNames []string, ips []net.IP) error {
	return k.leafAt(k.certFile(name), k.keyFile(name), name, dnsNames, ips)
}

// leafAt is leaf with the certificate and key at the given paths.
func (k *ipki) leafAt(certPath, keyPath, name string, dnsNames []string, ips []net.IP) error {
	if cert, _, err := readPair(certPath, keyPath); err == nil &&
		!k.rotate && cert.CheckSignatureFrom(k.cert) == nil && cert.NotAfter.Sub(k.now) > leafRenewBefore &&
		slices.Equal(cert.DNSNames, dnsNames) && slices.EqualFunc(cert.IPAddresses, ips, net.IP.Equal) {
		return nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: randSerial(),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    k.now.Add(-time.Hour),
		NotAfter:     k.now.Add(cmp.Or(k.validity, leafValidity)),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     dnsNames,
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, k.cert, key.Public(), k.key)
	if err != nil {
		return err
	}
	return writeKeyPair(certPath, keyPath, der, key)
}

func randSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err)
	}
	return n.Add(n, big.NewInt(1))
}

// writeKeyPair writes the key (0600) first and the certificate last, both
// atomically; a certificate on disk always has its key.
func writeKeyPair(certPath, keyPath string, der []byte, key crypto.Signer) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(keyPath), 0o700); err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

func readPair(certPath, keyPath string) (*x509.Certificate, crypto.Signer, error) {
	cb, err := os.ReadFile(certPath)
	if err != nil {
		return nil, nil, err
	}
	if err := fsutil.CheckSecretFile(keyPath); err != nil {
		return nil, nil, err
	}
	kb, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, nil, err
	}
	cblock, _ := pem.Decode(cb)
	kblock, _ := pem.Decode(kb)
	if cblock == nil || kblock == nil {
		return nil, nil, fmt.Errorf("%s or %s is not PEM", certPath, keyPath)
	}
	cert, err := x509.ParseCertificate(cblock.Bytes)
	if err != nil {
		return nil, nil, err
	}
	key, err := x509.ParsePKCS8PrivateKey(kblock.Bytes)
	if err != nil {
		return nil, nil, err
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, nil, errors.New(keyPath + ": not a signing key")
	}
	return cert, signer, nil
}

// MTLSFiles are the files of a small mutual-TLS setup made by EnsureMTLS.
type MTLSFiles struct{ CA, Cert, Key string }

// EnsureMTLS makes (once) a private CA in dir and one certificate for
// name, usable as server and client, with the given IP SANs. The
// controller's embedded etcd uses it: only holders of the key (mode 0600)
// can talk to it. Its certificate lives 825 days: it is made when the
// controller starts, and nothing would renew it during a long run.
func EnsureMTLS(dir, name string, ips []net.IP) (MTLSFiles, error) {
	k, err := loadOrCreateIPKI(dir, name+" CA", time.Now())
	if err != nil {
		return MTLSFiles{}, err
	}
	k.validity = 825 * 24 * time.Hour
	if err := k.leaf(name, []string{"localhost"}, ips); err != nil {
		return MTLSFiles{}, err
	}
	return MTLSFiles{CA: k.caFile(), Cert: k.certFile(name), Key: k.keyFile(name)}, nil
}

// pemCert is c in PEM.
func pemCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}
