package failover

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/internal/fsutil"
	"github.com/cairn-pki/cairn/revocation"
)

// clientRig serves the rig's controller through its real Handler on a
// loopback port, runs its decision loop, and gives a Client whose spec
// points to it with the operator's token in a 0600 file.
func clientRig(t *testing.T, mod func(*rig)) (*rig, *Client) {
	t.Helper()
	r := newRig(t, nil)
	if mod != nil {
		mod(r)
	}
	r.healthy("a", "b")
	const token = "client-test-token"
	srv := httptest.NewServer(r.c.Handler(r.reg, token))
	t.Cleanup(srv.Close)
	r.c.Spec.Dir = t.TempDir()
	r.c.Spec.Failover.Listen = srv.Listener.Addr().String()
	r.c.Spec.Failover.AdminTokenFile = "secrets/failover-admin-token"
	if _, err := os.Stat(r.c.Spec.Path(r.c.Spec.Failover.AdminTokenFile)); err == nil {
		t.Fatal("the token file exists before the test writes it")
	}
	if err := os.MkdirAll(filepath.Join(r.c.Spec.Dir, "secrets"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := fsutil.WriteFileAtomic(r.c.Spec.Path(r.c.Spec.Failover.AdminTokenFile), []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// From here on only the decision loop steps the controller.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return r, &Client{Spec: r.c.Spec}
}

func siteIn(st Status, name string) SiteStatus {
	for _, s := range st.Sites {
		if s.Name == name {
			return s
		}
	}
	return SiteStatus{}
}

// The operator's client drives the controller's API: status, drain,
// undrain and move are carried out and the answer is the status after
// them; a command the controller refuses is an error with its reason.
func TestClientOperatesTheController(t *testing.T) {
	_, cl := clientRig(t, nil)
	ctx := context.Background()

	st, err := cl.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Active != "a" || st.Controller != "test" || len(st.Sites) != 3 || siteIn(st, "b").State != Healthy {
		t.Fatalf("status: %+v", st)
	}

	if err := cl.Drain(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if st, _ := cl.Status(ctx); !siteIn(st, "b").Drained {
		t.Fatalf("b not drained after Drain: %+v", siteIn(st, "b"))
	}
	if err := cl.Undrain(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if st, _ := cl.Status(ctx); siteIn(st, "b").Drained {
		t.Fatalf("b still drained after Undrain: %+v", siteIn(st, "b"))
	}

	if err := cl.Move(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	st, err = cl.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Active != "b" || len(st.Moves) != 1 || st.Moves[0].From != "a" || st.Moves[0].To != "b" {
		t.Fatalf("after Move(b): active %s, moves %+v", st.Active, st.Moves)
	}

	// A drained site is no target for a move.
	if err := cl.Drain(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if err := cl.Move(ctx, "a"); err == nil || !strings.Contains(err.Error(), "move to a refused") || !strings.Contains(err.Error(), "drained") {
		t.Fatalf("move to a drained site: %v, want a refusal", err)
	}
	// c never reported: not healthy, refused with the controller's reason.
	_, err = cl.Operate(ctx, "/api/move?to=c")
	if err == nil || !strings.Contains(err.Error(), "move to c refused") {
		t.Fatalf("move to c: %v, want the controller's refusal", err)
	}
	if err := cl.Move(ctx, "nowhere"); err == nil || !strings.Contains(err.Error(), "nowhere") {
		t.Fatalf("move to an unknown site: %v", err)
	}
	// A command after a refusal reports its own outcome, not the refusal
	// before it (an undrain decides nothing to do).
	if err := cl.Undrain(ctx, "a"); err != nil {
		t.Fatalf("undrain after a refused move: %v", err)
	}
}

// Without the token file the client still reads the status, but sends no
// command (the error names the field); a wrong token is the controller's
// 401; nothing listening is ErrNoController.
func TestClientErrors(t *testing.T) {
	r, cl := clientRig(t, nil)
	ctx := context.Background()

	path := r.c.Spec.Path(r.c.Spec.Failover.AdminTokenFile)
	if err := fsutil.WriteFileAtomic(path, []byte("wrong-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := cl.Drain(ctx, "b")
	if err == nil || !strings.Contains(err.Error(), "HTTP 401") {
		t.Fatalf("drain with a wrong token: %v, want HTTP 401", err)
	}
	if st, _ := cl.Status(ctx); siteIn(st, "b").Drained {
		t.Fatal("a drain with the wrong token was carried out")
	}

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Status(ctx); err != nil {
		t.Fatalf("status without a token file: %v", err)
	}
	for _, f := range []func(context.Context, string) error{cl.Drain, cl.Undrain, cl.Move} {
		if err := f(ctx, "b"); err == nil || !strings.Contains(err.Error(), "failover.adminTokenFile") {
			t.Errorf("command without a token file: %v, want an error naming failover.adminTokenFile", err)
		}
	}
	var out []any
	if err := cl.Call(ctx, "GET", "/api/revocations", &out); err == nil || !strings.Contains(err.Error(), "failover.adminTokenFile") {
		t.Errorf("the journal without a token file: %v", err)
	}

	// A port nothing listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	spec := *r.c.Spec
	spec.Failover.Listen = closed
	gone := &Client{Spec: &spec}
	if _, err := gone.Status(ctx); !errors.Is(err, ErrNoController) || !strings.Contains(err.Error(), closed) {
		t.Fatalf("no controller: %v, want ErrNoController naming %s", err, closed)
	}
}

// Plan shows what the controller would do now without doing it: after
// the hold-down, automatic failback to the preferred site is planned, and
// carried out only by the next decision.
func TestPlanDoesNotApply(t *testing.T) {
	r := newRig(t, func(p *Policy) { p.Failback = cluster.FailbackAutomatic })
	r.healthy("a", "b")
	if p := r.c.Plan(); len(p) != 0 {
		t.Fatalf("plan with the active site healthy: %+v", p)
	}
	r.down("a")
	r.step()
	if r.served() != "b" {
		t.Fatalf("served %s after a went down", r.served())
	}
	r.healthy("a")
	r.advance(r.c.Policy.HoldDown)
	plan := r.c.Plan()
	var move *Intent
	for i := range plan {
		if plan[i].Type == IntentMove {
			move = &plan[i]
		}
	}
	if move == nil || move.To != "a" {
		t.Fatalf("plan after the hold-down: %+v, want a move back to a", plan)
	}
	if r.served() != "b" || r.c.Status().Active != "b" {
		t.Fatal("Plan moved the name")
	}
	r.step()
	if r.served() != "a" {
		t.Fatalf("the planned failback was not carried out: served %s", r.served())
	}
}

// DefaultID is the host name.
func TestDefaultID(t *testing.T) {
	h, err := os.Hostname()
	if err != nil || h == "" {
		h = "controller"
	}
	if got := DefaultID(); got != h {
		t.Fatalf("DefaultID() = %q, want %q", got, h)
	}
}

// PolicyFromSpec carries every failover field and each site's priority.
func TestPolicyFromSpec(t *testing.T) {
	spec := cluster.Default([]string{"x", "y"})
	f := &spec.Failover
	f.DownAfter, f.UpAfter, f.Quorum, f.ResumeConfirm = 4, 3, 2, 5
	f.StablePeriod.Duration, f.HoldDown.Duration, f.ViewMaxAge.Duration = 7*time.Second, 9*time.Minute, 11*time.Second
	f.Failback = cluster.FailbackAutomatic
	spec.Sites[0].Priority, spec.Sites[1].Priority = 20, 10
	p := PolicyFromSpec(spec)
	want := Policy{DownAfter: 4, UpAfter: 3, Quorum: 2, ResumeConfirm: 5, StablePeriod: 7 * time.Second, HoldDown: 9 * time.Minute,
		ViewMaxAge: 11 * time.Second, Failback: cluster.FailbackAutomatic, Sites: []string{"x", "y"}, Priority: map[string]int{"x": 20, "y": 10}}
	if !reflect.DeepEqual(p, want) {
		t.Fatalf("PolicyFromSpec:\n got %+v\nwant %+v", p, want)
	}
}

// POST /api/revoke journals the revocation for the site that issued the
// serial and tries it there at once; bad input is a 400 naming what is
// wrong; a key hash is kept for keyCompromise only; the journal lists it.
func TestRevokeThroughTheAPI(t *testing.T) {
	var mu sync.Mutex
	var revoked []string
	rep := &revocation.Replayer{Journal: &revocation.MemJournal{}, Sites: []string{"a", "b", "c"},
		Revoke: func(_ context.Context, site, serial, reason string) error {
			mu.Lock()
			defer mu.Unlock()
			revoked = append(revoked, site+" "+serial+" "+reason)
			return nil
		},
		BlockKey: func(context.Context, string, string, string) error { return nil },
		InCRL:    func(context.Context, string, string) (bool, error) { return false, nil }}
	r, cl := clientRig(t, func(r *rig) { r.c.Revocations = rep })
	ctx := context.Background()
	serialOf := func(site int) string {
		return fmt.Sprintf("%02x", r.c.Spec.Sites[site].SerialPrefix.Value()) + strings.Repeat("ab", 17)
	}
	spki := strings.Repeat("0f", 32)
	for _, c := range []struct{ query, want string }{
		{"serial=zz&reason=superseded", "HTTP 400: --serial"},
		{"serial=" + serialOf(1) + "&reason=boredom", "HTTP 400"},
		{"serial=ff" + strings.Repeat("ab", 17) + "&reason=superseded", "the serial prefix of no site"},
		{"serial=" + serialOf(1) + "&reason=keyCompromise&spki=abc", "HTTP 400: spki"},
	} {
		var e revocation.Entry
		if err := cl.Call(ctx, "POST", "/api/revoke?"+c.query, &e); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.query, err, c.want)
		}
	}
	var e revocation.Entry
	if err := cl.Call(ctx, "POST", "/api/revoke?serial="+serialOf(1)+"&reason=keyCompromise&spki="+strings.ToUpper(spki), &e); err != nil {
		t.Fatal(err)
	}
	want, _ := revocation.ParseSerial(serialOf(1))
	if e.Serial != want || e.Site != "b" || e.Reason != "keyCompromise" || e.SPKIHash != spki || e.AppliedAt.IsZero() || !strings.HasPrefix(e.Requester, "127.0.0.1:") {
		t.Errorf("entry %+v", e)
	}
	var e2 revocation.Entry // a fresh one: Unmarshal leaves fields the answer omits
	if err := cl.Call(ctx, "POST", "/api/revoke?serial="+serialOf(2)+"&reason=superseded&spki="+spki, &e2); err != nil {
		t.Fatal(err)
	}
	if e2.Site != "c" || e2.SPKIHash != "" {
		t.Errorf("superseded entry %+v: the key hash is kept", e2)
	}
	mu.Lock()
	if len(revoked) != 2 || revoked[0] != "b "+want+" keyCompromise" {
		t.Errorf("revoked at the sites: %q", revoked)
	}
	mu.Unlock()
	var list []revocation.Entry
	if err := cl.Call(ctx, "GET", "/api/revocations", &list); err != nil || len(list) != 2 {
		t.Fatalf("journal: %v %+v", err, list)
	}
}

// A controller without a journal says so.
func TestRevokeWithoutAJournal(t *testing.T) {
	_, cl := clientRig(t, nil)
	var e revocation.Entry
	if err := cl.Call(context.Background(), "POST", "/api/revoke?serial=01&reason=superseded", &e); err == nil || !strings.Contains(err.Error(), "HTTP 501") {
		t.Errorf("revoke without a journal: %v", err)
	}
	var list []revocation.Entry
	if err := cl.Call(context.Background(), "GET", "/api/revocations", &list); err != nil || list == nil || len(list) != 0 {
		t.Errorf("the journal of a controller without one: %v %v", err, list)
	}
}
