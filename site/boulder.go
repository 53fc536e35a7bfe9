package site

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"github.com/letsencrypt/boulder/cmd"

	ca "github.com/letsencrypt/boulder/cmd/boulder-ca"
	publisher "github.com/letsencrypt/boulder/cmd/boulder-publisher"
	ra "github.com/letsencrypt/boulder/cmd/boulder-ra"
	sa "github.com/letsencrypt/boulder/cmd/boulder-sa"
	va "github.com/letsencrypt/boulder/cmd/boulder-va"
	wfe "github.com/letsencrypt/boulder/cmd/boulder-wfe2"
	crlstorer "github.com/letsencrypt/boulder/cmd/crl-storer"
	crlupdater "github.com/letsencrypt/boulder/cmd/crl-updater"
	nonce "github.com/letsencrypt/boulder/cmd/nonce-service"
	rva "github.com/letsencrypt/boulder/cmd/remoteva"
	"github.com/letsencrypt/boulder/config"
	"github.com/letsencrypt/boulder/core"
	"github.com/letsencrypt/boulder/identifier"
	"github.com/letsencrypt/boulder/issuance"
	raimpl "github.com/letsencrypt/boulder/ra"
	bredis "github.com/letsencrypt/boulder/redis"
	vaconfig "github.com/letsencrypt/boulder/va/config"

	"github.com/cairn-pki/cairn/cluster"
)

// boulderConfig is one rendered Boulder config: the component name under
// which Boulder registered its validator, and the typed config.
type boulderConfig struct {
	file      string // etc/<file>
	component string // validator name, e.g. "boulder-wfe2"
	cfg       any
}

// encodeValidated marshals a config built from Boulder's struct and runs
// Boulder's own validator over the JSON, exactly as the service does at
// start, so a config Boulder would refuse is never written.
func encodeValidated(c boulderConfig) ([]byte, error) {
	// Through plain values: Boulder's config.Duration.MarshalJSON at this
	// version emits an unquoted string (invalid JSON).
	data, err := json.MarshalIndent(plain(reflect.ValueOf(c.cfg)), "", "  ")
	if err != nil {
		return nil, err
	}
	cv := cmd.LookupConfigValidator(c.component)
	if cv == nil {
		return nil, fmt.Errorf("no Boulder config validator registered for %s", c.component)
	}
	if err := cmd.ValidateJSONConfig(cv, bytes.NewReader(data)); err != nil {
		return nil, fmt.Errorf("%s: Boulder would refuse this config: %w", c.file, err)
	}
	return append(data, '\n'), nil
}

var durationType = reflect.TypeFor[config.Duration]()

// plain turns a config struct into maps, slices and scalars the way
// encoding/json would (field names or json tags, embedded structs
// flattened, omitempty honoured), with config.Duration as its string.
func plain(v reflect.Value) any {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil
		}
		return plain(v.Elem())
	case reflect.Struct:
		if v.Type() == durationType {
			return v.Interface().(config.Duration).String()
		}
		m := map[string]any{}
		plainFields(v, m)
		return m
	case reflect.Map:
		if v.IsNil() {
			return nil
		}
		m := map[string]any{}
		for _, k := range v.MapKeys() {
			m[fmt.Sprint(k.Interface())] = plain(v.MapIndex(k))
		}
		return m
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && v.IsNil() {
			return nil
		}
		out := make([]any, v.Len())
		for i := range out {
			out[i] = plain(v.Index(i))
		}
		return out
	default:
		return v.Interface()
	}
}

func plainFields(v reflect.Value, m map[string]any) {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" || (!f.IsExported() && !f.Anonymous) {
			continue
		}
		fv := v.Field(i)
		if f.Anonymous && name == "" {
			if fv.Kind() == reflect.Pointer {
				if fv.IsNil() {
					continue
				}
				fv = fv.Elem()
			}
			if fv.Kind() == reflect.Struct && fv.Type() != durationType {
				plainFields(fv, m)
				continue
			}
		}
		if name == "" {
			name = f.Name
		}
		if strings.Contains(opts, "omitempty") && fv.IsZero() {
			continue
		}
		m[name] = plain(fv)
	}
}

func dur(d time.Duration) config.Duration { return config.Duration{Duration: d} }

