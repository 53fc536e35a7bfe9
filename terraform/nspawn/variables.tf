variable "cairn" {
  description = "Absolute path of the cairn binary that boots and removes the hosts (cairn provision writes it)."
  type        = string

  validation {
    condition     = startswith(var.cairn, "/")
    error_message = "cairn: give the absolute path of the cairn binary."
  }
}

variable "cluster" {
  description = "Short cluster prefix of every name (switch namespace cairn-<cluster>-sw, machines <cluster>-<host>)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9]{0,7}$", var.cluster))
    error_message = "cluster: 1-8 lower-case letters or digits, starting with a letter (it prefixes interface and machine names)."
  }
}

variable "state_dir" {
  description = "Absolute directory for the hosts' state (overlay upper directories, launcher PIDs, consoles)."
  type        = string

  validation {
    condition     = startswith(var.state_dir, "/")
    error_message = "state_dir: give an absolute path."
  }
}

variable "image_cache" {
  description = "Absolute directory of the cached root filesystem (debootstrap once; every host's overlay shares it)."
  type        = string

  validation {
    condition     = startswith(var.image_cache, "/")
    error_message = "image_cache: give an absolute path."
  }
}

variable "mirror" {
  description = "The Debian mirror debootstrap uses (empty: the one apt is configured with)."
  type        = string
  default     = ""
}

variable "network" {
  description = "The hosts' network on the bridge (a private block, not loopback), e.g. 10.78.0.0/16."
  type        = string

  validation {
    condition     = can(cidrnetmask(var.network)) && !startswith(var.network, "127.")
    error_message = "network: give an IPv4 block that is not loopback, e.g. 10.78.0.0/16."
  }
}

variable "gateway" {
  description = "The operator's address on the bridge (in the switch namespace): cairn's checks run from there."
  type        = string

  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+\\.[0-9]+$", var.gateway)) && !startswith(var.gateway, "127.")
    error_message = "gateway: give an IPv4 address in network that no host uses."
  }
}

variable "hosts" {
  description = "The hosts by name: role (site, dns-primary, dns-secondary or client), the address the others reach and extra ones, prefixes local to the host (a site's service network), a location label."
  type = map(object({
    role     = string
    address  = string
    extra    = optional(list(string), [])
    local    = optional(list(string), [])
    location = optional(string, "nspawn")
  }))

  validation {
    condition     = alltrue([for h in values(var.hosts) : contains(["site", "dns-primary", "dns-secondary", "client"], h.role) && can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+\\.[0-9]+$", h.address)) && !startswith(h.address, "127.")])
    error_message = "hosts: each host needs role site, dns-primary, dns-secondary or client and an IPv4 address that is not loopback."
  }

  validation {
    condition     = length([for h in values(var.hosts) : h if h.role == "dns-primary"]) <= 1
    error_message = "hosts: at most one host has role dns-primary."
  }

  validation {
    condition     = alltrue([for n in keys(var.hosts) : can(regex("^[a-z][a-z0-9-]{0,12}$", n))])
    error_message = "hosts: names are 1-13 lower-case letters, digits or hyphens (they name machines and interfaces)."
  }
}
