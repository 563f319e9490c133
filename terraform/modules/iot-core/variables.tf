variable "name" {
  description = "Name prefix of every resource, e.g. gridlink-prod."
  type        = string
}

variable "device_policy_name" {
  description = "Name of the device IoT policy. gridlink-provision attaches gridlink-device by default (its --policy option names another); keep them equal."
  type        = string
  default     = "gridlink-device"
}

variable "thing_type_name" {
  description = "IoT thing type of the VEN gateways."
  type        = string
  default     = "gridlink-ven"
}

variable "archive_bucket_arn" {
  description = "ARN of the S3 bucket the telemetry archive (topic rule -> Firehose) writes raw oadr/meter/+ payloads to."
  type        = string
}

variable "archive_prefix" {
  description = "Key prefix of archived telemetry in the bucket."
  type        = string
  default     = "raw/oadr-meter"
}

variable "kms_key_arn" {
  description = "KMS key of the archive bucket and the log groups."
  type        = string
}

variable "log_level" {
  description = "AWS IoT logging level: ERROR, WARN, INFO, DEBUG or DISABLED (INFO and DEBUG log every message: costly)."
  type        = string
  default     = "WARN"

  validation {
    condition     = contains(["ERROR", "WARN", "INFO", "DEBUG", "DISABLED"], var.log_level)
    error_message = "log_level must be ERROR, WARN, INFO, DEBUG or DISABLED."
  }
}

variable "log_retention_days" {
  description = "Days the topic rule's error log is kept."
  type        = number
  default     = 365
}

variable "backend_client_id_prefix" {
  description = "MQTT client ids the cloud backend may connect with (GRIDLINK_MQTT_CLIENT_ID defaults to gridlink-cloud-<host name>)."
  type        = string
  default     = "gridlink-cloud-"
}

variable "share_group" {
  description = "Shared-subscription group of the backend (GRIDLINK_MQTT_SHARE_GROUP)."
  type        = string
  default     = "gridlink"
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
