package site

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
)

// identPolicy is Boulder's hostname policy: a block list only (it cannot
// allow names; the public-suffix rule decides that), with at least one entry.
func identPolicy(p *Plan) string {
	return fmt.Sprintf(`# Boulder hostname policy for site %s: names that must never be issued.
HighRiskBlockedNames:
  - "localhost"
ExactBlockedNames:
  - "%s"
  - "%s"
`, p.Site.Name, p.Spec.ACME.Name, p.SiteName())
}

// rateLimitDefaults are generous: a private CA's clients are its own
// servers; the limits still stop a runaway client. All names of a private
// cluster share one registered domain (e.g. lab.home.arpa under the public
// suffix home.arpa), so CertificatesPerDomain is in effect a cluster-wide
// cap and is set high. The health-probe account gets per-account overrides
// (lab: after it registers; see ProbeOverrides).
const rateLimitDefaults = `NewRegistrationsPerIPAddress: {count: 10000, burst: 10000, period: 168h}
NewRegistrationsPerIPv6Range: {count: 99999, burst: 99999, period: 168h}
NewOrdersPerAccount: {count: 30000, burst: 30000, period: 3h}
FailedAuthorizationsPerDomainPerAccount: {count: 1000, burst: 1000, period: 1h}
CertificatesPerDomain: {count: 2000000, burst: 2000000, period: 168h}
CertificatesPerFQDNSet: {count: 5000, burst: 5000, period: 168h}
`

// ProbeOverride is one rate-limit override for the health-probe account.
type ProbeOverride struct {
	Limit        string
	Count, Burst int64
	Period       string
}

// ProbeOverrides exempt the probe account (a few thousand orders a day per
// site) from the per-account limits, with Boulder's admin tool.
func ProbeOverrides() []ProbeOverride {
	return []ProbeOverride{
		{"NewOrdersPerAccount", 1000000, 1000000, "3h"},
		{"FailedAuthorizationsPerDomainPerAccount", 100000, 100000, "1h"},
		{"CertificatesPerDomainPerAccount", 10000000, 10000000, "168h"},
	}
}

// ProbeOverridesYAML is the overrides file (Boulder's format) that the
// admin tool's import-limit-overrides pushes to the SA for account id.
func ProbeOverridesYAML(id int64) []byte {
	var b strings.Builder
	for _, o := range ProbeOverrides() {
		fmt.Fprintf(&b, "- %s:\n    burst: %d\n    count: %d\n    period: %s\n    ids:\n      - id: %d\n        comment: cairn health-probe account\n",
			o.Limit, o.Burst, o.Count, o.Period, id)
	}
	return []byte(b.String())
}

// myCnf is the site's own MariaDB instance. auto_increment_increment and
// _offset make every ID (accounts included) congruent to the site's serial
// prefix mod 128, so an account URL can never name another site's account.
// It also listens on the public address, with TLS (certificate from the
// cluster's database CA), for peers' replicas and cairn's monitor; replication
// adds its part (replicationCnf).
func myCnf(p *Plan, varDir, root, replication string) string {
	return fmt.Sprintf(`[mariadbd]
datadir=%[1]s/mysql/data
socket=%[11]s
pid-file=%[1]s/mysql/run/mysqld.pid
bind-address=%[2]s,%[6]s
port=%[3]d
ssl_ca=%[7]s
ssl_cert=%[8]s
ssl_key=%[9]s
skip-name-resolve
# Sized for a site's few tables (the lab's data is megabytes): the
# defaults (128 MiB key cache and Aria page cache, 16 MiB log buffer, 2000
# open tables) cost resident memory a lab has better uses for.
innodb_buffer_pool_size=32M
innodb_log_buffer_size=2M
key_buffer_size=1M
aria_pagecache_buffer_size=8M
table_open_cache=256
table_definition_cache=256
performance_schema=OFF
max_connections=300
auto_increment_increment=%[4]d
auto_increment_offset=%[5]d
log-error=%[1]s/mysql/log/mariadb.err
# Own temporary directory: concurrent bootstraps sharing /tmp collide.
tmpdir=%[1]s/mysql/tmp
# Relay logs in one place whether or not accounts replicate: a server
# restarted with the other setting must find its connections' relay logs.
relay_log=%[1]s/mysql/relay/relay
relay_log_recovery=ON
%[10]s
[client]
socket=%[11]s
`, varDir, p.DB, PortDB, accountIDRange, p.Site.SerialPrefix.Value(), p.Public,
		filepath.Join(root, "tls", "db-ca.pem"), filepath.Join(root, "tls", "db.pem"), filepath.Join(root, "tls", "db.key"),
		replication, mysqlSocket(varDir))
}

