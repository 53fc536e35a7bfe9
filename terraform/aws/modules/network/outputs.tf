output "vpc_id" {
  description = "The VPC."
  value       = aws_vpc.this.id
}

output "subnet_id" {
  description = "The public subnet."
  value       = aws_subnet.this.id
}
