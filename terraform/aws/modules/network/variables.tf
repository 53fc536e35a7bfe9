variable "name" {
  description = "Name tag of the network's resources."
  type        = string
}

variable "cidr" {
  description = "CIDR of the VPC and its one public subnet."
  type        = string

  validation {
    condition     = can(cidrhost(var.cidr, 0)) && tonumber(split("/", var.cidr)[1]) <= 28
    error_message = "cidr: give an IPv4 CIDR of /28 or larger, e.g. 10.40.0.0/24."
  }
}

variable "availability_zone" {
  description = "Availability zone of the subnet; empty picks the region's first."
  type        = string
  default     = ""
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
