output "data_endpoint" {
  description = "The iot:Data-ATS endpoint: GRIDLINK_MQTT_HOST for the cloud, mqtt.host in the agents' agent.toml."
  value       = data.aws_iot_endpoint.data.endpoint_address
}

output "device_policy_name" {
  description = "Name of the device policy (pass to gridlink-provision --policy if not the default)."
  value       = aws_iot_policy.device.name
}

output "device_policy_document" {
  description = "The device policy document, as read from provisioning/policy/device-policy.json."
  value       = aws_iot_policy.device.policy
}

output "thing_type_name" {
  description = "Thing type of the VENs."
  value       = aws_iot_thing_type.ven.name
}

output "backend_certificate_pem" {
  description = "Certificate of the cloud backend's MQTT identity."
  value       = aws_iot_certificate.backend.certificate_pem
  sensitive   = true
}

output "backend_private_key" {
  description = "Private key of the cloud backend's MQTT identity."
  value       = aws_iot_certificate.backend.private_key
  sensitive   = true
}

output "backend_certificate_arn" {
  description = "ARN of the backend certificate."
  value       = aws_iot_certificate.backend.arn
}

output "archive_rule_name" {
  description = "Name of the telemetry-archive topic rule (CloudWatch dimension RuleName)."
  value       = aws_iot_topic_rule.archive.name
}

output "archive_delivery_stream_name" {
  description = "Firehose delivery stream of the telemetry archive (CloudWatch dimension DeliveryStreamName)."
  value       = aws_kinesis_firehose_delivery_stream.archive.name
}
