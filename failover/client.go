package failover

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/internal/fsutil"
)

// ErrNoController: nothing answers at failover.listen.
var ErrNoController = errors.New("no controller answers")

// Client talks to a running controller's API (failover.listen); POSTs
// carry the admin token of failover.adminTokenFile.
type Client struct {
	Spec *cluster.Spec
	HTTP *http.Client // nil: 10 s timeout
}

// Call sends one request and decodes the JSON answer into out.
func (c *Client) Call(ctx context.Context, method, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, "http://"+c.Spec.Failover.Listen+path, nil)
	if err != nil {
		return err
	}
	// Commands and the revocation journal need the operator's token; the
	// status carries replication details with it (without, ok or broken).
	token, err := fsutil.ReadSecret(c.Spec.Path(c.Spec.Failover.AdminTokenFile))
	switch {
	case err == nil:
		req.Header.Set("Authorization", "Bearer "+token)
	case method == http.MethodPost || strings.HasPrefix(path, "/api/revocations"):
		return fmt.Errorf("failover.adminTokenFile: %w", err)
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("%w at %s (is `cairn failover run` or the lab up?): %v", ErrNoController, c.Spec.Failover.Listen, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("controller: HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return json.Unmarshal(body, out)
}

// Status is GET /api/status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	err := c.Call(ctx, http.MethodGet, "/api/status", &st)
	return st, err
}

// Operate sends an operator command (drain, undrain, move) and returns
// the status after it, or the controller's refusal.
func (c *Client) Operate(ctx context.Context, path string) (Status, error) {
	var st Status
	if err := c.Call(ctx, http.MethodPost, path, &st); err != nil {
		return st, err
	}
	for _, in := range st.LastIntent {
		if in.Type == IntentRefused {
			return st, errors.New(in.Reason)
		}
	}
	return st, nil
}

// Drain takes a site out of rotation (the name moves away if it is active).
func (c *Client) Drain(ctx context.Context, site string) error {
	_, err := c.Operate(ctx, "/api/drain?site="+url.QueryEscape(site))
	return err
}

// Undrain puts a site back into rotation.
func (c *Client) Undrain(ctx context.Context, site string) error {
	_, err := c.Operate(ctx, "/api/undrain?site="+url.QueryEscape(site))
	return err
}

// Move asks for the ACME name to point to a site.
func (c *Client) Move(ctx context.Context, to string) error {
	_, err := c.Operate(ctx, "/api/move?to="+url.QueryEscape(to))
	return err
}

// Restored tells the controller that site was restored from a backup
// (POST /api/restored): it applies its journal's revocations and key
// blocks there again. It returns how many entries it reopened.
func (c *Client) Restored(ctx context.Context, site string) (int, error) {
	var out struct {
		Reopened int `json:"reopened"`
	}
	err := c.Call(ctx, http.MethodPost, "/api/restored?site="+url.QueryEscape(site), &out)
	return out.Reopened, err
}
