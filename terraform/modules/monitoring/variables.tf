variable "name" {
  description = "Name prefix of every resource, e.g. gridlink-prod."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key of the SNS topic and the CloudTrail logs."
  type        = string
}

variable "alarm_emails" {
  description = "E-mail addresses subscribed to the alarm topic (each must confirm the subscription)."
  type        = list(string)
  default     = []
}

variable "enable_cloudtrail" {
  description = "Create a multi-region CloudTrail trail (one per account is enough: turn off where the organisation already has one)."
  type        = bool
  default     = true
}

variable "cloudtrail_bucket_name" {
  description = "Bucket the trail delivers to (its policy must allow CloudTrail; the stack creates it with export-bucket)."
  type        = string
  default     = null
}

variable "cloudtrail_s3_data_event_bucket_arns" {
  description = "Buckets whose object-level operations the trail records (S3 data events), e.g. the export and archive buckets."
  type        = list(string)
  default     = []
}

variable "ecs_cluster_name" {
  description = "ClusterName dimension of the service alarms."
  type        = string
}

variable "ecs_service_name" {
  description = "ServiceName dimension of the service alarms."
  type        = string
}

variable "alb_arn_suffix" {
  description = "LoadBalancer dimension of the ALB alarms."
  type        = string
}

variable "rds_instance_identifier" {
  description = "DBInstanceIdentifier dimension of the RDS alarms."
  type        = string
}

variable "iot_rule_name" {
  description = "RuleName dimension of the IoT rule alarms."
  type        = string
}

variable "archive_delivery_stream_name" {
  description = "DeliveryStreamName dimension of the telemetry archive alarm."
  type        = string
}

variable "cpu_threshold_percent" {
  description = "Service CPU alarm threshold (average over 5 min)."
  type        = number
  default     = 85
}

variable "memory_threshold_percent" {
  description = "Service memory alarm threshold (average over 5 min)."
  type        = number
  default     = 85
}

variable "alb_5xx_threshold" {
  description = "ALB and target 5xx responses per 5 min that raise the alarm."
  type        = number
  default     = 10
}

variable "alb_latency_p95_seconds" {
  description = "p95 target response time (seconds, over 5 min) that raises the alarm."
  type        = number
  default     = 1
}

variable "rds_cpu_threshold_percent" {
  description = "RDS CPU alarm threshold (average over 10 min)."
  type        = number
  default     = 80
}

variable "rds_free_storage_threshold_bytes" {
  description = "RDS free storage (bytes) below which the alarm fires."
  type        = number
  default     = 5368709120 # 5 GiB
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
