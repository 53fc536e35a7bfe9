package healthcheck

import (
	"context"
	"errors"

	"golang.org/x/crypto/acme"
)

// ProbeAccount looks the probe account up with newAccount and
// onlyReturnExisting: the cheapest request that needs a nonce from the
// nonce service and a read from the database. If the site does not know
// the probe key yet, it registers it (a write).
func ProbeAccount(ctx context.Context, t *Target) Result {
	r := newRecorder(t.Site, KindAccount)
	c, err := t.acmeClient()
	if err != nil {
		r.step("config", err)
		return r.done()
	}
	defer c.Close()
	_, err = c.ACME().Discover(ctx)
	if r.step("directory", err) != nil {
		return r.done()
	}
	acct, err := c.ACME().GetReg(ctx, "")
	if errors.Is(err, acme.ErrNoAccount) {
		r.step("account", nil)
		acct, err = c.Register(ctx)
		if r.step("register", err) != nil {
			return r.done()
		}
	} else if r.step("account", err) != nil {
		return r.done()
	}
	r.fact("account", acct.URI)
	return r.done()
}
