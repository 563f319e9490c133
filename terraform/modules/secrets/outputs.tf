output "database_secret_arn" {
  description = "ARN of the database secret (JSON: username, password, host, port, dbname, url)."
  value       = aws_secretsmanager_secret.database.arn
}

output "database_url_value_from" {
  description = "ECS valueFrom of GRIDLINK_DATABASE_URL (the url key of the database secret)."
  value       = "${aws_secretsmanager_secret_version.database.arn}:url::" # the version: tasks start once the URL is stored
}

output "database_password" {
  description = "Master password for the RDS instance."
  value       = random_password.database.result
  sensitive   = true
}

output "database_username" {
  description = "Master user name."
  value       = var.database_username
}

output "database_name" {
  description = "Database name."
  value       = var.database_name
}

output "mqtt_secret_arn" {
  description = "ARN of the MQTT identity secret (JSON: cert_pem, key_pem)."
  value       = aws_secretsmanager_secret_version.mqtt.arn # the version: tasks start once the key is stored
}

output "secret_arns" {
  description = "Every secret the task execution role may read."
  value       = [aws_secretsmanager_secret.database.arn, aws_secretsmanager_secret.mqtt.arn]
}
