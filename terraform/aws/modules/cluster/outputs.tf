output "sites" {
  description = "The output contract of every cairn infrastructure module: per site its name, location, addresses and connection. The cluster module creates no site."
  value       = {}
}

output "dns_servers" {
  description = "The cluster's authoritative DNS servers (address:53), the primary first, with how Ansible reaches each host."
  value = [for i, s in var.dns_servers : {
    name     = s.name
    role     = i == 0 ? "primary" : "secondary"
    location = s.location
    address  = "${module.host[i].public_ip}:53"
    connection = {
      type = "ssh"
      user = var.ssh_user
      port = 22
    }
  }]
}

output "crl_bucket" {
  description = "S3 bucket the sites' crl-storer uploads to."
  value       = aws_s3_bucket.crl.id
}

output "crl_base_url" {
  description = "Every site's crlBaseURL in cairn.yaml (path-style, plain HTTP as Boulder requires; with crlStore.bucket = crl_bucket and the same endpoint at every site). The CRL URLs are <this><bucket>/<NameID>/<shard>.crl."
  value       = "http://s3.${aws_s3_bucket.crl.region}.amazonaws.com/"
}
