package site

import (
	"context"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/cairn-pki/cairn/internal/fsutil"
	"github.com/cairn-pki/cairn/internal/powerdns"
	"github.com/cairn-pki/cairn/internal/rfc2136"
)

// powerDNS renders a PowerDNS primary (dns.provider: powerdns): the
// controller writes the ACME name through its HTTP API; clients' DNS-01
// records still arrive as RFC 2136 updates, which a Lua policy limits to
// _acme-challenge TXT records (the clients' shared key: any; a client's
// own key: its name's); secondaries get NOTIFY and signed zone transfers.
// Its database is created and seeded once, here, before the server first
// starts; its TSIG keys follow the key files on every render.
func (r *clusterRender) powerDNS() error {
	spec := r.spec
	if r.o.Root != "" && r.o.Root != r.o.Out {
		return fmt.Errorf("dns.provider: powerdns runs in the lab so far; provisioned clusters use rfc2136 (a BIND primary)")
	}
	key, err := fsutil.EnsureSecret(spec.Path(spec.DNS.PowerDNS.APIKeyFile), 24)
	if err != nil {
		return fmt.Errorf("dns.powerdns.apiKeyFile: %w", err)
	}
	api, err := url.Parse(spec.DNS.PowerDNS.API)
	if err != nil {
		return fmt.Errorf("dns.powerdns.api: %w", err)
	}
	apiAddr, err := netip.ParseAddrPort(api.Host)
	if err != nil {
		return fmt.Errorf("dns.powerdns.api %q: the lab's PowerDNS needs IP:port", api.Host)
	}
	confDir := r.out("secrets", "pdns")
	if err := os.MkdirAll(confDir, 0o700); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(r.outVar, "pdns"), 0o755); err != nil {
		return err
	}
	var notify []string
	for _, s := range r.secondaries {
		notify = append(notify, s.String())
	}
	allow := []string{"127.0.0.0/8", r.primary.Addr().String() + "/32"}
	if ctl, err := netip.ParseAddrPort(spec.Failover.Listen); err == nil {
		allow = append(allow, ctl.Addr().String()+"/32")
	}
	conf := fmt.Sprintf(`# Cluster zone primary (PowerDNS), written by cairn. Holds the API key.
launch=gsqlite3
gsqlite3-database=%[1]s/pdns/pdns.sqlite3
local-address=%[2]s
local-port=%[3]d
query-local-address=%[2]s
socket-dir=%[1]s/run
daemon=no
guardian=no
loglevel=4
security-poll-suffix=
api=yes
api-key=%[4]s
webserver=yes
webserver-address=%[5]s
webserver-port=%[6]d
webserver-allow-from=%[7]s
# Answers change the moment the API or an update writes them.
cache-ttl=0
query-cache-ttl=0
negquery-cache-ttl=0
primary=yes
also-notify=%[8]s
only-notify=
xfr-cycle-interval=1
# Zone transfers only with the transfer key (TSIG-ALLOW-AXFR): no address
# is trusted without it.
allow-axfr-ips=
dnsupdate=yes
allow-dnsupdate-from=0.0.0.0/0
lua-dnsupdate-policy-script=%[9]s
`, r.varDir, r.primary.Addr(), r.primary.Port(), key, apiAddr.Addr(), apiAddr.Port(), strings.Join(allow, ","),
		strings.Join(notify, ","), r.root("secrets", "pdns", "update-policy.lua"))
	primary := []string{"dns-primary"}
	if err := r.writeConfig(primary, filepath.Join(confDir, "pdns.conf"), []byte(conf), 0o600); err != nil {
		return err
	}
	if err := r.writeConfig(primary, filepath.Join(confDir, "update-policy.lua"), []byte(r.updatePolicy()), 0o644); err != nil {
		return err
	}
	if err := r.seedPowerDNS(confDir); err != nil {
		return err
	}
	all := []rfc2136.Key{r.cli, r.xfr}
	if r.hosts != nil {
		all = append(all, *r.hosts)
	}
	for _, c := range r.clients {
		all = append(all, c.Key)
	}
	var keys []powerdns.Key
	for _, k := range all {
		keys = append(keys, powerdns.Key{Name: k.Name, Algorithm: k.Algorithm, Secret: k.Secret})
	}
	if err := powerdns.SetTSIGKeys(filepath.Join(r.outVar, "pdns", "pdns.sqlite3"), keys); err != nil {
		return fmt.Errorf("PowerDNS TSIG keys: %w", err)
	}
	r.primaryProc = Process{Name: "dns-primary", Program: "pdns_server", Args: []string{"--config-dir=" + r.root("secrets", "pdns")}}
	return nil
}

