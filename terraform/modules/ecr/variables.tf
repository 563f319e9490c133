variable "repository_name" {
  description = "ECR repository name, e.g. gridlink-cloud."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key encrypting the images."
  type        = string
}

variable "keep_tagged_images" {
  description = "How many tagged images the lifecycle policy keeps (newest first)."
  type        = number
  default     = 30
}

variable "untagged_expiry_days" {
  description = "Days after which untagged images (superseded layers of failed pushes) are deleted."
  type        = number
  default     = 7
}

variable "force_delete" {
  description = "Let terraform destroy delete the repository with its images (dev only)."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
