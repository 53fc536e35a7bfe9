# Namespace hosts on this machine: one network namespace per host on a
# bridge in a switch namespace, each with an overlay of this machine's
# root and its own processes (see docs/provision.md). Terraform records
# them; `cairn provision host up|down` does the work, idempotently.

resource "terraform_data" "switch" {
  input = {
    cairn   = var.cairn
    cluster = var.cluster
  }

  provisioner "local-exec" {
    when    = destroy
    command = "'${self.input.cairn}' provision host switch-down --cluster '${self.input.cluster}'"
  }
}

resource "terraform_data" "host" {
  for_each   = var.hosts
  depends_on = [terraform_data.switch]

  # Provisioners run only on create: a host whose addresses change is made
  # anew.
  triggers_replace = [each.value.address, each.value.extra, each.value.local, each.value.onlink, var.cluster, var.state_dir]

  input = {
    cairn   = var.cairn
    cluster = var.cluster
    name    = each.key
    address = each.value.address
    extra   = each.value.extra
    local   = each.value.local
    onlink  = each.value.onlink
    gateway = var.gateway
    state   = "${var.state_dir}/${each.key}"
  }

  provisioner "local-exec" {
    command = join(" ", concat(
      ["'${self.input.cairn}'", "provision", "host", "up", "--cluster", "'${self.input.cluster}'", "--name", "'${self.input.name}'",
      "--address", "'${self.input.address}'", "--gateway", "'${self.input.gateway}'", "--state", "'${self.input.state}'"],
      [for a in self.input.extra : "--extra '${a}'"],
      [for p in self.input.local : "--local '${p}'"],
      [for p in self.input.onlink : "--onlink '${p}'"],
    ))
  }

  provisioner "local-exec" {
    when    = destroy
    command = "'${self.input.cairn}' provision host down --cluster '${self.input.cluster}' --name '${self.input.name}' --state '${self.input.state}'"
  }
}
