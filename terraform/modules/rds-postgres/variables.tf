variable "name" {
  description = "Name prefix and instance identifier, e.g. gridlink-prod."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the database."
  type        = string
}

variable "private_subnet_ids" {
  description = "Private subnets (two AZs) of the DB subnet group."
  type        = list(string)
}

variable "allowed_security_group_id" {
  description = "The ECS service's security group: the only source admitted on 5432."
  type        = string
}

variable "engine_version" {
  description = "PostgreSQL major version (minor versions are upgraded automatically in the maintenance window)."
  type        = string
  default     = "16"
}

variable "instance_class" {
  description = "Instance class, e.g. db.t4g.micro (dev), db.m7g.large (prod)."
  type        = string
  default     = "db.t4g.micro"
}

variable "allocated_storage_gb" {
  description = "Initial gp3 storage in GB."
  type        = number
  default     = 20
}

variable "max_allocated_storage_gb" {
  description = "Storage autoscaling ceiling in GB."
  type        = number
  default     = 200
}

variable "database_name" {
  description = "Database created on the instance."
  type        = string
  default     = "gridlink"
}

variable "username" {
  description = "Master user name."
  type        = string
  default     = "gridlink"
}

variable "password" {
  description = "Master password (from the secrets module)."
  type        = string
  sensitive   = true
}

variable "multi_az" {
  description = "Standby in a second AZ with automatic failover (true in prod)."
  type        = bool
}

variable "deletion_protection" {
  description = "Refuse deletion (true in prod; false in dev so terraform destroy works)."
  type        = bool
}

variable "skip_final_snapshot" {
  description = "Delete without a final snapshot (dev only)."
  type        = bool
  default     = false
}

variable "backup_retention_days" {
  description = "Days automated backups (point-in-time recovery) are kept; at least 7."
  type        = number
  default     = 7

  validation {
    condition     = var.backup_retention_days >= 7 && var.backup_retention_days <= 35
    error_message = "backup_retention_days must be 7 to 35."
  }
}

variable "kms_key_arn" {
  description = "KMS key encrypting storage, snapshots and Performance Insights."
  type        = string
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