var noSyslog = cmd.SyslogConfig{StdoutLevel: 6, SyslogLevel: -1} // no /dev/log: Boulder panics without syslog

// issuerInput is one of the site's intermediates as the renderer needs it.
type issuerInput struct {
	certFile string // in the bundle
	nameID   int64
	current  bool // issues new certificates; older generations only sign CRLs
	// live: not expired at render time; its certificates may still be
	// downloaded and revoked through the WFE.
	live bool
}

// boulderInputs are the bundle paths the Boulder configs reference.
type boulderInputs struct {
	plan        *Plan
	root        string // bundle root on the target host
	issuers     []issuerInput
	rootCert    string
	pkcs11JSON  string
	redisPWFile string
}

func (in *boulderInputs) path(parts ...string) string {
	return filepath.Join(append([]string{in.root}, parts...)...)
}

func (in *boulderInputs) tls(svc string) cmd.TLSConfig {
	id := svc + ".boulder"
	return cmd.TLSConfig{
		CACertFile: in.path("ipki", "ca.pem"),
		CertFile:   in.path("ipki", id, "cert.pem"),
		KeyFile:    in.path("ipki", id, "key.pem"),
	}
}

func (in *boulderInputs) client(port int, svc string, timeout time.Duration) *cmd.GRPCClientConfig {
	return &cmd.GRPCClientConfig{ServerAddress: Addr(in.plan.Svc, port), HostOverride: svc + ".boulder", Timeout: dur(timeout)}
}

// server is a gRPC listener allowing each service only the named callers
// (plus the health checker).
func (in *boulderInputs) server(port int, services map[string][]string) *cmd.GRPCServerConfig {
	s := &cmd.GRPCServerConfig{Address: Addr(in.plan.Svc, port), MaxConnectionAge: dur(30 * time.Second), Services: map[string]*cmd.GRPCServiceConfig{}}
	for name, callers := range services {
		names := make([]string, len(callers))
		for i, c := range callers {
			names[i] = c + ".boulder"
		}
		s.Services[name] = &cmd.GRPCServiceConfig{ClientNames: names}
	}
	s.Services["grpc.health.v1.Health"] = &cmd.GRPCServiceConfig{ClientNames: []string{"health-checker.boulder"}}
	return s
}

func (in *boulderInputs) db(user string) cmd.DBConfig {
	return cmd.DBConfig{DBConnectFile: in.path("secrets", user+"_dburl"), MaxOpenConns: 20}
}

func (in *boulderInputs) redis(svc string) *bredis.Config {
	c := &bredis.Config{
		TLS: in.tls(svc), Username: "boulder",
		ShardAddrs:  map[string]string{"shard1": Addr(in.plan.DB, PortRedis)},
		ReadTimeout: dur(250 * time.Millisecond), WriteTimeout: dur(250 * time.Millisecond), PoolSize: 20,
	}
	c.PasswordFile = in.redisPWFile
	return c
}

// pa offers the spec's challenge types (validation.challenges), the same
// at every site. HTTP-01 and TLS-ALPN-01 reach private addresses only in
// validation.allowedNetworks (docs/policy.md).
func (in *boulderInputs) pa() cmd.PAConfig {
	challenges := map[core.AcmeChallenge]bool{}
	for _, c := range in.plan.Spec.Validation.Challenges {
		challenges[core.AcmeChallenge(c)] = true
	}
	return cmd.PAConfig{
		Challenges:  challenges,
		Identifiers: map[identifier.IdentifierType]bool{identifier.TypeDNS: true},
	}
}

func (in *boulderInputs) issuerCerts() []string {
	var out []string
	for _, i := range in.issuers {
		out = append(out, i.certFile)
	}
	return out
}

// chains are every live issuer generation's: the WFE downloads and
// revokes only certificates whose issuer is in its chains, so after a
// rotation the previous generation's certificates stay revocable.
func (in *boulderInputs) chains() [][]string {
	var out [][]string
	for _, i := range in.issuers {
		if i.current || i.live {
			out = append(out, []string{i.certFile, in.rootCert})
		}
	}
	return out
}

