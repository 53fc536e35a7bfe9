package provision

import (
	"strings"
	"testing"
)

func TestParseOutputsChecksTheContract(t *testing.T) {
	good := `{"sites":{"value":{"a":{"name":"a","location":"lab","addresses":["10.0.0.1"],"connection":{"type":"ssh","user":"admin","port":22}}}},
	 "dns_servers":{"value":[{"name":"p","role":"primary","location":"","address":"10.0.9.1:53","connection":{"type":"local"}}]}}`
	o, err := ParseOutputs([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if o.Sites["a"].Connection.User != "admin" || o.DNSServers[0].Address != "10.0.9.1:53" {
		t.Errorf("parsed %+v", o)
	}
	for _, tc := range []struct{ json, want string }{
		{`{"sites":{"value":{}}}`, `"dns_servers" is missing`},
		{strings.Replace(good, `"name":"a"`, `"name":"b"`, 1), `sites.a.name is "b"`},
		{strings.Replace(good, `"10.0.0.1"`, `"host-a"`, 1), `sites.a.addresses[0] "host-a" is not an IP address`},
		{strings.Replace(good, `"type":"ssh","user":"admin"`, `"type":"ssh","user":""`, 1), `sites.a.connection: ssh needs user and port`},
		{strings.Replace(good, `"role":"primary"`, `"role":"secondary"`, 1), `dns_servers[0].role is "secondary", want primary`},
		{strings.Replace(good, `"type":"local"`, `"type":"telnet"`, 1), `dns_servers[0].connection.type "telnet"`},
	} {
		if _, err := ParseOutputs([]byte(tc.json)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("error %v, want %q", err, tc.want)
		}
	}
}
