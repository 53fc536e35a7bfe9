package revocation

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/cairn-pki/cairn/agent"
	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/site"
)

// Agents reaches every site's agent (package agent) with the controller's
// credential for that site (site.ControllerAgentDir next to the spec): a
// client certificate of the site's internal CA naming
// agent.ControllerName, which the site's RA and SA do not accept. It is
// what the controller (and `cairn revoke` without a controller) revokes,
// blocks keys and publishes CRLs with.
type Agents struct {
	Spec *cluster.Spec
}

func (a Agents) client(name string) (*http.Client, string, error) {
	dir := a.Spec.Path(site.ControllerAgentDir(name))
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
	if err != nil {
		return nil, "", fmt.Errorf("site %s: the controller's agent credential: %w (cairn lab up or provision apply renders it)", name, err)
	}
	ca, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		return nil, "", fmt.Errorf("site %s: %w", name, err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	at, err := site.AgentAddr(a.Spec, name)
	if err != nil {
		return nil, "", err
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, ServerName: agent.ServerName, MinVersion: tls.VersionTLS13}
	// A site that is gone costs 10 s, not the kernel's SYN retries.
	dial := &net.Dialer{Timeout: 10 * time.Second}
	return &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{TLSClientConfig: tc, DisableKeepAlives: true,
		DialContext: dial.DialContext, TLSHandshakeTimeout: 10 * time.Second}}, "https://" + at, nil
}

// call posts req to path at site's agent.
func (a Agents) call(ctx context.Context, name, path string, req agent.Request) (agent.Answer, int, error) {
	hc, base, err := a.client(name)
	if err != nil {
		return agent.Answer{}, 0, err
	}
	body, _ := json.Marshal(req)
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, base+path, bytes.NewReader(body))
	if err != nil {
		return agent.Answer{}, 0, err
	}
	r.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(r)
	if err != nil {
		return agent.Answer{}, 0, fmt.Errorf("site %s: agent: %w", name, err)
	}
	defer resp.Body.Close()
	var ans agent.Answer
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&ans); err != nil {
		return ans, resp.StatusCode, fmt.Errorf("site %s: agent answered HTTP %d without a JSON body", name, resp.StatusCode)
	}
	if resp.StatusCode != http.StatusOK && ans.Error == "" {
		ans.Error = http.StatusText(resp.StatusCode)
	}
	return ans, resp.StatusCode, nil
}

// Revoke revokes serial at site with reason.
func (a Agents) Revoke(ctx context.Context, name, serial, reason string) error {
	if err := CheckReason(reason); err != nil {
		return err
	}
	ans, status, err := a.call(ctx, name, "/v1/revoke", agent.Request{Serial: serial, Reason: reason})
	switch {
	case err != nil:
		return err
	case status == http.StatusOK && ans.Result == "alreadyRevoked":
		return ErrAlreadyRevoked
	case status == http.StatusOK:
		return nil
	case status == http.StatusNotFound:
		return fmt.Errorf("site %s: %w (%s)", name, ErrNotFound, ans.Error)
	}
	return fmt.Errorf("site %s: revoke: %s", name, ans.Error)
}

// BlockKey blocks the key whose SPKI SHA-256 is spkiHash (hex) at site.
func (a Agents) BlockKey(ctx context.Context, name, spkiHash, comment string) error {
	ans, status, err := a.call(ctx, name, "/v1/block-key", agent.Request{SPKIHash: spkiHash, Comment: comment})
	if err == nil && status != http.StatusOK {
		err = fmt.Errorf("site %s: block-key: %s", name, ans.Error)
	}
	return err
}

// PublishCRLs has site sign and publish its CRLs now.
func (a Agents) PublishCRLs(ctx context.Context, name string) error {
	ans, status, err := a.call(ctx, name, "/v1/publish-crls", agent.Request{})
	if err == nil && status != http.StatusOK {
		err = fmt.Errorf("site %s: publish-crls: %s", name, ans.Error)
	}
	return err
}

// Backup has site's agent stream a backup of the site's database into w
// (hostrun.BackupDB's format). It fails unless the agent ends the stream
// with agent.BackupTrailer "ok": a backup cut short is never taken for a
// whole one. ctx bounds it.
func (a Agents) Backup(ctx context.Context, name string, w io.Writer) error {
	hc, base, err := a.client(name)
	if err != nil {
		return err
	}
	hc.Timeout = 0 // a backup takes as long as the database is big: ctx bounds it
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/backup", http.NoBody)
	if err != nil {
		return err
	}
	resp, err := hc.Do(r)
	if err != nil {
		return fmt.Errorf("site %s: agent: %w", name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var ans agent.Answer
		json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&ans)
		return fmt.Errorf("site %s: backup: HTTP %d: %s", name, resp.StatusCode, ans.Error)
	}
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("site %s: backup: %w", name, err)
	}
	if err := agent.BackupComplete(resp); err != nil {
		return fmt.Errorf("site %s: backup: %w", name, err)
	}
	return nil
}