// mysqlSocket is the site MariaDB's Unix socket. It is also the readiness
// address: mariadbd listens on TCP before it creates the socket, so a
// TCP readiness check can pass while the socket still refuses (the
// administrator's statements go over the socket).
func mysqlSocket(varDir string) string {
	return filepath.Join(varDir, "mysql", "run", "mysqld.sock")
}

// AccountIDRange and the offset tell which site created an account ID.
func AccountIDSite(id int64) int { return int(id % accountIDRange) }

// dbUsers are the SA's database users and their grants (a subset of
// Boulder's sa/db/02-users.sql, without its test and proxy users).
var dbGrants = map[string][]string{
	"sa": {
		"SELECT,INSERT ON boulder_sa.certificates", "SELECT,INSERT,UPDATE ON boulder_sa.certificateStatus",
		"SELECT,INSERT ON boulder_sa.issuedNames", "SELECT,INSERT,UPDATE ON boulder_sa.registrations",
		"SELECT,INSERT ON boulder_sa.fqdnSets", "SELECT,INSERT,UPDATE ON boulder_sa.orders",
		"SELECT,INSERT,DELETE ON boulder_sa.orderFqdnSets", "SELECT,INSERT,UPDATE ON boulder_sa.authz2",
		"INSERT,SELECT ON boulder_sa.serials", "SELECT,INSERT ON boulder_sa.precertificates",
		"SELECT,INSERT ON boulder_sa.keyHashToSerial", "SELECT,INSERT ON boulder_sa.blockedKeys",
		"SELECT,INSERT,UPDATE ON boulder_sa.incidents", "SELECT,INSERT,UPDATE ON boulder_sa.crlShards",
		"SELECT,INSERT,UPDATE ON boulder_sa.revokedCertificates", "SELECT,INSERT,UPDATE ON boulder_sa.replacementOrders",
		"SELECT,INSERT,UPDATE ON boulder_sa.overrides", "SELECT,INSERT,UPDATE,DELETE ON boulder_sa.paused",
	},
	"sa_ro":        {"SELECT ON boulder_sa.*"},
	"incidents_sa": {"SELECT ON incidents_sa.*"},
}

var dbUserOrder = []string{"sa", "sa_ro", "incidents_sa"}

func dbName(user string) string {
	if user == "incidents_sa" {
		return "incidents_sa"
	}
	return "boulder_sa"
}

// usersSQL creates the users with their passwords. A local client dialing
// the DB address leaves from 127.0.0.1, so each user exists for both.
func usersSQL(p *Plan, passwords map[string]string) string {
	var b strings.Builder
	for _, host := range []string{p.DB.String(), "127.0.0.1"} {
		for _, u := range dbUserOrder {
			fmt.Fprintf(&b, "CREATE USER IF NOT EXISTS '%s'@'%s' IDENTIFIED BY '%s';\n", u, host, passwords[u])
			fmt.Fprintf(&b, "ALTER USER '%s'@'%s' IDENTIFIED BY '%s';\n", u, host, passwords[u])
			for _, g := range dbGrants[u] {
				fmt.Fprintf(&b, "GRANT %s TO '%s'@'%s';\n", g, u, host)
			}
		}
	}
	return b.String()
}