// updatePolicy is the Lua script PowerDNS asks about every record of an
// RFC 2136 update (it replaces PowerDNS's other update checks; the TSIG
// signature is verified before). Only TXT records whose first label is
// _acme-challenge, in the zone: any such with the clients' shared key,
// exactly _acme-challenge.<name> with the key of client name. A refused
// record fails the whole update (SERVFAIL: PowerDNS 4.7 scripts cannot
// answer REFUSED). DNSName:equal takes strings in 4.7.
func (r *clusterRender) updatePolicy() string {
	clients, hosts, reserved := "", "", ""
	for _, c := range r.clients {
		clients += fmt.Sprintf("  [%q] = %q,\n", c.Key.Name+".", c.Record()+".")
	}
	if r.hosts != nil {
		hosts = r.hosts.Name + "."
		for _, n := range ClusterNames(r.spec) {
			reserved += fmt.Sprintf("  [%q] = true,\n", strings.ToLower(n)+".")
		}
	}
	return fmt.Sprintf(`-- RFC 2136 policy of the cluster zone, written by cairn.
local ZONE = %[1]q
local KEY = %[2]q
-- A client's own key (cairn dns key add): the one record it may write.
local CLIENTS = {
%[3]s}
-- The lab's client hosts' key: A and AAAA records below the zone, none
-- of the cluster's own names ("" outside the lab).
local HOSTS = %[4]q
local RESERVED = {
%[5]s}

local function hostRecord(input, qname)
  local t = input:getQType()
  if t ~= pdns.A and t ~= pdns.AAAA then return false end
  if qname:equal(ZONE) or not qname:isPartOf(newDN(ZONE)) then return false end
  return not RESERVED[qname:toString():lower()]
end

local function allowed(input)
  local tsig = input:getTsigName()
  if tsig:countLabels() == 0 then return false end
  if not input:getZoneName():equal(ZONE) then return false end
  local qname = input:getQName()
  if HOSTS ~= "" and tsig:equal(HOSTS) then return hostRecord(input, qname) end
  if input:getQType() ~= pdns.TXT then return false end
  if not qname:isPartOf(newDN(ZONE)) then return false end
  local first = qname:getRawLabels()[1]
  if first == nil or first:lower() ~= "_acme-challenge" then return false end
  if tsig:equal(KEY) then return true end
  for key, name in pairs(CLIENTS) do
    if tsig:equal(key) then return qname:equal(name) end
  end
  return false
end

function updatepolicy(input)
  if allowed(input) then return true end
  error("refused by the cairn update policy")
end
`, r.spec.ACME.Zone+".", r.cli.Name+".", clients, hosts, reserved)
}

// seedPowerDNS creates and seeds the database once: the zone (the same
// seed as BIND's), its kind and metadata (the TSIG keys: SetTSIGKeys). A failure
// removes the database, so the next render starts over.
func (r *clusterRender) seedPowerDNS(confDir string) (err error) {
	db := filepath.Join(r.outVar, "pdns", "pdns.sqlite3")
	if fsutil.Exists(db) {
		return nil
	}
	if err := powerdns.CreateDB(db); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.Remove(db)
		}
	}()
	zoneFile := filepath.Join(r.outVar, "pdns", "seed.zone")
	if err := fsutil.WriteFileAtomic(zoneFile, []byte(seedZone(r.spec, r.secondaries)), 0o644); err != nil {
		return err
	}
	zone := r.spec.ACME.Zone
	steps := [][]string{
		{"load-zone", zone, zoneFile},
		{"set-kind", zone, "primary"},
		{"set-meta", zone, "SOA-EDIT-API", "INCREASE"},
		{"set-meta", zone, "SOA-EDIT-DNSUPDATE", "INCREASE"},
		{"set-meta", zone, "TSIG-ALLOW-AXFR", r.xfr.Name},
		// The Lua policy replaces PowerDNS's own update checks; should it
		// ever fail to load, PowerDNS falls back to these: still the
		// clients' key only.
		{"set-meta", zone, "TSIG-ALLOW-DNSUPDATE", r.cli.Name},
		{"set-meta", zone, "NOTIFY-DNSUPDATE", "1"},
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, args := range steps {
		cmd := exec.CommandContext(ctx, "pdnsutil", append([]string{"--config-dir=" + confDir}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("pdnsutil %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}
