package healthcheck

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/cairn-pki/cairn/internal/acmefront"
)

// directoryFields are the URLs RFC 8555 §7.1.1 requires.
var directoryFields = []string{"newNonce", "newAccount", "newOrder", "revokeCert", "keyChange"}

// ProbeDirectory fetches the directory and checks it names every resource
// RFC 8555 requires. (Boulder answers this from memory: a healthy
// directory says little about the site.)
func ProbeDirectory(ctx context.Context, t *Target) Result {
	r := newRecorder(t.Site, KindDirectory)
	fetchDirectory(ctx, t, r)
	return r.done()
}

// fetchDirectory records the "directory" step and returns the document.
func fetchDirectory(ctx context.Context, t *Target, r *recorder) (map[string]any, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.DirectoryURL, nil)
	if err != nil {
		return nil, r.step("directory", err)
	}
	resp, err := t.httpClient().Do(req)
	if err != nil {
		return nil, r.step("directory", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err == nil && resp.StatusCode != http.StatusOK {
		err = httpStatusError{resp.StatusCode, fmt.Sprintf("GET %s: HTTP %d", t.DirectoryURL, resp.StatusCode)}
	}
	var dir map[string]any
	if err == nil {
		if jerr := json.Unmarshal(body, &dir); jerr != nil {
			err = probeError{ClassProtocol, "directory is not JSON: " + jerr.Error()}
		}
	}
	if err == nil {
		for _, f := range directoryFields {
			if s, ok := dir[f].(string); !ok || s == "" {
				err = probeError{ClassProtocol, "directory lacks " + f}
				break
			}
		}
	}
	if r.step("directory", err) != nil {
		return nil, err
	}
	r.res.Steps[len(r.res.Steps)-1].HTTPStatus = resp.StatusCode
	recordRelease(r, resp.Header.Get(acmefront.ReleaseHeader))
	return dir, nil
}

// Facts of the release a site runs, from its directory.
const (
	FactBoulderVersion = "boulderVersion"
	FactBundle         = "bundle"
)

// recordRelease keeps the release a cairn site's front names on its
// directory as facts of the result.
func recordRelease(r *recorder, header string) {
	rel := acmefront.ParseRelease(header)
	if rel.Boulder != "" {
		r.fact(FactBoulderVersion, rel.Boulder)
	}
	if rel.Bundle != "" {
		r.fact(FactBundle, rel.Bundle)
	}
}
