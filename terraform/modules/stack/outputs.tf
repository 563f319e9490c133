output "api_url" {
  description = "Base URL of the gridlink-cloud API."
  value       = module.alb.api_url
}

output "alb_dns_name" {
  description = "DNS name of the ALB (point domain_name at it when no Route 53 zone is managed here)."
  value       = module.alb.alb_dns_name
}

output "certificate_validation_records" {
  description = "ACM validation records to create by hand (certificate requested without a Route 53 zone)."
  value       = module.alb.certificate_validation_records
}

output "iot_data_endpoint" {
  description = "AWS IoT iot:Data-ATS endpoint: the agents' mqtt.host and the cloud's GRIDLINK_MQTT_HOST."
  value       = module.iot.data_endpoint
}

output "iot_device_policy_name" {
  description = "Device policy gridlink-provision attaches (--policy)."
  value       = module.iot.device_policy_name
}

output "iot_thing_type_name" {
  description = "Thing type of the VENs."
  value       = module.iot.thing_type_name
}

output "ecr_repository_url" {
  description = "Where the pipeline pushes the gridlink-cloud image."
  value       = module.ecr.repository_url
}

output "ecs_cluster_name" {
  description = "ECS cluster."
  value       = module.ecs_service.cluster_name
}

output "ecs_service_name" {
  description = "ECS service."
  value       = module.ecs_service.service_name
}

output "database_address" {
  description = "Private address of the PostgreSQL instance."
  value       = module.rds.address
}

output "database_secret_arn" {
  description = "Secret with the database credentials and GRIDLINK_DATABASE_URL (key url)."
  value       = module.secrets.database_secret_arn
}

output "export_bucket_name" {
  description = "Bucket of the daily exports."
  value       = module.export_bucket.bucket_name
}

output "telemetry_archive_bucket_name" {
  description = "Bucket of the raw telemetry archive."
  value       = module.telemetry_archive.bucket_name
}

output "export_command" {
  description = "Command of the daily export task."
  value       = module.export_schedule.command
}

output "alarm_topic_arn" {
  description = "SNS topic of the alarms."
  value       = module.monitoring.sns_topic_arn
}

output "kms_key_arn" {
  description = "The environment's KMS key."
  value       = module.kms.key_arn
}
