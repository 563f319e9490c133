variable "environment" {
  description = "Environment name: dev, staging, prod (part of every resource name)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,11}$", var.environment))
    error_message = "environment: 2-12 lower-case letters, digits or dashes, starting with a letter."
  }
}

variable "production" {
  description = "Production safeguards: RDS multi-AZ and deletion protection, ALB deletion protection, a NAT gateway per AZ, final snapshots, no force_destroy, 30-day secret and key recovery windows. false makes terraform destroy clean (dev)."
  type        = bool
}

variable "name_prefix" {
  description = "Prefix of resource names; the name is <prefix>-<environment>."
  type        = string
  default     = "gridlink"
}

variable "availability_zones" {
  description = "The two availability zones of the environment."
  type        = list(string)
}

variable "vpc_cidr" {
  description = "CIDR of the environment's VPC."
  type        = string
  default     = "10.40.0.0/16"
}

variable "domain_name" {
  description = "Host name of the API, e.g. api.dev.gridlink.example.com."
  type        = string
}

variable "certificate_arn" {
  description = "Existing ACM certificate for domain_name; null lets the alb module request one."
  type        = string
  default     = null
}

variable "route53_zone_id" {
  description = "Hosted zone for the API record and certificate validation; null creates no DNS records."
  type        = string
  default     = null
}

variable "image_tag" {
  description = "Tag of the gridlink-cloud image in this environment's ECR repository (the pipeline passes the commit SHA)."
  type        = string
}

variable "service_cpu" {
  description = "Task CPU units of the service."
  type        = number
  default     = 512
}

variable "service_memory" {
  description = "Task memory (MiB) of the service."
  type        = number
  default     = 1024
}

variable "service_min_tasks" {
  description = "Fewest service tasks."
  type        = number
  default     = 1
}

variable "service_max_tasks" {
  description = "Most service tasks."
  type        = number
  default     = 4
}

variable "service_environment" {
  description = "Extra GRIDLINK_* settings of the service (cloud/README.md)."
  type        = map(string)
  default     = {}
}

variable "db_instance_class" {
  description = "RDS instance class."
  type        = string
  default     = "db.t4g.micro"
}

variable "db_allocated_storage_gb" {
  description = "Initial RDS storage (GB)."
  type        = number
  default     = 20
}

variable "db_max_allocated_storage_gb" {
  description = "RDS storage autoscaling ceiling (GB)."
  type        = number
  default     = 200
}

variable "db_backup_retention_days" {
  description = "RDS automated backup retention, 7 to 35 days."
  type        = number
  default     = 7
}

variable "log_retention_days" {
  description = "Retention of every CloudWatch log group of the environment."
  type        = number
  default     = 365
}

variable "iot_log_level" {
  description = "AWS IoT logging level (account-wide)."
  type        = string
  default     = "WARN"
}

variable "device_policy_name" {
  description = "Name of the device IoT policy (gridlink-provision --policy; default gridlink-device). Must be unique per account and region."
  type        = string
  default     = "gridlink-device"
}

variable "alarm_emails" {
  description = "E-mail addresses that receive the alarms."
  type        = list(string)
  default     = []
}

variable "enable_cloudtrail" {
  description = "Create a CloudTrail trail in this account (turn off where the organisation has one)."
  type        = bool
  default     = true
}

variable "export_command" {
  description = "Arguments of the daily export task after /gridlink-cloud; null uses the export-schedule module's default."
  type        = list(string)
  default     = null
}

variable "tags" {
  description = "Extra tags on every resource (Project, Environment and ManagedBy come from the provider's default_tags)."
  type        = map(string)
  default     = {}
}
