variable "name" {
  description = "Name prefix of every resource, e.g. gridlink-prod (ALB names: at most 32 characters with suffixes)."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the load balancer and its target group."
  type        = string
}

variable "public_subnet_ids" {
  description = "Public subnets (two AZs) the internet-facing ALB lives in."
  type        = list(string)
}

variable "container_port" {
  description = "Port gridlink-cloud listens on in the task (GRIDLINK_HTTP_LISTEN)."
  type        = number
  default     = 8080
}

variable "health_check_path" {
  description = "Target group health check path: the cloud's /health (200 when database and broker are up, 503 otherwise)."
  type        = string
  default     = "/health"
}

variable "domain_name" {
  description = "Host name of the API, e.g. api.gridlink.example.com."
  type        = string
}

variable "certificate_arn" {
  description = "ARN of an existing ACM certificate for domain_name; null creates one (DNS-validated in route53_zone_id when given, else validated by hand)."
  type        = string
  default     = null
}

variable "route53_zone_id" {
  description = "Hosted zone for the alias record (and certificate validation); null creates no DNS records."
  type        = string
  default     = null
}

variable "ssl_policy" {
  description = "TLS policy of the HTTPS listener."
  type        = string
  default     = "ELBSecurityPolicy-TLS13-1-2-2021-06"
}

variable "deletion_protection" {
  description = "ALB deletion protection (true in prod; false lets terraform destroy remove it)."
  type        = bool
  default     = true
}

variable "access_logs_bucket" {
  description = "Existing S3 bucket (SSE-S3, with the ELB log delivery policy) for access logs; null creates one in this module."
  type        = string
  default     = null
}

variable "access_logs_expiration_days" {
  description = "Days access logs are kept in the bucket this module creates."
  type        = number
  default     = 90
}

variable "force_destroy" {
  description = "Let terraform destroy delete the non-empty access log bucket (dev only)."
  type        = bool
  default     = false
}

variable "allowed_cidr_blocks" {
  description = "Client CIDRs allowed to reach the ALB on 80/443."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "waf_rate_limit" {
  description = "Requests per 5 minutes from one IP before WAF blocks it."
  type        = number
  default     = 2000
}

variable "log_retention_days" {
  description = "Days WAF logs are kept."
  type        = number
  default     = 365
}

variable "kms_key_arn" {
  description = "KMS key encrypting the WAF log group."
  type        = string
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
