output "address" {
  description = "Host name of the instance (private DNS)."
  value       = aws_db_instance.this.address
}

output "port" {
  description = "Port of the instance."
  value       = aws_db_instance.this.port
}

output "instance_identifier" {
  description = "Instance identifier (CloudWatch dimension DBInstanceIdentifier)."
  value       = aws_db_instance.this.identifier
}

output "instance_arn" {
  description = "ARN of the instance."
  value       = aws_db_instance.this.arn
}

output "security_group_id" {
  description = "Security group of the database."
  value       = aws_security_group.db.id
}
