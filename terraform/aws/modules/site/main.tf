# One cairn site: one host in its own VPC, reachable only on what a site
# needs. Every Boulder service, MariaDB, Redis and the site's resolver
# listen on the host itself; nothing else is opened.

locals {
  tags = merge(var.tags, { "cairn:site" = var.name, "cairn:location" = var.location })
}

module "network" {
  source            = "../network"
  name              = "cairn-${var.name}"
  cidr              = var.vpc_cidr
  availability_zone = var.availability_zone
  tags              = local.tags
}

# Every rule the site needs, one resource per direction.
locals {
  ingress = merge(
    { for c in var.client_cidrs : "acme ${c}" => { description = "ACME (HTTPS) from clients and controllers' probes", protocol = "tcp", from = 443, to = 443, cidr = c } },
    { for c in var.controller_cidrs : "agent ${c}" => { description = "The site agent (mutual TLS) from the failover controllers: revoke, block a key, publish CRLs", protocol = "tcp", from = 9480, to = 9480, cidr = c } },
    { for c in var.admin_cidrs : "ssh ${c}" => { description = "SSH for Ansible and operators", protocol = "tcp", from = 22, to = 22, cidr = c } },
    { for c in var.monitoring_cidrs : "metrics ${c}" => { description = "Boulder debug/metrics ports for Prometheus", protocol = "tcp", from = 8000, to = 8099, cidr = c } },
    { for c in var.replication_cidrs : "mariadb ${c}" => { description = "MariaDB (TLS): account replication from peer sites, the controllers' monitor", protocol = "tcp", from = 3306, to = 3306, cidr = c } },
    { for c in var.peer_cidrs : "nonce ${c}" => { description = "The nonce service (mutual TLS) from peer sites' WFEs: they redeem this site's nonces", protocol = "tcp", from = 9101, to = 9101, cidr = c } },
  )
  # Outbound: DNS to the cluster's authoritative servers (the VA validates
  # DNS-01 there), HTTPS to S3 (CRLs), CT logs and package mirrors, HTTP
  # to package mirrors.
  egress = {
    "dns udp" = { description = "DNS queries (VA, resolver)", protocol = "udp", from = 53, to = 53, cidr = "0.0.0.0/0" }
    "dns tcp" = { description = "DNS over TCP (large answers)", protocol = "tcp", from = 53, to = 53, cidr = "0.0.0.0/0" }
    "https"   = { description = "HTTPS: S3 (CRLs), CT logs, package mirrors", protocol = "tcp", from = 443, to = 443, cidr = "0.0.0.0/0" }
    "http"    = { description = "HTTP: Debian package mirrors", protocol = "tcp", from = 80, to = 80, cidr = "0.0.0.0/0" }
  }
  # Outbound to the peers' databases: this site's replicas pull accounts.
  egress_replication = merge(
    { for c in var.replication_cidrs : "mariadb ${c}" => { description = "MariaDB (TLS): this site's replicas pull accounts from peers", protocol = "tcp", from = 3306, to = 3306, cidr = c } },
    { for c in var.peer_cidrs : "nonce ${c}" => { description = "The peers' nonce services (mutual TLS): this site's WFE redeems their nonces", protocol = "tcp", from = 9101, to = 9101, cidr = c } },
  )
}

module "firewall" {
  source      = "../firewall"
  name        = "cairn-${var.name}"
  description = "cairn site ${var.name}: ACME from clients, the agent from controllers, SSH from admins, metrics from monitoring"
  vpc_id      = module.network.vpc_id
  ingress     = local.ingress
  egress      = merge(local.egress, local.egress_replication)
  tags        = local.tags
}

module "host" {
  source             = "../host"
  name               = "cairn-${var.name}"
  ami_id             = var.ami_id
  instance_type      = var.instance_type
  root_volume_gb     = var.root_volume_gb
  subnet_id          = module.network.subnet_id
  security_group_ids = [module.firewall.id]
  ssh_public_key     = var.ssh_public_key
  tags               = local.tags
}
