output "sites" {
  description = "The output contract of every cairn infrastructure module: per site its name, location label, host addresses (public first) and how Ansible reaches it."
  value = {
    (var.name) = {
      name      = var.name
      location  = var.location
      addresses = [module.host.public_ip, module.host.private_ip]
      connection = {
        type = "ssh"
        user = var.ssh_user
        port = 22
      }
    }
  }
}

output "dns_servers" {
  description = "The cluster's authoritative DNS servers. A site module has none: the ACME name's DNS lives outside every site (see the cluster module)."
  value       = []
}