// accountURIPrefixes are the account URLs the WFE can hand out: through
// the shared ACME name and through the site's own name.
func (in *boulderInputs) accountURIPrefixes() []string {
	p := in.plan
	return []string{
		acmeURL(p.Spec.ACME.Name, p.Spec.ACME.HTTPSPort) + "/acme/acct/",
		acmeURL(p.SiteName(), p.Spec.ACME.HTTPSPort) + "/acme/acct/",
	}
}

// profileNames are the spec's profiles, in file order.
func profileNames(spec *cluster.Spec) []string {
	var names []string
	for _, pr := range spec.Profiles {
		names = append(names, pr.Name)
	}
	return names
}

// boulderConfigs builds every Boulder config of the site.
func (in *boulderInputs) boulderConfigs() []boulderConfig {
	configs := []boulderConfig{in.saConfig(), in.caConfig(), in.raConfig(), in.vaConfig()}
	configs = append(configs, in.rvaConfigs()...)
	return append(configs,
		in.publisherConfig(),
		in.nonceConfig(),
		in.wfeConfig(),
		in.crlStorerConfig(),
		in.crlUpdaterConfig(),
	)
}

func (in *boulderInputs) policyFile() string   { return in.path("etc", "ident-policy.yaml") }
func (in *boulderInputs) rateDefaults() string { return in.path("etc", "ratelimit-defaults.yml") }

// saConfig is the storage authority's config.
func (in *boulderInputs) saConfig() boulderConfig {
	p := in.plan
	var saC sa.Config
	saC.SA.DebugAddr = p.debug("sa")
	saC.SA.TLS = in.tls("sa")
	saC.SA.GRPC = in.server(PortSA, map[string][]string{
		"sa.StorageAuthority":         {"admin", "ca", "crl-updater", "ra"},
		"sa.StorageAuthorityReadOnly": {"admin", "wfe", "crl-storer"},
	})
	saC.SA.DB = in.db("sa")
	saC.SA.ReadOnlyDB = in.db("sa_ro")
	saC.SA.IncidentsDB = in.db("incidents_sa")
	saC.SA.ParallelismPerRPC = 5
	saC.Syslog = noSyslog
	return boulderConfig{"sa.json", "boulder-sa", saC}
}

// caConfig is the CA's config: its profile, CRL profile and issuers.
func (in *boulderInputs) caConfig() boulderConfig {
	p := in.plan
	var caC ca.Config
	caC.CA.DebugAddr = p.debug("ca")
	caC.CA.TLS = in.tls("ca")
	caC.CA.HostnamePolicyFile = in.policyFile()
	caC.CA.GRPCCA = in.server(PortCA, map[string][]string{"ca.CertificateAuthority": {"ra"}, "ca.CRLGenerator": {"crl-updater"}})
	caC.CA.SCTService = in.client(PortRA, "ra", 15*time.Second)
	caC.CA.SAService = in.client(PortSA, "sa", 15*time.Second)
	// Every profile of the spec, each with its validity and otherwise alike.
	caC.CA.Issuance.CertProfiles = map[string]issuance.ProfileConfig{}
	for _, pr := range p.Spec.Profiles {
		caC.CA.Issuance.CertProfiles[pr.Name] = issuance.ProfileConfig{
			OmitClientAuth: true, MaxValidityPeriod: dur(pr.Validity.Duration), MaxValidityBackdate: dur(cluster.ProfileBackdate),
			IgnoredLints: in.ignoredLints(),
		}
	}
	caC.CA.Issuance.CRLProfile = issuance.CRLProfileConfig{ValidityInterval: dur(CRLValidity), MaxBackdate: dur(time.Hour + 5*time.Minute)}
	for _, i := range in.issuers {
		ic := issuance.IssuerConfig{
			IssuerURL:  p.Site.CRLBaseURL + fmt.Sprintf("issuers/%d.der", i.nameID),
			CRLURLBase: p.Site.CRLBaseURL + fmt.Sprintf("%s/%d/", p.Site.CRLStore.Bucket, i.nameID),
			CRLShards:  CRLShards,
			Location:   issuance.IssuerLoc{ConfigFile: in.pkcs11JSON, CertFile: i.certFile, NumSessions: 2},
		}
		if i.current {
			ic.Profiles = profileNames(p.Spec)
		}
		caC.CA.Issuance.Issuers = append(caC.CA.Issuance.Issuers, ic)
	}
	caC.CA.SerialPrefixHex = p.Site.SerialPrefix.Hex()
	caC.CA.MaxNames = 100
	caC.CA.CTLogListFile = in.path("etc", "log_list.json")
	caC.PA = in.pa()
	caC.Syslog = noSyslog
	return boulderConfig{"ca.json", "boulder-ca", caC}
}

