variable "name" {
  description = "Name prefix of every secret, e.g. gridlink-prod."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key encrypting the secrets."
  type        = string
}

variable "database_username" {
  description = "Master user name of the RDS instance."
  type        = string
  default     = "gridlink"
}

variable "database_name" {
  description = "Database name on the RDS instance."
  type        = string
  default     = "gridlink"
}

variable "database_host" {
  description = "Address of the RDS instance (set once it exists; the URL secret version depends on it)."
  type        = string
}

variable "database_port" {
  description = "Port of the RDS instance."
  type        = number
  default     = 5432
}

variable "database_url_options" {
  description = "Query string of GRIDLINK_DATABASE_URL. verify-full checks the RDS certificate against the RDS CA bundle the Dockerfile puts in the image."
  type        = string
  default     = "sslmode=verify-full&sslrootcert=/etc/ssl/certs/rds-global-bundle.pem"
}

variable "mqtt_certificate_pem" {
  description = "PEM certificate of the backend's MQTT identity (iot-core module)."
  type        = string
  sensitive   = true
}

variable "mqtt_private_key_pem" {
  description = "PEM private key of the backend's MQTT identity (iot-core module)."
  type        = string
  sensitive   = true
}

variable "recovery_window_in_days" {
  description = "Days a deleted secret can be restored; 0 deletes at once (dev, so destroy and re-create work)."
  type        = number
  default     = 30
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
