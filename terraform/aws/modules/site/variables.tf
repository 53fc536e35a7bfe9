variable "name" {
  description = "Site name, as in cairn.yaml (sites[].name): lower-case letters, digits and hyphens."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,30}$", var.name))
    error_message = "name: use 1-31 lower-case letters, digits or hyphens, starting with a letter (the site name in cairn.yaml)."
  }
}

variable "location" {
  description = "Location label shown in cairn's status and reports (e.g. the region or data centre)."
  type        = string
}

variable "vpc_cidr" {
  description = "CIDR of the site's own VPC. Sites must not share one: give each site a disjoint range."
  type        = string
  default     = "10.40.0.0/24"

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0)) && tonumber(split("/", var.vpc_cidr)[1]) <= 26
    error_message = "vpc_cidr: give an IPv4 CIDR of /26 or larger, e.g. 10.40.0.0/24."
  }
}

variable "availability_zone" {
  description = "Availability zone of the site's host; empty picks the region's first."
  type        = string
  default     = ""
}

variable "instance_type" {
  description = "EC2 instance type. A site runs about 17 processes (Boulder, MariaDB, Redis, BIND); 4 GiB of memory is the least that works."
  type        = string
  default     = "m6i.large"
}

variable "ami_id" {
  description = "AMI of a Debian 12 (bookworm) image for the host; the Ansible roles expect Debian 12."
  type        = string
}

variable "root_volume_gb" {
  description = "Size of the root volume in GiB (database, logs, CRLs)."
  type        = number
  default     = 40

  validation {
    condition     = var.root_volume_gb >= 20
    error_message = "root_volume_gb: at least 20 GiB."
  }
}

variable "ssh_user" {
  description = "User Ansible connects as (the AMI's default user, e.g. admin on Debian)."
  type        = string
  default     = "admin"
}

variable "ssh_public_key" {
  description = "OpenSSH public key installed for ssh_user."
  type        = string
}

variable "admin_cidrs" {
  description = "CIDRs allowed to reach SSH (22/tcp): the operators' and Ansible's networks."
  type        = list(string)

  validation {
    condition     = length(var.admin_cidrs) > 0 && alltrue([for c in var.admin_cidrs : can(cidrhost(c, 0)) && c != "0.0.0.0/0"])
    error_message = "admin_cidrs: give at least one CIDR, and not 0.0.0.0/0 (SSH must not be open to everyone)."
  }
}

variable "client_cidrs" {
  description = "CIDRs of the ACME clients and of the failover controllers (their deep probes): they reach the ACME server on 443/tcp, and nothing else of the site. With validation.allowedNetworks in cairn.yaml (HTTP-01, TLS-ALPN-01 to private addresses), this site's VAs connect out to the clients there on 80/tcp and 443/tcp (egress is open): route the VPC to every client network, at every site, or validation fails after the ACME name moves here."
  type        = list(string)

  validation {
    condition     = length(var.client_cidrs) > 0 && alltrue([for c in var.client_cidrs : can(cidrhost(c, 0))])
    error_message = "client_cidrs: give at least one IPv4 CIDR."
  }
}

variable "controller_cidrs" {
  description = "CIDRs of the failover controllers' hosts: the only ones that reach the site agent (9480/tcp, mutual TLS), which revokes, blocks keys and publishes CRLs for them."
  type        = list(string)

  validation {
    condition     = length(var.controller_cidrs) > 0 && alltrue([for c in var.controller_cidrs : can(cidrhost(c, 0)) && c != "0.0.0.0/0"])
    error_message = "controller_cidrs: give the controllers' CIDRs (at least one), never 0.0.0.0/0 (the agent must not be open to everyone)."
  }
}

variable "replication_cidrs" {
  description = "CIDRs of the peer sites and of the failover controllers: account replication and its monitor use MariaDB on 3306/tcp (TLS, users bound to certificates) in both directions; empty opens nothing, and accounts then stay at the site that made them."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.replication_cidrs : can(cidrhost(c, 0)) && c != "0.0.0.0/0"])
    error_message = "replication_cidrs: give the peers' and controllers' CIDRs, never 0.0.0.0/0 (the database must not be open to everyone)."
  }
}

variable "peer_cidrs" {
  description = "CIDRs of the peer sites: their WFEs redeem the nonces this site issued at its nonce service (9101/tcp, mutual TLS with the sites' internal CAs) and this site's WFE reaches theirs, so a request signed with one site's nonce (a client that was talking to it when the ACME name moved, a revocation passed to the issuing site) is accepted at another. Empty opens nothing: such requests then get badNonce once and succeed on the client's retry."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.peer_cidrs : can(cidrhost(c, 0)) && c != "0.0.0.0/0"])
    error_message = "peer_cidrs: give the peer sites' CIDRs, never 0.0.0.0/0 (the nonce service answers the sites only)."
  }
}

variable "monitoring_cidrs" {
  description = "CIDRs of Prometheus servers that scrape the site's metrics ports (8000-8099/tcp); empty opens nothing."
  type        = list(string)
  default     = []
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