// ignoredLints are the lints the CA skips: two Boulder's own test
// configs skip, and with private suffixes the two that know only
// delegated TLDs (docs/policy.md).
func (in *boulderInputs) ignoredLints() []string {
	lints := []string{"w_subject_common_name_included", "w_ext_subject_key_identifier_not_recommended_subscriber"}
	if len(in.plan.Spec.Policy.PrivateSuffixes) > 0 {
		// zlint's list of delegated TLDs: a name (SAN) or an AIA host
		// under a private suffix is not in it.
		lints = append(lints, "e_dnsname_not_valid_tld", "w_sub_cert_aia_contains_internal_names")
	}
	return lints
}

// raConfig is the registration authority's config.
func (in *boulderInputs) raConfig() boulderConfig {
	p := in.plan
	var raC ra.Config
	raC.RA.DebugAddr = p.debug("ra")
	raC.RA.TLS = in.tls("ra")
	raC.RA.HostnamePolicyFile = in.policyFile()
	raC.RA.GRPC = in.server(PortRA, map[string][]string{"ra.RegistrationAuthority": {"admin", "wfe"}, "ra.SCTProvider": {"ca"}})
	raC.RA.MaxContactsPerRegistration = 3
	raC.RA.SAService = in.client(PortSA, "sa", 15*time.Second)
	raC.RA.VAService = in.client(PortVA, "va", 20*time.Second)
	raC.RA.CAService = in.client(PortCA, "ca", 15*time.Second)
	raC.RA.PublisherService = in.client(PortPublisher, "publisher", 300*time.Second)
	raC.RA.Limiter.Redis = in.redis("ra")
	raC.RA.Limiter.Defaults = in.rateDefaults()
	// Overrides live in the SA database (added with Boulder's admin tool),
	// so the health-probe account can be exempted once it exists.
	raC.RA.Limiter.OverridesFromDB = true
	// Validation is the same whatever the profile: only validity differs.
	raC.RA.ValidationProfiles = map[string]*raimpl.ValidationProfileConfig{}
	for _, pr := range p.Spec.Profiles {
		raC.RA.ValidationProfiles[pr.Name] = &raimpl.ValidationProfileConfig{
			PendingAuthzLifetime: dur(7 * 24 * time.Hour), ValidAuthzLifetime: dur(30 * 24 * time.Hour),
			OrderLifetime: dur(7 * 24 * time.Hour), MaxNames: 100, IdentifierTypes: []identifier.IdentifierType{identifier.TypeDNS},
		}
	}
	raC.RA.DefaultProfileName = p.Spec.ACME.DefaultProfile
	raC.RA.IssuerCerts = in.issuerCerts()
	raC.RA.CTLogs.Stagger = dur(500 * time.Millisecond)
	raC.RA.CTLogs.LogListFile = in.path("etc", "log_list.json")
	raC.RA.CTLogs.SCTLogs = ctLogNames(p)
	raC.PA = in.pa()
	raC.Syslog = noSyslog
	return boulderConfig{"ra.json", "boulder-ra", raC}
}

// vaConfig is the VA's config, with its remote perspectives.
func (in *boulderInputs) vaConfig() boulderConfig {
	var vaC va.Config
	vaC.VA.Common = in.vaCommon("va", PortVA, "va", "ra")
	for i, rir := range rirs {
		c := va.RemoteVAGRPCClientConfig{GRPCClientConfig: *in.client(PortRVA1+i, "rva", 15*time.Second), Perspective: perspective(in.plan, i), RIR: rir}
		vaC.VA.RemoteVAs = append(vaC.VA.RemoteVAs, c)
	}
	vaC.Syslog = noSyslog
	return boulderConfig{"va.json", "boulder-va", vaC}
}

