package cluster

import (
	"bytes"
	"text/template"
)

// Template renders a commented cairn.yaml holding every default for the
// given sites, so that an operator sees every knob and what it does.
// For the lab, validation may reach the lab's client hosts
// (lab.clientNetwork), so HTTP-01 and TLS-ALPN-01 work from them.
func Template(siteNames []string) ([]byte, error) {
	spec := Default(siteNames)
	spec.Validation.AllowedNetworks = []string{LabClientNetwork(spec).String()}
	spec.Validation.Challenges = nil
	spec.ApplyDefaults()
	return TemplateFor(spec)
}

// TemplateFor renders spec (defaults applied) as a commented cairn.yaml.
func TemplateFor(spec *Spec) ([]byte, error) {
	var buf bytes.Buffer
	if err := specTemplate.Execute(&buf, spec); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

var specTemplate = template.Must(template.New("cairn.yaml").Parse(`# cairn.yaml: one redundant private ACME CA made of independent Boulder sites.
# Relative paths are relative to this file. Check it with: cairn validate
# Every field below shows its default; delete a line to keep the default.

# Cluster name: a DNS label; it prefixes HSM token labels.
name: {{.Name}}

acme:
  # The name ACME clients use. The failover controller points it at the
  # active site with RFC 2136 updates.
  name: {{.ACME.Name}}
  # Zone on the cluster's authoritative DNS (outside every site). It must end
  # in a public suffix (Boulder's rule): home.arpa, a domain you own, or a
  # suffix listed in policy.privateSuffixes.
  zone: {{.ACME.Zone}}
  # TTL of the ACME name, in seconds: how long clients may keep a dead site.
  ttl: {{.ACME.TTL}}
  # HTTPS port of the ACME server, the same at every site.
  httpsPort: {{.ACME.HTTPSPort}}
  # CAA issuer domain shared by every site (put in the zone apex CAA record).
  caaIdentity: {{.ACME.CAAIdentity}}
  # The profile (below) a client that asks for none gets.
  defaultProfile: {{.ACME.DefaultProfile}}

# Certificate profiles every site offers, advertised in the directory
# (meta.profiles) and chosen by the client: lego --profile, certbot
# --preferred-profile, cert-manager's issuer profile. name: 1..32 letters
# and digits; validity: more than 1h5m, less than 100 days (Boulder's CA).
profiles:
{{- range .Profiles}}
  - name: {{.Name}}
    validity: {{.Validity.Days}}
    description: {{printf "%q" .Description}}
{{- end}}

dns:
  # How the controller writes the ACME name: rfc2136 (TSIG-signed updates
  # with prerequisites to the primary: BIND, Knot, PowerDNS) or powerdns
  # (the PowerDNS HTTP API; compare-and-swap fenced through the
  # controllers' etcd; the lab then runs PowerDNS as the primary).
  provider: {{.DNS.Provider}}
{{- if eq .DNS.Provider "powerdns"}}
  powerdns:
    api: {{.DNS.PowerDNS.API}}
    apiKeyFile: {{.DNS.PowerDNS.APIKeyFile}}
    serverID: {{.DNS.PowerDNS.ServerID}}
{{- end}}
  # Authoritative servers for acme.zone; exactly one primary takes updates.
  servers:
{{- range .DNS.Servers}}
    - name: {{.Name}}
      address: {{.Address}}
      role: {{.Role}}
{{- end}}
  # TSIG keys (tsig-keygen format, mode 0600; created if missing in the lab).
  tsig:
    # May change only the ACME name and its epoch TXT record.
    controllerKeyFile: {{.DNS.TSIG.ControllerKeyFile}}
    # May change only _acme-challenge TXT records (clients' DNS-01).
    clientKeyFile: {{.DNS.TSIG.ClientKeyFile}}

pki:
  # Certificates, public keys, CRLs and (softhsm) token directories.
  dir: {{.PKI.Dir}}
  organization: {{.PKI.Organization}}
  country: {{.PKI.Country}}
  # Where root.der and root.crl are published (intermediates' AIA and CRL DP).
  baseURL: {{.PKI.BaseURL}}
  # The offline root. Its key lives in its own token, never given to a site.
  root:
    commonName: {{.PKI.Root.CommonName}}
    keyType: {{.PKI.Root.KeyType}}          # ecdsa-p256 | ecdsa-p384 | rsa-2048 | rsa-3072 | rsa-4096
    validityDays: {{.PKI.Root.ValidityDays}}         # at most 3660
  # Every site gets one ECDSA and one RSA issuing intermediate.
  intermediates:
    ecdsaKeyType: {{.PKI.Intermediates.ECDSAKeyType}}
    rsaKeyType: {{.PKI.Intermediates.RSAKeyType}}
    validityDays: {{.PKI.Intermediates.ValidityDays}}         # at most 1098
  # Signs each site's HTTPS certificate for the ACME name; never ACME orders.
  infrastructure:
    commonName: {{.PKI.Infrastructure.CommonName}}
    keyType: {{.PKI.Infrastructure.KeyType}}
    validityDays: {{.PKI.Infrastructure.ValidityDays}}
  # nextUpdate of the root CRL, in days (at most 365).
  crlValidityDays: {{.PKI.CRLValidityDays}}
  hsm:
    # softhsm: cairn creates SoftHSM2 tokens and random PINs (the lab).
    # pkcs11: your HSM; give module, token labels and PIN files that exist.
    backend: {{.PKI.HSM.Backend}}
    module: {{.PKI.HSM.Module}}
    root:
      label: {{.PKI.HSM.Root.Label}}
      pinFile: {{.PKI.HSM.Root.PINFile}}
    infrastructure:
      label: {{.PKI.HSM.Infrastructure.Label}}
      pinFile: {{.PKI.HSM.Infrastructure.PINFile}}

# Independent Boulder sites. Each has its own intermediates, database,
# Redis, DNS resolver and HSM token.
sites:
{{- range .Sites}}
  - name: {{.Name}}
    priority: {{.Priority}}                  # lower is preferred as failover target
    serialPrefix: {{.SerialPrefix}}          # first serial byte, 0x01..0x7f, unique
    address: {{.Address}}          # ACME server address (the ACME name points here)
    serviceNetwork: {{.ServiceNetwork}}  # internal services' addresses
    crlBaseURL: {{.CRLBaseURL}}
    # CRLs go to an S3 store; without endpoint, the lab's stand-in. For your
    # own (MinIO, Ceph RGW, AWS) add endpoint and credentialsFile (0600), and
    # publish the bucket path-style at crlBaseURL.
    crlStore:
      bucket: {{.CRLStore.Bucket}}
      region: {{.CRLStore.Region}}
    hsm:
      label: {{.HSM.Label}}
      pinFile: {{.HSM.PINFile}}
{{- end}}

failover:
  # How often each probe kind runs per site.
  probes:
    nonce: {{.Failover.Probes.Nonce}}
    account: {{.Failover.Probes.Account}}
    issuance: {{.Failover.Probes.Issuance}}
    crl: {{.Failover.Probes.CRL}}
  downAfter: {{.Failover.DownAfter}}          # consecutive hard failures before a site is down
  upAfter: {{.Failover.UpAfter}}           # consecutive deep successes before it is healthy again
  stablePeriod: {{.Failover.StablePeriod}}      # and this long without failure
  holdDown: {{.Failover.HoldDown}}          # least time between two moves of the ACME name
  failback: {{.Failover.Failback}}       # manual | automatic
  # Status page, JSON API and /metrics of the controller (keep it on loopback
  # or a management network); operator calls need the token in this file.
  listen: {{.Failover.Listen}}
  adminTokenFile: {{.Failover.AdminTokenFile}}
  quorum: {{.Failover.Quorum}}              # controllers that must see a site down (several need etcd.endpoints)
  viewMaxAge: {{.Failover.ViewMaxAge}}       # a controller's probe view older than this does not count
  # A restarted controller replays its probe history: a site healthy in it
  # until at most resumeWithin before the start is healthy after
  # resumeConfirm fresh deep probes (not upAfter over stablePeriod).
  resume: {{.Failover.Resume}}                # history | off
  resumeWithin: {{.Failover.ResumeWithin}}
  resumeConfirm: {{.Failover.ResumeConfirm}}
  # Controllers coordinate on etcd: one-member etcd inside the controller
  # (data in dataDir, mutual TLS on listen), or set endpoints (and caFile,
  # certFile, keyFile) to join an external cluster with other controllers.
  etcd:
    # endpoints: [https://10.0.0.5:2379, https://10.1.0.5:2379, https://10.2.0.5:2379]
    listen: {{.Failover.Etcd.Listen}}
    dataDir: {{.Failover.Etcd.DataDir}}
    prefix: {{.Failover.Etcd.Prefix}}
    sessionTTL: {{.Failover.Etcd.SessionTTL}}

# The leading controller keeps an off-site copy of every site: a backup
# of its database through its agent (mariadb-backup) every 'every', and
# its newest CRLs; 'cairn site rebuild' brings a lost site back from them
# (docs/backup.md).
backup:
  every: {{.Backup.Every}}
  keep: {{.Backup.Keep}}             # backups kept per site
  dir: {{.Backup.Dir}}          # on the controller's host, relative to this file
  # off: true                # no backups: the agents refuse them

# ACME accounts follow the ACME name: every site pulls the accounts table
# (only it) from every peer with MariaDB multi-source replication, so a
# client's account URL works at whichever site is active (docs/accounts.md).
accounts:
  replication: {{.Accounts.Replication}}       # mariadb | off
  binlogRetention: {{.Accounts.BinlogRetention}}  # a peer away longer than this needs 'cairn accounts seed'

# The lab's Prometheus: 'cairn lab up' runs one here (IP:port, or off) that
# scrapes the controller and every Boulder component with cairn's alert
# rules (monitoring/cairn-rules.yml; load that file into your own).
monitoring:
  prometheus: {{.Monitoring.Prometheus}}
  retention: {{.Monitoring.Retention}}

# What cairn changes in Boulder's public-Web rules, and nothing else
# (docs/policy.md).
policy:
  # Suffixes outside the public suffix list that names may end in, e.g.
  # [internal, corp]; acme.zone may then be corp.internal.
  privateSuffixes: [{{range $i, $s := .Policy.PrivateSuffixes}}{{if $i}}, {{end}}{{$s}}{{end}}]
  # DNS suffixes the cluster issues under, e.g. [corp.internal]: every site
  # intermediate is then name-constrained to them (docs/pki.md).
  allowedNames: [{{range $i, $s := .Policy.AllowedNames}}{{if $i}}, {{end}}{{$s}}{{end}}]
# External Account Binding (docs/authority.md): with required: true only
# clients holding a key from "cairn accounts eab create" may register
# (accounts registered before keep working); each key may carry a scope.
eab:
  required: {{.EAB.Required}}
validation:
  # Reserved ranges (CIDRs) HTTP-01 and TLS-ALPN-01 may connect to, e.g.
  # [10.0.0.0/8, fd00::/8]: every site's VAs must reach them. Every other
  # private, loopback or link-local address stays refused. cairn init lists
  # the lab's client hosts (lab.clientNetwork); without the line: none. In
  # production list the networks your ACME clients are on.
  allowedNetworks: [{{range $i, $n := .Validation.AllowedNetworks}}{{if $i}}, {{end}}{{$n}}{{end}}]
  # Challenge types offered: dns-01 alone without allowedNetworks, also
  # http-01 and tls-alpn-01 with them.
  challenges: [{{range $i, $c := .Validation.Challenges}}{{if $i}}, {{end}}{{$c}}{{end}}]
  # Your DNS resolvers (IP or IP:port), e.g. [10.0.0.53]: every site's VAs
  # ask them for names outside acme.zone (your hosts' names). Empty: the
  # VAs resolve only names in acme.zone.
  resolvers: [{{range $i, $r := .Validation.Resolvers}}{{if $i}}, {{end}}{{$r}}{{end}}]
lab:
  # Client hosts (cairn lab exec --host NAME): each a network namespace with
  # an address of this IPv4 block, NAME.<acme.zone> in the cluster DNS.
  # HTTP-01 and TLS-ALPN-01 validation must be allowed to reach it.
  clientNetwork: {{.Lab.ClientNetwork}}
`))
