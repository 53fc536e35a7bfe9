variable "name" {
  description = "Name of the security group."
  type        = string
}

variable "description" {
  description = "What the security group lets through, in words."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the security group."
  type        = string
}

variable "ingress" {
  description = "Inbound rules by key: description, protocol (tcp, udp or -1 for all), from and to port, source cidr."
  type = map(object({
    description = string
    protocol    = string
    from        = number
    to          = number
    cidr        = string
  }))

  validation {
    condition     = alltrue([for r in values(var.ingress) : contains(["tcp", "udp", "-1"], r.protocol) && can(cidrhost(r.cidr, 0))])
    error_message = "ingress: each rule needs protocol tcp|udp|-1 and an IPv4 CIDR."
  }
}

variable "egress" {
  description = "Outbound rules by key, as ingress (cidr: the destination)."
  type = map(object({
    description = string
    protocol    = string
    from        = number
    to          = number
    cidr        = string
  }))

  validation {
    condition     = alltrue([for r in values(var.egress) : contains(["tcp", "udp", "-1"], r.protocol) && can(cidrhost(r.cidr, 0))])
    error_message = "egress: each rule needs protocol tcp|udp|-1 and an IPv4 CIDR."
  }
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
