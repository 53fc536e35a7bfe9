variable "cairn" {
  description = "Absolute path of the cairn binary that creates and removes the namespace hosts (cairn provision writes it)."
  type        = string

  validation {
    condition     = startswith(var.cairn, "/")
    error_message = "cairn: give the absolute path of the cairn binary."
  }
}

variable "cluster" {
  description = "Short cluster prefix of every namespace name (cairn-<cluster>-<host>)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9]{0,7}$", var.cluster))
    error_message = "cluster: 1-8 lower-case letters or digits, starting with a letter (it prefixes interface and namespace names)."
  }
}

variable "state_dir" {
  description = "Absolute directory for the hosts' state (overlay upper directories, anchor PIDs)."
  type        = string

  validation {
    condition     = startswith(var.state_dir, "/")
    error_message = "state_dir: give an absolute path."
  }
}

variable "gateway" {
  description = "The operator's address on the cluster bridge (in the switch namespace): cairn's checks run from there."
  type        = string

  validation {
    condition     = can(regex("^127\\.[0-9]+\\.[0-9]+\\.[0-9]+$", var.gateway))
    error_message = "gateway: give a 127.x.y.z address that no host uses."
  }
}

variable "hosts" {
  description = "The hosts by name: role (site, dns-primary, dns-secondary or client), the address the others reach and extra ones, prefixes local to the host (a site's service network), networks on the bridge it reaches from its address (a site: its clients' networks; a client of its own range: 127.0.0.0/8), a location label."
  type = map(object({
    role     = string
    address  = string
    extra    = optional(list(string), [])
    local    = optional(list(string), [])
    onlink   = optional(list(string), [])
    location = optional(string, "local")
  }))

  validation {
    condition     = alltrue([for h in values(var.hosts) : contains(["site", "dns-primary", "dns-secondary", "client"], h.role) && can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+\\.[0-9]+$", h.address)) && (h.role == "client" || startswith(h.address, "127."))])
    error_message = "hosts: each host needs role site, dns-primary, dns-secondary or client and an IPv4 address, 127.x.y.z but for a client (which may have one of its own range)."
  }

  validation {
    condition     = alltrue(flatten([for h in values(var.hosts) : [for p in h.onlink : can(cidrhost(p, 0)) && !strcontains(p, ":")]]))
    error_message = "hosts: each onlink entry is an IPv4 prefix, e.g. 10.79.83.0/24."
  }

  validation {
    condition     = length([for h in values(var.hosts) : h if h.role == "dns-primary"]) <= 1
    error_message = "hosts: at most one host has role dns-primary."
  }

  validation {
    condition     = alltrue([for n in keys(var.hosts) : can(regex("^[a-z][a-z0-9-]{0,12}$", n))])
    error_message = "hosts: names are 1-13 lower-case letters, digits or hyphens (they name interfaces)."
  }
}
