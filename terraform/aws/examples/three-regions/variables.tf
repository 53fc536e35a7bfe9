variable "ssh_public_key" {
  description = "OpenSSH public key Ansible uses on every host."
  type        = string
}

variable "admin_cidrs" {
  description = "Operators' and Ansible's networks (SSH)."
  type        = list(string)
}

variable "client_cidrs" {
  description = "ACME clients' and controllers' networks (443 at the sites, 53 at the DNS hosts)."
  type        = list(string)
}

variable "ami_ids" {
  description = "Debian 12 AMI per region: shared, eu, us, ap."
  type        = map(string)
}

variable "controller_cidrs" {
  description = "The failover controllers' addresses as the sites see them (the cluster host's public address, /32): only they reach the site agents."
  type        = list(string)
}
