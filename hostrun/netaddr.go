package hostrun

import (
	"fmt"
	"net"
	"os/exec"
	"strings"
)

// BIND binds only addresses that exist on an interface; Go servers bind
// any 127/8 address. The BIND addresses are added to lo as /32 (the lab
// removes exactly the ones it added).

func hasAddress(ip string) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.String() == ip {
			return true
		}
	}
	return false
}

// AddLoopback adds ip/32 to lo; added is false when it was already there.
func AddLoopback(ip string) (added bool, err error) {
	if hasAddress(ip) {
		return false, nil
	}
	out, err := exec.Command("ip", "addr", "add", ip+"/32", "dev", "lo").CombinedOutput()
	if err != nil {
		return false, fmt.Errorf("ip addr add %s/32 dev lo: %v: %s (the lab needs root, or CAP_NET_ADMIN, for this)", ip, err, strings.TrimSpace(string(out)))
	}
	return true, nil
}

// RemoveLoopback removes ip/32 from lo, if it is there.
func RemoveLoopback(ip string) error {
	if !hasAddress(ip) {
		return nil
	}
	out, err := exec.Command("ip", "addr", "del", ip+"/32", "dev", "lo").CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip addr del %s/32 dev lo: %v: %s", ip, err, strings.TrimSpace(string(out)))
	}
	return nil
}
