package drill

import (
	"bufio"
	"context"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-pki/cairn/internal/testenv"
)

// A connection through a toxic fault that ends after the fault's Restore
// leaves a conntrack entry bound to that fault's proxy (no table needs
// conntrack any more to see it end). A new connection from the same port
// during a later fault matched that entry and went to the dead proxy:
// "connection refused" (seen once in make test). Inject forgets the WFE's
// entries: the same port goes through the new proxy.
func TestToxicForgetsStaleConntrackEntries(t *testing.T) {
	testenv.Integration(t, "nft", "conntrack", "ip")
	if os.Geteuid() != 0 {
		t.Fatal("nftables and conntrack need root")
	}
	const ip = "127.0.199.1"
	if out, err := exec.Command("ip", "addr", "add", ip+"/32", "dev", "lo").CombinedOutput(); err != nil && !strings.Contains(string(out), "File exists") {
		t.Fatalf("ip addr add: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "addr", "del", ip+"/32", "dev", "lo").Run() })
	// The server says whom it sees: the client's own address when the
	// connection came straight, the proxy's otherwise.
	l, err := net.Listen("tcp", ip+":8443")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				c.Write([]byte(c.RemoteAddr().String() + "\n"))
				bufio.NewReader(c).ReadString('\n')
				c.Close()
			}()
		}
	}()
	ctx := context.Background()
	table := "cairn_toxic_test_" + strconv.Itoa(os.Getpid())
	fault := func() *toxicFault {
		f := &toxicFault{site: "x", wfe: l.Addr().String(), kind: "latency", table: table}
		if err := f.Inject(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Restore(context.Background()) })
		return f
	}
	// One local port for both connections (a free one, then reused).
	reuse := &net.Dialer{Timeout: 3 * time.Second, Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1) })
	}}
	seen := func(c net.Conn) string {
		c.SetDeadline(time.Now().Add(3 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		return strings.TrimSpace(line)
	}

	f := fault()
	c, err := reuse.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	local := c.LocalAddr().(*net.TCPAddr)
	if who := seen(c); who == local.String() {
		t.Fatalf("the first connection bypassed the proxy (%s)", who)
	}
	if err := f.Restore(ctx); err != nil {
		t.Fatal(err)
	}
	c.Close() // ends after the Restore: its entry stays bound to the dead proxy

	fault()
	reuse.LocalAddr = local
	var c2 net.Conn
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		// The port is ours again once the old socket has let it go.
		if c2, err = reuse.Dial("tcp", l.Addr().String()); err == nil || !strings.Contains(err.Error(), "address already in use") || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("a connection from port %d during the next fault: %v (a stale conntrack entry of the first fault's proxy?)", local.Port, err)
	}
	defer c2.Close()
	if who := seen(c2); who == local.String() {
		t.Errorf("the connection from port %d bypassed the new fault's proxy", local.Port)
	}
}
