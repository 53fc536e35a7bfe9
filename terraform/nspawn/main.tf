# Debian 12 hosts with systemd as PID 1 on this machine, booted with
# systemd-nspawn from one cached root filesystem (an overlay per host), on
# a bridge in the cluster's switch namespace (see docs/provision.md,
# "nspawn"). Terraform records them; `cairn provision nspawn up|down`
# does the work, idempotently. Only Terraform built-ins: nothing to download.

resource "terraform_data" "switch" {
  input = {
    cairn   = var.cairn
    cluster = var.cluster
  }

  provisioner "local-exec" {
    when    = destroy
    command = "'${self.input.cairn}' provision nspawn switch-down --cluster '${self.input.cluster}'"
  }
}

resource "terraform_data" "host" {
  for_each   = var.hosts
  depends_on = [terraform_data.switch]

  # Provisioners run only on create: a host whose addresses change is made
  # anew.
  triggers_replace = [each.value.address, each.value.extra, each.value.local, var.cluster, var.state_dir, var.network]

  input = {
    cairn   = var.cairn
    cluster = var.cluster
    name    = each.key
    address = each.value.address
    extra   = each.value.extra
    local   = each.value.local
    network = var.network
    gateway = var.gateway
    cache   = var.image_cache
    mirror  = var.mirror
    state   = "${var.state_dir}/${each.key}"
  }

  provisioner "local-exec" {
    command = join(" ", concat(
      ["'${self.input.cairn}'", "provision", "nspawn", "up", "--cluster", "'${self.input.cluster}'", "--name", "'${self.input.name}'",
        "--address", "'${self.input.address}'", "--network", "'${self.input.network}'", "--gateway", "'${self.input.gateway}'",
      "--state", "'${self.input.state}'", "--image-cache", "'${self.input.cache}'", "--mirror", "'${self.input.mirror}'"],
      [for a in self.input.extra : "--extra '${a}'"],
      [for p in self.input.local : "--local '${p}'"],
    ))
  }

  provisioner "local-exec" {
    when    = destroy
    command = "'${self.input.cairn}' provision nspawn down --cluster '${self.input.cluster}' --name '${self.input.name}' --state '${self.input.state}'"
  }
}
