package lab

import (
	"context"
	"encoding/binary"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/internal/labtest"
	"github.com/cairn-pki/cairn/internal/rfc2136"
	"github.com/cairn-pki/cairn/internal/testenv"
	"github.com/cairn-pki/cairn/site"
)

// No secret the lab generates is ever on a command line, which every user
// of the machine reads in /proc/<pid>/cmdline: not while `lab up` creates
// the PKI (ceremonies, SoftHSM token children), seeds the DNS and starts
// the sites, and not in any process of the running lab. The lab's DNS is
// PowerDNS, whose seed and API key are secrets BIND's is not.
func TestNoSecretOnAnyCommandLine(t *testing.T) {
	testenv.Integration(t, labTools...)
	spec := labtest.SpecWithDNS(t, labtest.BlockLab, cluster.DNSProviderPowerDNS, "", "a", "b")
	watch := watchExecs(t)
	l, _ := upLab(t, spec)
	during := watch.stop()

	st, err := l.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	after := map[string]string{} // pid -> command line, every process now
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if line := commandLine(e.Name()); line != "" {
			after[e.Name()] = line
		}
	}
	// The walk saw every process of the lab, and `lab up` was sampled
	// while it ran the ceremonies.
	procs := st.Cluster
	for _, s := range st.Sites {
		procs = append(procs, s.Processes...)
	}
	for _, p := range procs {
		if !p.Up || after[fmt.Sprint(p.PID)] == "" {
			t.Errorf("lab process %s (pid %d, up %v): no command line read", p.Name, p.PID, p.Up)
		}
	}
	var ceremonies, tokenChildren int
	for line, n := range during {
		if strings.Contains(line, "/ceremony -config ") {
			ceremonies += n
		}
		if strings.HasSuffix(line, " pki token") {
			tokenChildren += n
		}
	}
	if tokens := len(spec.Sites) + 2; ceremonies == 0 || tokenChildren < tokens || watch.lost > 0 {
		t.Errorf("during lab up: %d ceremonies, %d token children (want at least one per token: %d), %d event overruns",
			ceremonies, tokenChildren, tokens, watch.lost)
	}
	t.Logf("%d lab processes now; during lab up: %d programs executed (%d gone before read), %d distinct command lines, %d ceremonies, %d token children",
		len(procs), watch.execs, watch.missed, len(during), ceremonies, tokenChildren)

	secrets := labSecrets(t, l)
	kinds := map[string]int{}
	var others []string
	for _, s := range secrets {
		kinds[s.kind]++
		if s.kind == otherSecret {
			rel, _ := filepath.Rel(l.Spec.Dir, s.file)
			others = append(others, rel)
		}
	}
	t.Logf("%d secrets: %v; the others: %s", len(secrets), kinds, strings.Join(others, " "))
	lines := during
	for _, line := range after {
		lines[line]++
	}
	for line := range lines {
		for _, s := range secrets {
			if strings.Contains(line, s.value) {
				t.Errorf("%s (%s) is on a command line: %.160s", s.kind, s.file, strings.ReplaceAll(line, s.value, "<secret>"))
			}
		}
	}
}

// otherSecret is the kind of a secret file no other kind names.
const otherSecret = "another secret"

// secret is one generated secret, its kind and the file that holds it.
type secret struct{ kind, file, value string }

