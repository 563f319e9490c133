variable "name" {
  description = "Name prefix of every resource, e.g. gridlink-prod."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the service."
  type        = string
}

variable "vpc_cidr_block" {
  description = "CIDR of the VPC (egress to the database)."
  type        = string
}

variable "private_subnet_ids" {
  description = "Private subnets the tasks run in (no public IPs)."
  type        = list(string)
}

variable "alb_security_group_id" {
  description = "Security group of the ALB: the only source admitted on the container port."
  type        = string
}

variable "target_group_arn" {
  description = "ALB target group the tasks register in."
  type        = string
}

variable "alb_arn_suffix" {
  description = "ARN suffix of the ALB (request-count scaling)."
  type        = string
}

variable "target_group_arn_suffix" {
  description = "ARN suffix of the target group (request-count scaling)."
  type        = string
}

variable "image" {
  description = "gridlink-cloud image, <ecr repository url>:<tag> (built from the repository's Dockerfile)."
  type        = string
}

variable "init_image" {
  description = "Small image with a POSIX shell for the init container that writes the MQTT certificate and key to the shared volume."
  type        = string
  default     = "public.ecr.aws/docker/library/busybox:1.36"
}

variable "container_port" {
  description = "Port of the HTTP API in the task (GRIDLINK_HTTP_LISTEN=0.0.0.0:<port>)."
  type        = number
  default     = 8080
}

variable "cpu" {
  description = "Task CPU units (256 = 0.25 vCPU)."
  type        = number
  default     = 512
}

variable "memory" {
  description = "Task memory in MiB."
  type        = number
  default     = 1024
}

variable "cpu_architecture" {
  description = "X86_64 (the Dockerfile builds x86_64-unknown-linux-musl) or ARM64 (needs an aarch64 image)."
  type        = string
  default     = "X86_64"
}

variable "desired_count" {
  description = "Tasks at creation (autoscaling adjusts it afterwards)."
  type        = number
  default     = 2
}

variable "min_capacity" {
  description = "Fewest tasks autoscaling keeps."
  type        = number
  default     = 2
}

variable "max_capacity" {
  description = "Most tasks autoscaling starts."
  type        = number
  default     = 6
}

variable "cpu_target_percent" {
  description = "Target average CPU utilisation of the service."
  type        = number
  default     = 60
}

variable "requests_per_target" {
  description = "Target ALB requests per task per minute."
  type        = number
  default     = 3000
}

variable "mqtt_host" {
  description = "AWS IoT iot:Data-ATS endpoint (GRIDLINK_MQTT_HOST)."
  type        = string
}

variable "share_group" {
  description = "Shared-subscription group of the backend; must match the iot-core module's share_group (GRIDLINK_MQTT_SHARE_GROUP)."
  type        = string
  default     = "gridlink"
}

variable "database_url_value_from" {
  description = "Secrets Manager valueFrom of GRIDLINK_DATABASE_URL (secret ARN with the :url:: JSON key)."
  type        = string
}

variable "mqtt_secret_arn" {
  description = "Secret with the backend's cert_pem and key_pem."
  type        = string
}

variable "secret_arns" {
  description = "Secrets the execution role may read."
  type        = list(string)
}

variable "environment" {
  description = "Extra GRIDLINK_* settings for the container (cloud/README.md), e.g. { GRIDLINK_RETENTION_RAW_DAYS = \"365\" }."
  type        = map(string)
  default     = {}
}

variable "kms_key_arn" {
  description = "KMS key of the secrets and the log group."
  type        = string
}

variable "log_retention_days" {
  description = "Days container logs are kept."
  type        = number
  default     = 365
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
