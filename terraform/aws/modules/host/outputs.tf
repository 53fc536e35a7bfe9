output "public_ip" {
  description = "The Elastic IP."
  value       = aws_eip.this.public_ip
}

output "private_ip" {
  description = "The address inside the VPC."
  value       = aws_instance.this.private_ip
}
