package backup

import (
	"crypto/x509"
	"fmt"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cairn-pki/cairn/internal/fsutil"
)

// crlName is Boulder's CRL URL tail: /<issuer name ID>/<shard>.crl.
var crlName = regexp.MustCompile(`^([0-9]{1,20})/([0-9]{1,6})\.crl$`)

// shardOf reads the issuer's name ID and the shard from a CRL URL.
func shardOf(u string) (issuer int64, shard int, err error) {
	pu, err := url.Parse(u)
	if err != nil {
		return 0, 0, err
	}
	tail := path.Join(path.Base(path.Dir(pu.Path)), path.Base(pu.Path))
	m := crlName.FindStringSubmatch(tail)
	if m == nil {
		return 0, 0, fmt.Errorf("CRL URL %q: want …/<issuer ID>/<shard>.crl (Boulder's CRLURLBase)", u)
	}
	issuer, _ = strconv.ParseInt(m[1], 10, 64)
	shard, _ = strconv.Atoi(m[2])
	return issuer, shard, nil
}

func (s Store) crlDir(site string) string { return filepath.Join(s.siteDir(site), "crls") }

// ArchiveCRL keeps crl (der, fetched from u, its signature checked by the
// caller) as site's copy of that shard unless the copy there is as new
// (CRL number); it reports whether it wrote it.
func (s Store) ArchiveCRL(site, u string, der []byte, crl *x509.RevocationList) (bool, error) {
	issuer, shard, err := shardOf(u)
	if err != nil {
		return false, err
	}
	file := filepath.Join(s.crlDir(site), fmt.Sprintf("%d-%d.crl", issuer, shard))
	if old, err := os.ReadFile(file); err == nil {
		if prev, err := x509.ParseRevocationList(old); err == nil && prev.Number.Cmp(crl.Number) >= 0 {
			return false, nil
		}
	}
	if err := os.MkdirAll(s.crlDir(site), 0o700); err != nil {
		return false, err
	}
	return true, fsutil.WriteFileAtomic(file, der, 0o600)
}

// Revoked is one serial a site's archived CRLs list.
type Revoked struct {
	Serial    string    // 36 hex digits, Boulder's form
	IssuerID  int64     // the issuer's name ID
	Shard     int       // the CRL shard
	RevokedAt time.Time // the CRL entry's revocation date
	Reason    int       // the CRL entry's reason code (0: none given)
}

// ArchivedCRL is one archived shard.
type ArchivedCRL struct {
	IssuerID int64
	Shard    int
	CRL      *x509.RevocationList
}

// CRLs returns site's archived CRLs (not checked again: the archive
// holds only CRLs whose signature the controller checked).
func (s Store) CRLs(site string) ([]ArchivedCRL, error) {
	files, err := filepath.Glob(filepath.Join(s.crlDir(site), "*.crl"))
	if err != nil {
		return nil, err
	}
	var out []ArchivedCRL
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".crl")
		i := strings.LastIndexByte(name, '-')
		issuer, shard, err := shardOf("/" + name[:max(i, 0)] + "/" + name[i+1:] + ".crl")
		if i < 0 || err != nil {
			return nil, fmt.Errorf("%s: not an archived CRL's name", f)
		}
		der, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		crl, err := x509.ParseRevocationList(der)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		out = append(out, ArchivedCRL{IssuerID: issuer, Shard: shard, CRL: crl})
	}
	return out, nil
}

// Revocations lists every serial site's archived CRLs hold, sorted.
func (s Store) Revocations(site string) ([]Revoked, error) {
	crls, err := s.CRLs(site)
	if err != nil {
		return nil, err
	}
	return revocations(crls), nil
}

// revocations lists every serial of crls, sorted.
func revocations(crls []ArchivedCRL) []Revoked {
	var out []Revoked
	for _, c := range crls {
		for _, e := range c.CRL.RevokedCertificateEntries {
			out = append(out, Revoked{Serial: fmt.Sprintf("%036x", e.SerialNumber), IssuerID: c.IssuerID, Shard: c.Shard,
				RevokedAt: e.RevocationTime.UTC(), Reason: e.ReasonCode})
		}
	}
	slices.SortFunc(out, func(a, b Revoked) int { return strings.Compare(a.Serial, b.Serial) })
	return out
}
