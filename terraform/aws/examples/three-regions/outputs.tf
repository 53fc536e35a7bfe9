output "sites" {
  description = "The output contract: per site its name, location, addresses and connection."
  value       = merge(module.site_eu.sites, module.site_us.sites, module.site_ap.sites)
}

output "dns_servers" {
  description = "The cluster's authoritative DNS servers, the primary first."
  value       = module.cluster.dns_servers
}

output "crl_base_url" {
  description = "Base URL of the published CRLs."
  value       = module.cluster.crl_base_url
}
