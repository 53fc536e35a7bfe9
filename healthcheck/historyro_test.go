package healthcheck

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A reader (a drill, `cairn report samples`, maybe as another user than
// the controller) opens the history read-only: it sees what the running
// writer recorded, cannot write, and creates nothing where there is no
// history.
func TestHistoryReadOnly(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "var", "probe-history.db")
	if _, err := OpenHistoryReadOnly(path); err == nil {
		t.Fatal("read-only open of a missing history: no error")
	}
	if _, err := os.Stat(filepath.Dir(path)); err == nil {
		t.Error("a read-only open of a missing history made its directory")
	}
	w, err := OpenHistory(path, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	at := time.Now().Add(-time.Second).Truncate(time.Millisecond)
	if err := w.Record(ctx, Result{Site: "a", Kind: KindIssuance, OK: false, Started: at, Steps: []Step{{Name: "finalize", Detail: "HTTP 500"}}}); err != nil {
		t.Fatal(err)
	}
	r, err := OpenHistoryReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got, err := r.Samples(ctx, at.Add(-time.Minute))
	if err != nil || len(got) != 1 || got[0].Site != "a" || got[0].OK || !got[0].At.Equal(at) {
		t.Fatalf("samples through the read-only history: %+v %v", got, err)
	}
	if err := r.Record(ctx, Result{Site: "b", Kind: KindIssuance, OK: true, Started: at}); err == nil {
		t.Error("the read-only history recorded a result")
	}
}
