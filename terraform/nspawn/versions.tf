terraform {
  # Only Terraform's built-in terraform_data: no provider to download.
  required_version = ">= 1.6.0"
}
