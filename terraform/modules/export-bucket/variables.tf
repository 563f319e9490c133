variable "bucket_name" {
  description = "Globally unique bucket name."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key for default SSE-KMS encryption (bucket keys on, so KMS requests stay few)."
  type        = string
}

variable "force_destroy" {
  description = "Let terraform destroy delete a non-empty bucket (true in dev only)."
  type        = bool
  default     = false
}

variable "transition_to_ia_days" {
  description = "Days after which objects move to S3 Standard-IA."
  type        = number
  default     = 30
}

variable "transition_to_glacier_days" {
  description = "Days after which objects move to Glacier Flexible Retrieval; 0 disables the transition."
  type        = number
  default     = 90
}

variable "expiration_days" {
  description = "Days after which current objects expire; 0 keeps them forever."
  type        = number
  default     = 0
}

variable "noncurrent_version_expiration_days" {
  description = "Days a replaced or deleted version is kept."
  type        = number
  default     = 30
}

variable "additional_policy_json" {
  description = "Extra bucket policy statements (a policy JSON document) merged with the TLS-only statement, e.g. for CloudTrail delivery."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
