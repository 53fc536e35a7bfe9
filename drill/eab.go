package drill

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"time"

	"golang.org/x/crypto/acme"

	"github.com/cairn-pki/cairn/accounts"
	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/internal/fsutil"
)

// A drill on a cluster that requires External Account Binding
// (eab.required, docs/authority.md) makes one key per run, labelled
// drill-<scenario>-<time>, with the code of `cairn accounts eab create`;
// every client of the run (the built-in ones and the real ones) registers
// with it, and the run revokes it at its end. The key's ID is journaled,
// so a drill killed before its end has its key revoked by the next drill
// or `cairn drill restore`. The HMAC key is in no log, report or journal.

// drillKey is one run's EAB key.
type drillKey struct {
	kid  string
	hmac string // base64url, as clients take it
}

// binding is the key for the Go ACME client (nil without a key).
func (k *drillKey) binding() *acme.ExternalAccountBinding {
	if k == nil {
		return nil
	}
	secret, _ := base64.RawURLEncoding.DecodeString(k.hmac)
	return &acme.ExternalAccountBinding{KID: k.kid, Key: secret}
}

// drillKeyLabel labels the key of a run of scenario started at t.
func drillKeyLabel(scenario string, t time.Time) string {
	return "drill-" + scenario + "-" + t.UTC().Format("20060102T150405Z")
}

// drillEAB works on the sites' EAB tables as `cairn accounts eab` does.
func drillEAB(spec *cluster.Spec, log io.Writer) (*accounts.EAB, error) {
	adm, err := accounts.Admin(spec)
	if err != nil {
		return nil, fmt.Errorf("eab.required: the drill makes an EAB key for its clients: %w", err)
	}
	if log == nil {
		log = io.Discard
	}
	return &accounts.EAB{Spec: spec, Open: adm, Log: log, Wait: 30 * time.Second}, nil
}

// makeKey makes the run's key when the spec requires EAB (nil when it does
// not) and journals its ID.
func (r *Runner) makeKey(ctx context.Context, rep *Report) (*drillKey, error) {
	if !r.spec.EAB.Required {
		return nil, nil
	}
	e, err := drillEAB(r.spec, r.Log)
	if err != nil {
		return nil, err
	}
	label := drillKeyLabel(r.Scenario.Name, time.Now())
	k, err := e.Create(ctx, "", label, nil)
	if err != nil {
		return nil, fmt.Errorf("eab.required: the drill's EAB key: %w", err)
	}
	rep.EABKey = k.KID
	r.event("eab-key", k.Site, fmt.Sprintf("EAB key %s (%s) for the drill's clients", k.KID, label))
	r.mu.Lock()
	r.jrnl.EABKey = k.KID
	jerr := writeJournal(r.spec, &r.jrnl)
	r.mu.Unlock()
	key := &drillKey{kid: k.KID, hmac: k.HMAC}
	if jerr != nil {
		r.revokeKey(ctx, key, rep)
		return nil, fmt.Errorf("the drill's EAB key: the journal cannot be written (key revoked): %w", jerr)
	}
	return key, nil
}

// revokeKey revokes the run's key at every reachable site (once) and
// takes it out of the journal; a key it could not revoke stays there and
// is a restore error of the report.
func (r *Runner) revokeKey(ctx context.Context, k *drillKey, rep *Report) {
	if k == nil || rep.EABKeyRevoked {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	err := revokeDrillKey(ctx, r.spec, r.Log, k.kid)
	if err != nil {
		rep.RestoreErrors = append(rep.RestoreErrors, fmt.Sprintf("EAB key %s: %v (revoke it: cairn accounts eab revoke %s)", k.kid, err, k.kid))
		r.event("restore-failed", "", "EAB key "+k.kid+": "+err.Error())
		return
	}
	rep.EABKeyRevoked = true
	r.event("eab-key-revoked", "", "EAB key "+k.kid+" revoked")
	r.mu.Lock()
	r.jrnl.EABKey = ""
	jerr := writeJournal(r.spec, &r.jrnl)
	r.mu.Unlock()
	if jerr != nil {
		rep.RestoreErrors = append(rep.RestoreErrors, "journal: "+jerr.Error())
	}
}

func revokeDrillKey(ctx context.Context, spec *cluster.Spec, log io.Writer, kid string) error {
	e, err := drillEAB(spec, log)
	if err != nil {
		return err
	}
	_, err = e.Revoke(ctx, "", kid)
	return err
}

// certbotEABFile is the certbot configuration file (-c) that gives it the
// key: certbot reads every long option from it, so the HMAC key is not on
// its command line.
const certbotEABFile = "eab.ini"

// withEAB gives a real client the run's key: certbot in a configuration
// file (0600) named on its command line, lego v5 in its environment
// (LEGO_EAB_*), lego 4 on its command line, which is the only way it
// takes a key (its flags --eab --kid --hmac have no environment variable,
// and it wants them on every command, renew included, once the directory
// requires EAB). The command lines never reach a log or the report.
func (rc *realClient) withEAB(k *drillKey) error {
	if k == nil {
		return nil
	}
	switch rc.kind.program {
	case "certbot":
		file := filepath.Join(rc.dir, certbotEABFile)
		if err := fsutil.WriteFileAtomic(file, []byte("eab-kid = "+k.kid+"\neab-hmac-key = "+k.hmac+"\n"), 0o600); err != nil {
			return err
		}
		rc.issue = append(rc.issue, "--config", file)
	case "lego5":
		rc.secretEnv = append(rc.secretEnv, "LEGO_EAB=true", "LEGO_EAB_KID="+k.kid, "LEGO_EAB_HMAC="+k.hmac)
	default:
		// lego 4 refuses any command, revoke too, without them when the
		// directory requires EAB (its account exists).
		flags := []string{"--eab", "--kid", k.kid, "--hmac=" + k.hmac}
		rc.issue, rc.renew = beforeCommand(rc.issue, flags), beforeCommand(rc.renew, flags)
		if len(rc.revoke) > 0 {
			rc.revoke = beforeCommand(rc.revoke, flags)
		}
	}
	return nil
}

// beforeCommand inserts lego's global flags before its command (run,
// renew, revoke: the first of them after the last flag's value).
func beforeCommand(line, flags []string) []string {
	i := slices.IndexFunc(line, func(a string) bool { return a == "run" || a == "renew" || a == "revoke" })
	if i < 0 {
		return append(slices.Clone(line), flags...)
	}
	return slices.Concat(line[:i], flags, line[i:])
}

// revokeLeftoverKey revokes the EAB key of a drill that did not finish.
func revokeLeftoverKey(ctx context.Context, spec *cluster.Spec, kid string) (string, error) {
	if err := revokeDrillKey(ctx, spec, nil, kid); err != nil {
		return "", fmt.Errorf("EAB key %s: %w (revoke it: cairn accounts eab revoke %s)", kid, err, kid)
	}
	return "EAB key " + kid + " revoked", nil
}
