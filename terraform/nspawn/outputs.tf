output "sites" {
  description = "The output contract: per site host its name, location, address and how to reach it (nsenter into the container's systemd, found from state/launcher.pid)."
  value = {
    for name, h in var.hosts : name => {
      name      = name
      location  = h.location
      addresses = concat([h.address], h.extra)
      connection = {
        type    = "nsenter"
        user    = "root"
        port    = 0
        machine = "${var.cluster}-${name}"
        state   = terraform_data.host[name].output.state
      }
    } if h.role == "site"
  }
}

output "dns_servers" {
  description = "The cluster's authoritative DNS hosts (address:53), the primary first."
  value = [
    for name in concat([for n, h in var.hosts : n if h.role == "dns-primary"], sort([for n, h in var.hosts : n if h.role == "dns-secondary"])) : {
      name     = name
      role     = trimprefix(var.hosts[name].role, "dns-")
      location = var.hosts[name].location
      address  = "${var.hosts[name].address}:53"
      connection = {
        type    = "nsenter"
        user    = "root"
        port    = 0
        machine = "${var.cluster}-${name}"
        state   = terraform_data.host[name].output.state
      }
    }
  ]
}

output "clients" {
  description = "Client hosts (for tests and drills): name, address and how to reach them."
  value = {
    for name, h in var.hosts : name => {
      address = h.address
      machine = "${var.cluster}-${name}"
      state   = terraform_data.host[name].output.state
    } if h.role == "client"
  }
}

output "gateway_netns" {
  description = "The switch namespace, where the operator's address (var.gateway) lives: run checks there."
  value       = "cairn-${var.cluster}-sw"
}
