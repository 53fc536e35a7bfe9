package connlimit

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/cairn-pki/cairn/internal/abusetest"
)

// An operator listener (the controller's port, probe --watch, the
// fronts' metrics) under a stranger: 60 silent connections at once from
// one address, as many as it can open in 8 s. The listener holds at most
// OperatorPerSource of them, each for at most OperatorHeaderTimeout, and a
// client from another address gets every answer meanwhile.
func TestOperatorListenerSurvivesAStranger(t *testing.T) {
	if testing.Short() {
		t.Skip("8 s of attack")
	}
	addr := "127.0.181.1:9180"
	srv, err := ServeHTTP(addr, "test.listen", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	attack := make(chan abusetest.Result, 1)
	go func() {
		attack <- abusetest.Attack(ctx, "127.0.182.1", addr, func(net.Conn) error { return nil }, 60, 3000, 8*time.Second)
	}()
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.182.2")}}).DialContext, DisableKeepAlives: true}}
	answered, failed := 0, 0
	var maxOpen int64
	var res abusetest.Result
	for done := false; !done; {
		select {
		case res = <-attack:
			done = true
		case <-time.After(200 * time.Millisecond):
			maxOpen = max(maxOpen, srv.Stats.Open.Load())
			resp, err := client.Get("http://" + addr + "/")
			if err != nil {
				failed++
				t.Logf("client: %v", err)
				continue
			}
			resp.Body.Close()
			answered++
		}
	}
	t.Logf("%s; client: %d answered, %d failed", res, answered, failed)
	if failed > 0 || answered < 20 {
		t.Errorf("the client got %d answers and %d failures during the attack", answered, failed)
	}
	t.Logf("the listener held at most %d connections; %d refused over the source's cap", maxOpen, srv.Stats.RefusedPer.Load())
	if maxOpen > OperatorPerSource+1 || srv.Stats.RefusedPer.Load() == 0 {
		t.Errorf("the listener held up to %d connections (cap %d per source, +1 for the client), refused %d", maxOpen, OperatorPerSource, srv.Stats.RefusedPer.Load())
	}
	if res.Longest() > OperatorHeaderTimeout+time.Second {
		t.Errorf("a silent connection was held %v, deadline %v", res.Longest(), OperatorHeaderTimeout)
	}
	if res.Attempts <= OperatorPerSource {
		t.Errorf("the attack opened only %d connections", res.Attempts)
	}
}