// labSecrets reads every secret the lab generated: each kind it must have
// made, and any other one-line secret file in a secrets directory.
func labSecrets(t *testing.T, l *Lab) []secret {
	t.Helper()
	spec := l.Spec
	var out []secret
	seen := map[string]bool{}
	add := func(kind, file string, optional bool) {
		b, err := os.ReadFile(file)
		if optional && err != nil {
			return
		}
		v := strings.TrimSpace(string(b))
		if strings.HasSuffix(file, ".key") && strings.Contains(v, "secret") {
			var k rfc2136.Key
			if k, err = rfc2136.ReadKey(file); err == nil {
				v = k.Secret
			}
		}
		if err != nil || len(v) < 16 || strings.ContainsAny(v, " \n") {
			t.Fatalf("%s in %s: %v (%d bytes)", kind, file, err, len(v))
		}
		if !seen[file] {
			seen[file] = true
			out = append(out, secret{kind, file, v})
		}
	}
	tokens := []cluster.Token{spec.PKI.HSM.Root, spec.PKI.HSM.Infrastructure}
	for _, s := range spec.Sites {
		tokens = append(tokens, s.HSM)
		add("the database replication password", spec.Path(site.ReplicationPasswordFile(s.Name)), false)
		sec := func(name string) string { return filepath.Join(l.siteDir(s.Name), "secrets", name) }
		add("the Redis password", sec("redis.pw"), false)
		add("the nonce HMAC key", sec("nonce_hmac.key"), false)
		add("the CRL store access key", sec("aws_secret_access_key"), false)
		dbs, _ := filepath.Glob(sec("db_*.pw"))
		if len(dbs) == 0 {
			t.Fatalf("site %s: no database user passwords (db_*.pw)", s.Name)
		}
		for _, f := range dbs {
			add("a database user's password", f, false)
		}
	}
	for _, tok := range tokens {
		add("an HSM PIN", spec.Path(tok.PINFile), false)
		add("an HSM SO PIN", strings.TrimSuffix(spec.Path(tok.PINFile), ".pin")+".so-pin", false)
	}
	add("the database admin password", spec.Path(site.AdminPasswordFile), false)
	add("the database monitor password", spec.Path(site.MonitorPasswordFile), false)
	add("the controller's TSIG secret", spec.Path(spec.DNS.TSIG.ControllerKeyFile), false)
	add("the clients' TSIG secret", spec.Path(spec.DNS.TSIG.ClientKeyFile), false)
	add("the zone transfer TSIG secret", filepath.Join(l.clusterDir(), "secrets", "xfr.key"), false)
	add("the failover admin token", spec.Path(spec.Failover.AdminTokenFile), false)
	add("the PowerDNS API key", spec.Path(spec.DNS.PowerDNS.APIKeyFile), false)
	// Anything else that looks like a secret in a secrets directory.
	err := filepath.WalkDir(spec.Dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Base(filepath.Dir(path)) != "secrets" {
			return err
		}
		if b, err := os.ReadFile(path); err == nil {
			if v := strings.TrimSpace(string(b)); len(v) >= 16 && !strings.ContainsAny(v, " \n") {
				add(otherSecret, path, true)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// commandLine is the command line of process pid ("" if gone or not a
// process), arguments separated by spaces.
func commandLine(pid string) string {
	if pid == "" || pid[0] < '0' || pid[0] > '9' {
		return ""
	}
	b, err := os.ReadFile("/proc/" + pid + "/cmdline")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
}

// execWatcher records the command line of every program any process
// executes while it watches: the kernel's process events connector
// (netlink, root only) reports each exec, and its /proc/<pid>/cmdline is
// read at once, so even a child that lives a few milliseconds is seen.
type execWatcher struct {
	fd     int
	lines  map[string]int // command line -> times executed
	execs  int            // exec events
	missed int            // processes gone before their command line was read
	lost   int            // event buffer overruns
	quit   chan struct{}
	done   chan struct{}
}

func watchExecs(t *testing.T) *execWatcher {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_NETLINK, syscall.SOCK_DGRAM, netlinkConnector)
	if err != nil {
		t.Fatalf("process events connector: %v (lab tests run as root on Linux)", err)
	}
	syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, 8<<20)
	syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &syscall.Timeval{Usec: 100_000})
	if err := syscall.Bind(fd, &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK, Groups: cnIdxProc}); err != nil {
		syscall.Close(fd)
		t.Fatalf("process events connector: %v", err)
	}
	// nlmsghdr (16 bytes), cn_msg (20: idx, val, seq, ack, len, flags), op.
	msg := make([]byte, 16+20+4)
	binary.LittleEndian.PutUint32(msg[0:], uint32(len(msg)))
	binary.LittleEndian.PutUint16(msg[4:], syscall.NLMSG_DONE)
	binary.LittleEndian.PutUint32(msg[16:], cnIdxProc)
	binary.LittleEndian.PutUint32(msg[20:], cnValProc)
	binary.LittleEndian.PutUint16(msg[32:], 4)
	binary.LittleEndian.PutUint32(msg[36:], procCnMcastListen)
	if err := syscall.Sendto(fd, msg, 0, &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK}); err != nil {
		syscall.Close(fd)
		t.Fatalf("process events connector: listen: %v", err)
	}
	w := &execWatcher{fd: fd, lines: map[string]int{}, quit: make(chan struct{}), done: make(chan struct{})}
	go w.loop()
	t.Cleanup(func() { w.stop() })
	return w
}

const (
	netlinkConnector  = 11 // NETLINK_CONNECTOR
	cnIdxProc         = 1
	cnValProc         = 1
	procCnMcastListen = 1
	procEventExec     = 2
)

func (w *execWatcher) loop() {
	defer close(w.done)
	buf := make([]byte, 4096)
	for {
		select {
		case <-w.quit:
			return
		default:
		}
		n, _, err := syscall.Recvfrom(w.fd, buf, 0)
		if err == syscall.ENOBUFS {
			w.lost++
			continue
		}
		// proc_event after the headers: what, cpu, timestamp (8), then
		// for exec: pid, tgid.
		if err != nil || n < 16+20+24 || binary.LittleEndian.Uint32(buf[36:]) != procEventExec {
			continue
		}
		w.execs++
		if line := commandLine(strconv.Itoa(int(binary.LittleEndian.Uint32(buf[56:])))); line != "" {
			w.lines[line]++
		} else {
			w.missed++
		}
	}
}

// stop ends the watch (once) and returns the command lines seen, with
// how often each was executed.
func (w *execWatcher) stop() map[string]int {
	select {
	case <-w.quit:
	default:
		close(w.quit)
		<-w.done
		syscall.Close(w.fd)
	}
	return w.lines
}
