package healthcheck

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/internal/acmefront"
)

// directoryFields are the URLs RFC 8555 §7.1.1 requires.
var directoryFields = []string{"newNonce", "newAccount", "newOrder", "revokeCert", "keyChange"}

// ProbeDirectory fetches the directory and checks it names every resource
// RFC 8555 requires. (Boulder answers this from memory: a healthy
// directory says little about the site.) It records the profiles the
// directory advertises (fact "profiles") and, when the target knows the
// spec's, compares them (step "profiles").
func ProbeDirectory(ctx context.Context, t *Target) Result {
	r := newRecorder(t.Site, KindDirectory)
	if dir, err := fetchDirectory(ctx, t, r); err == nil {
		got := advertisedProfiles(dir)
		r.fact(FactProfiles, profileList(got, false))
		if t.Profiles != nil {
			r.step(StepProfiles, compareProfiles(got, t.Profiles))
		}
	}
	return r.done()
}

// StepProfiles is the directory probe's step that compares the profiles a
// site advertises with the spec's: a site that fails it works, but is not
// what the spec says (not yet re-rendered, or rendered from another spec).
const StepProfiles = "profiles"

// FactProfiles: the profile names the directory advertises, sorted and
// comma-separated ("(none)" when it advertises none).
const FactProfiles = "profiles"

// advertisedProfiles reads meta.profiles (draft-ietf-acme-profiles): name
// -> description.
func advertisedProfiles(dir map[string]any) map[string]string {
	meta, _ := dir["meta"].(map[string]any)
	profiles, _ := meta["profiles"].(map[string]any)
	out := make(map[string]string, len(profiles))
	for name, desc := range profiles {
		d, _ := desc.(string)
		out[name] = d
	}
	return out
}

// compareProfiles fails when the site's profiles (names, then
// descriptions) are not the spec's.
func compareProfiles(site, spec map[string]string) error {
	if !slices.Equal(slices.Sorted(maps.Keys(site)), slices.Sorted(maps.Keys(spec))) {
		return probeError{ClassMismatch, fmt.Sprintf("profiles differ from the spec: site has [%s], spec has [%s]",
			profileList(site, false), profileList(spec, false))}
	}
	if !maps.Equal(site, spec) {
		return probeError{ClassMismatch, fmt.Sprintf("profile descriptions differ from the spec: site has [%s], spec has [%s]",
			profileList(site, true), profileList(spec, true))}
	}
	return nil
}

// maxListed bounds how many profiles a fact or a detail names (a
// directory is the server's to fill).
const maxListed = 20

// profileList names profiles sorted, with their descriptions when
// described: "classic,shortlived" or `classic="90 days" …`; a name or
// description that is not plain is quoted and cut.
func profileList(profiles map[string]string, described bool) string {
	if len(profiles) == 0 {
		return "(none)"
	}
	var parts []string
	for i, name := range slices.Sorted(maps.Keys(profiles)) {
		if i == maxListed {
			parts = append(parts, fmt.Sprintf("… %d more", len(profiles)-maxListed))
			break
		}
		item := plainName(name)
		if described {
			item += "=" + strconv.Quote(cluster.Excerpt(profiles[name]))
		}
		parts = append(parts, item)
	}
	if described {
		return strings.Join(parts, " ")
	}
	return strings.Join(parts, ",")
}

// plainName is a profile name as it is, when it is one Boulder could
// have (letters and digits), else quoted and cut.
func plainName(name string) string {
	if name != "" && len(name) <= 32 && !strings.ContainsFunc(name, func(r rune) bool {
		return (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9')
	}) {
		return name
	}
	return strconv.Quote(cluster.Excerpt(name))
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
