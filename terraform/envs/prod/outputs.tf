output "api_url" {
  description = "Base URL of the gridlink-cloud API."
  value       = module.gridlink.api_url
}

output "alb_dns_name" {
  description = "DNS name of the ALB."
  value       = module.gridlink.alb_dns_name
}

output "certificate_validation_records" {
  description = "ACM validation records to create by hand when no Route 53 zone is given."
  value       = module.gridlink.certificate_validation_records
}

output "iot_data_endpoint" {
  description = "AWS IoT iot:Data-ATS endpoint (agents' mqtt.host)."
  value       = module.gridlink.iot_data_endpoint
}

output "iot_device_policy_name" {
  description = "Device policy for gridlink-provision --policy."
  value       = module.gridlink.iot_device_policy_name
}

output "ecr_repository_url" {
  description = "Repository the pipeline pushes the image to."
  value       = module.gridlink.ecr_repository_url
}

output "ecs_cluster_name" {
  description = "ECS cluster."
  value       = module.gridlink.ecs_cluster_name
}

output "ecs_service_name" {
  description = "ECS service."
  value       = module.gridlink.ecs_service_name
}

output "database_secret_arn" {
  description = "Secret with GRIDLINK_DATABASE_URL (key url)."
  value       = module.gridlink.database_secret_arn
}

output "export_bucket_name" {
  description = "Bucket of the daily exports."
  value       = module.gridlink.export_bucket_name
}

output "telemetry_archive_bucket_name" {
  description = "Bucket of the raw telemetry archive."
  value       = module.gridlink.telemetry_archive_bucket_name
}

output "alarm_topic_arn" {
  description = "SNS topic of the alarms."
  value       = module.gridlink.alarm_topic_arn
}
