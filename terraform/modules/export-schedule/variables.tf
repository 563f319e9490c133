variable "name" {
  description = "Name prefix of every resource, e.g. gridlink-prod."
  type        = string
}

variable "cluster_arn" {
  description = "ECS cluster the export task runs in."
  type        = string
}

variable "image" {
  description = "gridlink-cloud image (the same as the service's)."
  type        = string
}

variable "execution_role_arn" {
  description = "Task execution role (image pull, logs, the database secret)."
  type        = string
}

variable "private_subnet_ids" {
  description = "Private subnets of the task."
  type        = list(string)
}

variable "security_group_id" {
  description = "Security group of the task: the service's, the only one the database admits."
  type        = string
}

variable "database_url_value_from" {
  description = "Secrets Manager valueFrom of GRIDLINK_DATABASE_URL."
  type        = string
}

variable "export_bucket_name" {
  description = "Bucket the export writes to."
  type        = string
}

variable "export_bucket_arn" {
  description = "ARN of export_bucket_name."
  type        = string
}

variable "export_prefix" {
  description = "Key prefix of the daily exports."
  type        = string
  default     = "daily"
}

variable "command" {
  description = "Arguments after /gridlink-cloud (the image's ENTRYPOINT); null runs `export --day yesterday --output s3://<bucket>/<prefix>/`. The export command is planned in another issue: align this with its final CLI."
  type        = list(string)
  default     = null
}

variable "schedule_expression" {
  description = "EventBridge Scheduler expression of the daily run."
  type        = string
  default     = "cron(30 1 * * ? *)"
}

variable "schedule_timezone" {
  description = "Time zone of schedule_expression (the export's day boundaries are UTC)."
  type        = string
  default     = "UTC"
}

variable "cpu" {
  description = "Task CPU units."
  type        = number
  default     = 512
}

variable "memory" {
  description = "Task memory in MiB."
  type        = number
  default     = 2048
}

variable "cpu_architecture" {
  description = "X86_64 or ARM64, matching the image."
  type        = string
  default     = "X86_64"
}

variable "kms_key_arn" {
  description = "KMS key of the bucket, the log group and the dead-letter queue."
  type        = string
}

variable "log_retention_days" {
  description = "Days export logs are kept."
  type        = number
  default     = 365
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