// rvaConfigs are the remote VAs' configs, one per RIR.
func (in *boulderInputs) rvaConfigs() []boulderConfig {
	var configs []boulderConfig
	for i, rir := range rirs {
		var r rva.Config
		r.RVA.Common = in.vaCommon("rva", PortRVA1+i, fmt.Sprintf("rva%d", i+1), "va")
		r.RVA.Perspective = perspective(in.plan, i)
		r.RVA.RIR = rir
		r.Syslog = noSyslog
		configs = append(configs, boulderConfig{fmt.Sprintf("rva%d.json", i+1), "remoteva", r})
	}
	return configs
}

// publisherConfig is the CT publisher's config.
func (in *boulderInputs) publisherConfig() boulderConfig {
	p := in.plan
	var pubC publisher.Config
	pubC.Publisher.DebugAddr = p.debug("publisher")
	pubC.Publisher.TLS = in.tls("publisher")
	pubC.Publisher.GRPC = in.server(PortPublisher, map[string][]string{"Publisher": {"ra"}})
	pubC.Publisher.UserAgent = "cairn-" + p.Spec.Name + "-" + p.Site.Name
	pubC.Publisher.Chains = in.chains()
	pubC.Syslog = noSyslog
	return boulderConfig{"publisher.json", "boulder-publisher", pubC}
}

// nonceConfig is the nonce service's config.
func (in *boulderInputs) nonceConfig() boulderConfig {
	var nonceC nonce.Config
	nonceC.NonceService.DebugAddr = in.plan.debug("nonce")
	// The one service another site reaches: every site's WFE redeems
	// the nonces this one issued (peers.pem: the sites' internal CAs),
	// on the site's public address (nftables on provisioned hosts: the
	// sites' addresses only). Its prefix derives from that address,
	// which every WFE finds in its site's SRV records.
	nonceC.NonceService.TLS = in.tls("nonce")
	nonceC.NonceService.TLS.CACertFile = in.path("ipki", "peers.pem")
	nonceC.NonceService.GRPC = in.server(PortNonce, map[string][]string{"nonce.NonceService": {"wfe"}})
	nonceC.NonceService.GRPC.Address = NonceAddr(in.plan.Public)
	nonceC.NonceService.GRPC.MaxConnectionAge = dur(30 * time.Minute)
	nonceC.NonceService.MaxUsed = 131072
	nonceC.NonceService.NonceHMACKey = cmd.HMACKeyConfig{KeyFile: in.path("secrets", "nonce_hmac.key")}
	nonceC.NonceService.Syslog = noSyslog
	return boulderConfig{"nonce.json", "nonce-service", nonceC}
}

// wfeConfig is the WFE's config.
func (in *boulderInputs) wfeConfig() boulderConfig {
	p := in.plan
	spec := p.Spec
	var wfeC wfe.Config
	w := &wfeC.WFE
	w.DebugAddr = p.debug("wfe")
	// Plain HTTP on the service network only: cairn's ACME front
	// (internal/acmefront) terminates TLS on the public address.
	w.ListenAddress = Addr(p.Svc, PortWFEHTTP)
	w.Timeout = dur(30 * time.Second)
	w.ShutdownStopTimeout = dur(10 * time.Second)
	// The WFE requires termsOfServiceAgreed even without terms; clients such
	// as x/crypto/acme only send it when the directory names terms.
	w.SubscriberAgreementURL = spec.PKI.BaseURL + "terms"
	// It trusts the other sites' internal CAs too: their nonce services
	// redeem its nonces' peers (the servers it dials by address are its
	// own site's).
	w.TLS = in.tls("wfe")
	w.TLS.CACertFile = in.path("ipki", "peers.pem")
	w.RAService = in.client(PortRA, "ra", 15*time.Second)
	w.SAService = in.client(PortSA, "sa", 15*time.Second)
	w.GetNonceService = in.client(PortNonce, "nonce", 15*time.Second)
	w.GetNonceService.ServerAddress = NonceAddr(p.Public)
	// Nonce redemption must use SRV (Boulder enforces it), served by the
	// site's BIND: one target per site, each the nonce service's exact
	// IP:port, from which the WFE derives that site's prefix and routes
	// a nonce to the site that issued it.
	w.RedeemNonceService = &cmd.GRPCClientConfig{
		DNSAuthority: Addr(p.DNS, PortDNS), SRVLookups: []*cmd.ServiceDomain{{Service: "nonce", Domain: p.ServiceZone()}},
		SRVResolver: "nonce-srv-v2", HostOverride: "nonce.boulder", Timeout: dur(15 * time.Second),
	}
	w.NonceHMACKey = cmd.HMACKeyConfig{KeyFile: in.path("secrets", "nonce_hmac.key")}
	w.Chains = in.chains()
	w.DirectoryCAAIdentity = spec.ACME.CAAIdentity
	w.DirectoryWebsite = spec.PKI.BaseURL
	w.LegacyKeyIDPrefix = acmeURL(spec.ACME.Name, spec.ACME.HTTPSPort) + "/acme/reg/"
	w.StaleTimeout = dur(5 * time.Minute)
	w.AccountCache = &wfe.CacheConfig{Size: 9000, TTL: dur(5 * time.Second)}
	w.Limiter.Redis = in.redis("wfe")
	w.Limiter.Defaults = in.rateDefaults()
	w.Limiter.OverridesFromDB = true
	w.CertProfiles = spec.ProfileDescriptions()
	wfeC.Syslog = noSyslog
	return boulderConfig{"wfe2.json", "boulder-wfe2", wfeC}
}