func dbURL(p *Plan, user, password string) string {
	return fmt.Sprintf("%s:%s@tcp(%s)/%s?readTimeout=14s&writeTimeout=14s&timeout=1s\n", user, password, Addr(p.DB, PortDB), dbName(user))
}

// redisConf: TLS only (Boulder's client always uses TLS with a client
// certificate), one ACL user, nothing persisted.
func redisConf(p *Plan, root, varDir, password string) string {
	return fmt.Sprintf(`bind %[1]s
port 0
tls-port %[2]d
tls-cert-file %[3]s/ipki/redis/cert.pem
tls-key-file %[3]s/ipki/redis/key.pem
tls-ca-cert-file %[3]s/ipki/ca.pem
tls-protocols "TLSv1.3"
dir %[4]s/redis
pidfile %[4]s/run/redis.pid
logfile %[4]s/logs/redis.log
save ""
appendonly no
maxmemory 64mb
maxmemory-policy noeviction
user default off
user boulder on +@all ~* >%[5]s
`, p.DB, PortRedis, root, varDir, password)
}

// namedConf is the site's BIND: the DoH resolver the VA uses, and the
// service zone with the nonce SRV record. Everything else is forwarded to
// the cluster's primary authoritative server (or, with
// validation.resolvers, the ACME zone alone, and every other name to
// those resolvers), with negative answers never cached so a client's
// fresh _acme-challenge record is seen at once.
func namedConf(p *Plan, root, varDir string) string {
	// Only the primary: clients write their DNS-01 records there, and a
	// secondary may not have them yet (read-your-writes for validation).
	var fwd []string
	for _, s := range p.Spec.DNS.Servers {
		if s.Role == "primary" {
			ap := netip.MustParseAddrPort(s.Address)
			fwd = append(fwd, fmt.Sprintf("%s port %d;", ap.Addr(), ap.Port()))
		}
	}
	// The organisation's resolvers answer every other name (the clients'
	// own names, CNAME targets, CAA); the ACME zone still goes to the
	// cluster's primary.
	zoneFwd := ""
	if rs := p.Spec.Validation.ResolverAddrs(); len(rs) > 0 {
		zoneFwd = fmt.Sprintf("zone %q { type forward; forward only; forwarders { %s }; };\n", p.Spec.ACME.Zone, strings.Join(fwd, " "))
		fwd = nil
		for _, r := range rs {
			fwd = append(fwd, fmt.Sprintf("%s port %d;", r.Addr(), r.Port()))
		}
	}
	return fmt.Sprintf(`// BIND for site %[1]s, written by cairn.
tls doh-tls { cert-file "%[2]s/ipki/doh/cert.pem"; key-file "%[2]s/ipki/doh/key.pem"; };
http doh-http { endpoints { "/dns-query"; }; };
options {
  directory "%[3]s/bind";
  pid-file "%[3]s/run/named.pid";
  session-keyfile "%[3]s/bind/session.key";
  managed-keys-directory "%[3]s/bind";
  listen-on port %[4]d { %[5]s; };
  listen-on port %[6]d tls doh-tls http doh-http { %[5]s; };
  listen-on-v6 { none; };
  recursion yes;
  allow-recursion { 127.0.0.0/8; %[7]s; };
  allow-query { 127.0.0.0/8; %[7]s; };
  forward only;
  forwarders { %[8]s };
  max-ncache-ttl 0;
  max-cache-ttl 1;
  dnssec-validation no;
  notify no;
};
controls { };
logging {
  channel f { file "%[3]s/logs/named.log" versions 2 size 5m; print-time yes; severity info; };
  category default { f; };
  category queries { null; };
};
zone "%[9]s" { type primary; file "%[2]s/etc/%[9]s.zone"; };
%[10]s`, p.Site.Name, root, varDir, PortDNS, p.DNS, PortDoH, p.Site.ServiceNetwork, strings.Join(fwd, " "), p.ServiceZone(), zoneFwd)
}

