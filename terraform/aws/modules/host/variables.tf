variable "name" {
  description = "Name tag of the host and its key pair."
  type        = string
}

variable "ami_id" {
  description = "AMI of a Debian 12 (bookworm) image; the Ansible roles expect Debian 12."
  type        = string

  validation {
    condition     = can(regex("^ami-[0-9a-f]{8,17}$", var.ami_id))
    error_message = "ami_id: give an AMI ID like ami-0123456789abcdef0 (Debian 12 for the region)."
  }
}

variable "instance_type" {
  description = "EC2 instance type."
  type        = string
}

variable "root_volume_gb" {
  description = "Size of the encrypted root volume in GiB."
  type        = number

  validation {
    condition     = var.root_volume_gb >= 8
    error_message = "root_volume_gb: at least 8 GiB."
  }
}

variable "subnet_id" {
  description = "Subnet the host lives in."
  type        = string
}

variable "security_group_ids" {
  description = "Security groups of the host."
  type        = list(string)
}

variable "ssh_public_key" {
  description = "OpenSSH public key installed for the AMI's default user."
  type        = string

  validation {
    condition     = can(regex("^(ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|ssh-rsa) ", var.ssh_public_key))
    error_message = "ssh_public_key: give an OpenSSH public key line (ssh-ed25519 AAAA...)."
  }
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