// crlStorerConfig is the CRL storer's config: it writes to the site's S3
// store.
func (in *boulderInputs) crlStorerConfig() boulderConfig {
	p := in.plan
	var storer crlstorer.Config
	storer.CRLStorer.DebugAddr = p.debug("crl-storer")
	storer.CRLStorer.TLS = in.tls("crl-storer")
	storer.CRLStorer.GRPC = in.server(PortCRLStorer, map[string][]string{"storer.CRLStorer": {"crl-updater"}})
	storer.CRLStorer.IssuerCerts = in.issuerCerts()
	// Refuse to drop an entry whose certificate has not yet been on a CRL
	// published after it expired (instead of silently dropping it when a
	// site comes back after longer than the look-back).
	storer.CRLStorer.SAReadOnlyService = in.client(PortSA, "sa", 15*time.Second)
	storer.CRLStorer.S3Endpoint = p.crlEndpoint()
	storer.CRLStorer.S3Bucket = p.Site.CRLStore.Bucket
	storer.CRLStorer.AWSConfigFile = in.path("etc", "crl-storer.ini")
	storer.CRLStorer.AWSCredsFile = in.path("secrets", "aws_creds.ini")
	storer.Syslog = noSyslog
	return boulderConfig{"crl-storer.json", "crl-storer", storer}
}

// crlUpdaterConfig is the CRL updater's config.
func (in *boulderInputs) crlUpdaterConfig() boulderConfig {
	var updater crlupdater.Config
	u := &updater.CRLUpdater
	u.DebugAddr = in.plan.debug("crl-updater")
	u.TLS = in.tls("crl-updater")
	u.SAService = in.client(PortSA, "sa", 15*time.Second)
	u.CRLGeneratorService = in.client(PortCA, "ca", 15*time.Second)
	u.CRLStorerService = in.client(PortCRLStorer, "crl-storer", 15*time.Second)
	u.IssuerCerts = in.issuerCerts()
	u.NumShards = CRLShards
	// A site may be down as long as its CRLs stay valid (CRLValidity)
	// and still list, when it returns, every revoked certificate that
	// expired meanwhile.
	u.LookbackPeriod = dur(CRLLookback)
	// Sign only what includes the database's latest revocation.
	u.CheckFreshness = true
	u.LagFactor = dur(crlLagFactor)
	// Revocations reach the CRL within one update period.
	u.UpdatePeriod = dur(crlUpdatePeriod)
	u.UpdateTimeout = dur(CRLUpdateTimeout)
	u.ExpiresMargin = dur(5 * time.Minute)
	// Caches may serve a CRL while the site is unreachable, up to its
	// nextUpdate.
	u.CacheControl = fmt.Sprintf("stale-if-error=%d", int(CRLValidity.Seconds()))
	u.MaxParallelism = 4
	u.MaxAttempts = 2
	updater.Syslog = noSyslog
	return boulderConfig{"crl-updater.json", "crl-updater", updater}
}

