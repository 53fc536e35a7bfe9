package healthcheck

import (
	"context"
	"fmt"
	"net/http"
)

// ProbeNonce asks for a fresh nonce (HEAD newNonce) and expects a
// Replay-Nonce header: the WFE gets it from the nonce service.
func ProbeNonce(ctx context.Context, t *Target) Result {
	r := newRecorder(t.Site, KindNonce)
	dir, err := fetchDirectory(ctx, t, r)
	if err != nil {
		return r.done()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, dir["newNonce"].(string), nil)
	if err != nil {
		r.step("nonce", err)
		return r.done()
	}
	resp, err := t.httpClient().Do(req)
	if err == nil {
		resp.Body.Close()
		switch {
		case resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNoContent:
			err = httpStatusError{resp.StatusCode, fmt.Sprintf("HEAD newNonce: HTTP %d", resp.StatusCode)}
		case resp.Header.Get("Replay-Nonce") == "":
			err = probeError{ClassProtocol, "HEAD newNonce: no Replay-Nonce header"}
		}
	}
	r.step("nonce", err)
	if resp != nil {
		r.res.Steps[len(r.res.Steps)-1].HTTPStatus = resp.StatusCode
	}
	return r.done()
}
