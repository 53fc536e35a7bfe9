package acmedns

import (
	"fmt"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/internal/fsutil"
	"github.com/cairn-pki/cairn/internal/rfc2136"
)

// FromSpec builds the provider cairn.yaml selects (dns.provider). fence
// is where a provider without conditional writes (powerdns) fences them:
// the controller passes its etcd; nil makes such a provider read-only.
func FromSpec(spec *cluster.Spec, fence Fence) (Provider, error) {
	servers := Servers{Names: Names{Zone: spec.ACME.Zone, Name: spec.ACME.Name, EpochName: spec.EpochName()}, List: spec.DNSAddresses()}
	switch spec.DNS.Provider {
	case cluster.DNSProviderPowerDNS:
		key, err := fsutil.ReadSecret(spec.Path(spec.DNS.PowerDNS.APIKeyFile))
		if err != nil {
			return nil, fmt.Errorf("dns.powerdns.apiKeyFile: %w", err)
		}
		return &PowerDNS{Servers: servers, API: spec.DNS.PowerDNS.API, ServerID: spec.DNS.PowerDNS.ServerID, APIKey: key, Fence: fence}, nil
	case cluster.DNSProviderRFC2136, "":
		k, err := rfc2136.ReadKey(spec.Path(spec.DNS.TSIG.ControllerKeyFile))
		if err != nil {
			return nil, fmt.Errorf("dns.tsig.controllerKeyFile: %w", err)
		}
		return &RFC2136{Servers: servers, Primary: spec.PrimaryDNS().String(), Key: k}, nil
	default:
		return nil, fmt.Errorf("dns.provider: %q is not a provider; use %s or %s", excerpt(spec.DNS.Provider), cluster.DNSProviderRFC2136, cluster.DNSProviderPowerDNS)
	}
}