func serviceZone(p *Plan) string {
	z := p.ServiceZone()
	zone := fmt.Sprintf(`$TTL 60
@            SOA ns1.%[1]s. hostmaster.%[1]s. 1 3600 600 86400 60
@            NS  ns1
ns1          A   %[2]s
`, z, p.DNS)
	// Every site's nonce service: the WFE redeems a nonce where it was
	// issued.
	for i, s := range p.Spec.Sites {
		zone += fmt.Sprintf("nonce%-7d A   %s\n_nonce._tcp  SRV 0 0 %d nonce%d.%s.\n", i+1, s.Address, PortNonce, i+1, z)
	}
	return zone
}

// NonceAddr is the nonce service's address at a site whose public
// address is public: every site's WFE reaches it there.
func NonceAddr(public netip.Addr) string { return Addr(public, PortNonce) }

// ctLogNames are the two test logs' descriptions; the RA names them.
func ctLogNames(p *Plan) []string {
	return []string{p.Site.Name + " log A", p.Site.Name + " log B"}
}

// ctConfig generates the site's two CT log keys (two "operators", as
// Boulder's CT policy demands) and returns ct-test-srv's config (which
// holds the private keys) and the log list in Chrome's v3 format.
func ctConfig(p *Plan, old []byte) (secretCfg, logList []byte, err error) {
	type personality struct {
		Addr          string
		PrivKey       string
		FlakinessRate int
	}
	type logEntry struct {
		Description string            `json:"description"`
		LogID       string            `json:"log_id"`
		Key         string            `json:"key"`
		URL         string            `json:"url"`
		Temporal    map[string]string `json:"temporal_interval"`
		State       map[string]any    `json:"state"`
	}
	type operator struct {
		Name  string     `json:"name"`
		Email []string   `json:"email"`
		Logs  []logEntry `json:"logs"`
	}
	var prev struct{ Personalities []personality }
	if old != nil {
		if err := json.Unmarshal(old, &prev); err != nil {
			return nil, nil, fmt.Errorf("existing CT config: %w", err)
		}
	}
	var pers []personality
	var ops []operator
	for i, name := range ctLogNames(p) {
		var key *ecdsa.PrivateKey
		if i < len(prev.Personalities) {
			der, err := base64.StdEncoding.DecodeString(prev.Personalities[i].PrivKey)
			if err == nil {
				key, err = x509.ParseECPrivateKey(der)
			}
			if err != nil {
				return nil, nil, fmt.Errorf("existing CT key %d: %w", i, err)
			}
		} else if key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			return nil, nil, err
		}
		sec1, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return nil, nil, err
		}
		spki, err := x509.MarshalPKIXPublicKey(key.Public())
		if err != nil {
			return nil, nil, err
		}
		id := sha256.Sum256(spki)
		port := PortCTA + i
		pers = append(pers, personality{Addr: Addr(p.CT, port), PrivKey: base64.StdEncoding.EncodeToString(sec1)})
		ops = append(ops, operator{
			Name: fmt.Sprintf("%s CT operator %c", p.Site.Name, 'A'+i), Email: []string{"ct@invalid"},
			Logs: []logEntry{{
				Description: name, LogID: base64.StdEncoding.EncodeToString(id[:]), Key: base64.StdEncoding.EncodeToString(spki),
				URL:      "http://" + Addr(p.CT, port) + "/",
				Temporal: map[string]string{"start_inclusive": "1970-01-01T00:00:00Z", "end_exclusive": "2070-01-01T00:00:00Z"},
				State:    map[string]any{"usable": map[string]string{"timestamp": "2000-01-01T00:00:00Z"}},
			}},
		})
	}
	secretCfg, err = json.MarshalIndent(map[string]any{"Personalities": pers}, "", "  ")
	if err != nil {
		return nil, nil, err
	}
	logList, err = json.MarshalIndent(map[string]any{
		"version": "1.0", "log_list_timestamp": "2026-01-01T00:00:00Z", "operators": ops,
	}, "", "  ")
	return secretCfg, logList, err
}

func softhsmConf(tokenDir string) string {
	return "directories.tokendir = " + tokenDir + "\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n"
}
