variable "name" {
  description = "Name prefix of every resource, e.g. gridlink-prod."
  type        = string
}

variable "cidr_block" {
  description = "IPv4 CIDR of the VPC; split into 2 public and 2 private /20-style subnets (cidrsubnet with 4 new bits)."
  type        = string
  default     = "10.40.0.0/16"
}

variable "availability_zones" {
  description = "Exactly two availability zones, e.g. [\"eu-west-1a\", \"eu-west-1b\"] (named, so the set never changes when AWS adds a zone)."
  type        = list(string)

  validation {
    condition     = length(var.availability_zones) == 2
    error_message = "Give exactly two availability zones."
  }
}

variable "single_nat_gateway" {
  description = "One NAT gateway for both AZs (cheaper; dev) instead of one per AZ (survives an AZ outage; prod)."
  type        = bool
  default     = false
}

variable "flow_log_retention_days" {
  description = "Days VPC flow logs are kept in CloudWatch Logs."
  type        = number
  default     = 365
}

variable "kms_key_arn" {
  description = "KMS key that encrypts the flow log group."
  type        = string
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