// adminConfig mirrors the config of Boulder's admin tool (package main at
// this version: its type cannot be imported, nor its validator used).
type adminConfig struct {
	Admin struct {
		TLS       cmd.TLSConfig
		RAService *cmd.GRPCClientConfig
		SAService *cmd.GRPCClientConfig
	}
	Syslog cmd.SyslogConfig
}

func (in *boulderInputs) adminConfig() ([]byte, error) {
	return adminJSON(in.tls("admin"), in.client(PortRA, "ra", 15*time.Second), in.client(PortSA, "sa", 15*time.Second))
}

// adminJSON is an admin.json: the admin tool's TLS and its RA and SA.
func adminJSON(tls cmd.TLSConfig, ra, sa *cmd.GRPCClientConfig) ([]byte, error) {
	var c adminConfig
	c.Admin.TLS, c.Admin.RAService, c.Admin.SAService = tls, ra, sa
	c.Syslog = noSyslog
	b, err := json.MarshalIndent(plain(reflect.ValueOf(c)), "", "  ")
	return append(b, '\n'), err
}

// crlUpdatePeriod bounds how long a revocation takes to appear in a CRL.
const crlUpdatePeriod = 5 * time.Minute

// CRLUpdateTimeout bounds one shard's update, and so the lease on the
// shard an updater takes: one that ended while it held a lease (killed,
// its host rebooted) keeps others off that shard until then.
const CRLUpdateTimeout = time.Minute

// CRLValidity is each CRL's validity (nextUpdate − thisUpdate): the
// longest a site may be down before relying parties that check CRLs
// reject every certificate of its issuers.
const CRLValidity = 216 * time.Hour

// CRLLookback is how far back a CRL lists revoked certificates that have
// expired: longer than CRLValidity, so a site that returns within its
// CRLs' validity still publishes every entry at least once after expiry.
const CRLLookback = 14 * 24 * time.Hour

// crlLagFactor: the freshness check ignores revocations this recent. The
// site's SA reads its own primary database (no replica lag), so one
// second: a revocation is in the next CRL signed a second later (0 would
// mean Boulder's default, 5 minutes).
const crlLagFactor = time.Second

// MPIC: the VA needs ≥3 remote perspectives from ≥2 RIRs.
var rirs = []string{"ARIN", "RIPE", "APNIC"}

func perspective(p *Plan, i int) string { return fmt.Sprintf("%s-p%d", p.Site.Name, i+1) }

func (in *boulderInputs) vaCommon(svc string, port int, proc, caller string) vaconfig.Common {
	p := in.plan
	c := vaconfig.Common{}
	c.DebugAddr = p.debug(proc)
	c.TLS = in.tls(svc)
	c.GRPC = in.server(port, map[string][]string{"va.VA": {caller}, "va.CAA": {caller}})
	c.UserAgent = "cairn-" + p.Spec.Name + "-" + p.Site.Name
	c.IssuerDomain = p.Spec.ACME.CAAIdentity
	c.DNSTries = 3
	// The VA resolves only over DoH, with its gRPC TLS config.
	c.DNSStaticResolvers = []string{Addr(p.DNS, PortDoH)}
	c.DNSTimeout = dur(2 * time.Second)
	c.AccountURIPrefixes = in.accountURIPrefixes()
	return c
}

// Check builds every Boulder config of every site of a validated spec and
// runs Boulder's validator over each, without writing anything, so that
// `cairn validate` refuses what a Boulder service would refuse at start.
func Check(spec *cluster.Spec) error {
	for i := range spec.Sites {
		p, err := NewPlan(spec, i)
		if err != nil {
			return err
		}
		root := "/cairn/sites/" + p.Site.Name
		in := &boulderInputs{plan: p, root: root, rootCert: root + "/pki/root.cert.pem", pkcs11JSON: root + "/secrets/pkcs11.json",
			redisPWFile: root + "/secrets/redis.pw",
			issuers:     []issuerInput{{certFile: root + "/pki/e.pem", nameID: 1, current: true}, {certFile: root + "/pki/r.pem", nameID: 2, current: true}}}
		for _, c := range in.boulderConfigs() {
			if _, err := encodeValidated(c); err != nil {
				return fmt.Errorf("sites[%d] (%s): %w", i, p.Site.Name, err)
			}
		}
	}
	return nil
}
