# A cairn cluster on AWS: three sites in three regions, and the shared
# parts (CRL bucket, authoritative DNS) in a fourth, outside every site.
# This is the root `cairn provision --infra aws` writes for a three-site
# cairn.yaml; copy it to write your own.

module "cluster" {
  source    = "../../modules/cluster"
  providers = { aws = aws.shared }

  name             = "prod"
  crl_bucket_name  = "example-cairn-prod-crl"
  ami_id           = var.ami_ids["shared"]
  ssh_public_key   = var.ssh_public_key
  admin_cidrs      = var.admin_cidrs
  dns_client_cidrs = var.client_cidrs
}

module "site_eu" {
  source    = "../../modules/site"
  providers = { aws = aws.eu }

  name           = "eu"
  location       = "eu-west-1"
  vpc_cidr       = "10.40.1.0/24"
  ami_id         = var.ami_ids["eu"]
  ssh_public_key = var.ssh_public_key
  admin_cidrs    = var.admin_cidrs
  client_cidrs   = var.client_cidrs
  # The controller runs on the cluster's DNS host.
  controller_cidrs = var.controller_cidrs
}

module "site_us" {
  source    = "../../modules/site"
  providers = { aws = aws.us }

  name           = "us"
  location       = "us-east-1"
  vpc_cidr       = "10.40.2.0/24"
  ami_id         = var.ami_ids["us"]
  ssh_public_key = var.ssh_public_key
  admin_cidrs    = var.admin_cidrs
  client_cidrs   = var.client_cidrs
  # The controller runs on the cluster's DNS host.
  controller_cidrs = var.controller_cidrs
}

module "site_ap" {
  source    = "../../modules/site"
  providers = { aws = aws.ap }

  name           = "ap"
  location       = "ap-southeast-1"
  vpc_cidr       = "10.40.3.0/24"
  ami_id         = var.ami_ids["ap"]
  ssh_public_key = var.ssh_public_key
  admin_cidrs    = var.admin_cidrs
  client_cidrs   = var.client_cidrs
  # The controller runs on the cluster's DNS host.
  controller_cidrs = var.controller_cidrs
}
