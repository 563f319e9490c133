variable "name" {
  description = "Name prefix of every resource, e.g. gridlink-prod."
  type        = string
}

variable "deletion_window_in_days" {
  description = "Days a scheduled key deletion waits (7-30). Short in dev so destroy/recreate cycles are cheap."
  type        = number
  default     = 30

  validation {
    condition     = var.deletion_window_in_days >= 7 && var.deletion_window_in_days <= 30
    error_message = "deletion_window_in_days must be 7 to 30."
  }
}

variable "tags" {
  description = "Tags added to every resource (merged over the provider's default_tags)."
  type        = map(string)
  default     = {}
}
