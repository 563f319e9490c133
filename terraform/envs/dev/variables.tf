variable "region" {
  description = "AWS region of the environment."
  type        = string
  default     = "eu-west-1"
}

variable "domain_name" {
  description = "Host name of the API."
  type        = string
}

variable "certificate_arn" {
  description = "Existing ACM certificate for domain_name; null requests one."
  type        = string
  default     = null
}

variable "route53_zone_id" {
  description = "Hosted zone for the API record and the certificate validation; null creates no DNS records."
  type        = string
  default     = null
}

variable "image_tag" {
  description = "gridlink-cloud image tag in this environment's ECR repository (the pipeline passes the commit SHA)."
  type        = string
}

variable "alarm_emails" {
  description = "E-mail addresses that receive the alarms."
  type        = list(string)
  default     = []
}

variable "enable_cloudtrail" {
  description = "Create a CloudTrail trail in the account (off where the organisation already has one)."
  type        = bool
  default     = true
}
