variable "name" {
  description = "Cluster name, as in cairn.yaml (name): prefixes every resource."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,30}$", var.name))
    error_message = "name: use 1-31 lower-case letters, digits or hyphens, starting with a letter."
  }
}

variable "crl_bucket_name" {
  description = "Globally unique name of the S3 bucket the sites' crl-storer uploads CRLs to; CRL URLs in certificates point at it."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.crl_bucket_name))
    error_message = "crl_bucket_name: 3-63 lower-case letters, digits, dots or hyphens (S3 bucket rules)."
  }
}

variable "dns_servers" {
  description = "Authoritative DNS hosts for the ACME zone, outside every site: the first is the primary (RFC 2136 updates from the controller and clients), the others secondaries."
  type = list(object({
    name     = string
    location = string
  }))
  default = [{ name = "dns-primary", location = "" }, { name = "dns-secondary", location = "" }]

  validation {
    condition     = length(var.dns_servers) >= 1
    error_message = "dns_servers: give at least the primary."
  }
}

variable "vpc_cidr" {
  description = "CIDR of the DNS hosts' VPC (disjoint from every site's)."
  type        = string
  default     = "10.39.0.0/24"

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0))
    error_message = "vpc_cidr: give an IPv4 CIDR, e.g. 10.39.0.0/24."
  }
}

variable "instance_type" {
  description = "EC2 instance type of the DNS hosts (BIND or Knot; small is enough)."
  type        = string
  default     = "t3.small"
}

variable "ami_id" {
  description = "AMI of a Debian 12 image for the DNS hosts."
  type        = string
}

variable "ssh_user" {
  description = "User Ansible connects as on the DNS hosts."
  type        = string
  default     = "admin"
}

variable "ssh_public_key" {
  description = "OpenSSH public key installed for ssh_user."
  type        = string
}

variable "admin_cidrs" {
  description = "CIDRs allowed to reach SSH on the DNS hosts."
  type        = list(string)

  validation {
    condition     = length(var.admin_cidrs) > 0 && alltrue([for c in var.admin_cidrs : can(cidrhost(c, 0)) && c != "0.0.0.0/0"])
    error_message = "admin_cidrs: give at least one CIDR, and not 0.0.0.0/0."
  }
}

variable "dns_client_cidrs" {
  description = "CIDRs that query and update the ACME zone: ACME clients (DNS-01 records), sites (the VA), controllers."
  type        = list(string)

  validation {
    condition     = length(var.dns_client_cidrs) > 0 && alltrue([for c in var.dns_client_cidrs : can(cidrhost(c, 0))])
    error_message = "dns_client_cidrs: give at least one IPv4 CIDR."
  }
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
