# What a cairn cluster shares beyond its sites: the S3 bucket the CRLs are
# published in, and the authoritative DNS for the ACME name. The DNS lives
# outside every site so that losing a site never takes the name with it.

locals {
  tags = merge(var.tags, { "cairn:cluster" = var.name })
}

resource "aws_s3_bucket" "crl" {
  bucket = var.crl_bucket_name
  tags   = local.tags
}

resource "aws_s3_bucket_versioning" "crl" {
  bucket = aws_s3_bucket.crl.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "crl" {
  bucket = aws_s3_bucket.crl.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

# CRLs are public by nature (relying parties fetch them), and the bucket
# holds nothing else: every site's crl-storer writes <issuer NameID>/<shard>.crl
# at its root (names never collide: one NameID per issuer). No ACLs; one
# policy that allows reading objects (not listing them).
resource "aws_s3_bucket_ownership_controls" "crl" {
  bucket = aws_s3_bucket.crl.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "crl" {
  bucket                  = aws_s3_bucket.crl.id
  block_public_acls       = true
  ignore_public_acls      = true
  block_public_policy     = false
  restrict_public_buckets = false
}

resource "aws_s3_bucket_policy" "crl_read" {
  bucket     = aws_s3_bucket.crl.id
  depends_on = [aws_s3_bucket_public_access_block.crl]
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "PublicReadCRLs"
      Effect    = "Allow"
      Principal = "*"
      Action    = "s3:GetObject"
      Resource  = "${aws_s3_bucket.crl.arn}/*"
    }]
  })
}

module "network" {
  source = "../network"
  name   = "cairn-${var.name}-dns"
  cidr   = var.vpc_cidr
  tags   = local.tags
}

locals {
  ingress = merge(
    { for c in var.dns_client_cidrs : "dns udp ${c}" => { description = "DNS queries and RFC 2136 updates", protocol = "udp", from = 53, to = 53, cidr = c } },
    { for c in concat(var.dns_client_cidrs, [var.vpc_cidr]) : "dns tcp ${c}" => { description = "DNS over TCP, updates, zone transfers between the DNS hosts", protocol = "tcp", from = 53, to = 53, cidr = c } },
    { for c in var.admin_cidrs : "ssh ${c}" => { description = "SSH for Ansible and operators", protocol = "tcp", from = 22, to = 22, cidr = c } },
  )
  egress = {
    "all" = { description = "NOTIFY, zone transfers, package mirrors", protocol = "-1", from = 0, to = 0, cidr = "0.0.0.0/0" }
  }
}

module "firewall" {
  source      = "../firewall"
  name        = "cairn-${var.name}-dns"
  description = "cairn ${var.name} authoritative DNS: queries, TSIG-signed updates and zone transfers on 53, SSH from admins"
  vpc_id      = module.network.vpc_id
  ingress     = local.ingress
  egress      = local.egress
  tags        = local.tags
}

module "host" {
  source             = "../host"
  count              = length(var.dns_servers)
  name               = "cairn-${var.name}-${var.dns_servers[count.index].name}"
  ami_id             = var.ami_id
  instance_type      = var.instance_type
  root_volume_gb     = 10
  subnet_id          = module.network.subnet_id
  security_group_ids = [module.firewall.id]
  ssh_public_key     = var.ssh_public_key
  tags               = local.tags
}
