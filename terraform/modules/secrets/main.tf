# Two secrets, injected into the ECS task by the execution role:
#
#   <name>/database   JSON {username, password, host, port, dbname, url}
#                     url -> GRIDLINK_DATABASE_URL (the cloud reads one URL,
#                     cloud/src/config.rs `database_url`)
#   <name>/mqtt       JSON {cert_pem, key_pem}: the backend's X.509 identity,
#                     written to files by the task's init container, since
#                     GRIDLINK_MQTT_CERT / GRIDLINK_MQTT_KEY are file paths.

# URL-safe: the password goes into a URL unescaped.
resource "random_password" "database" {
  length  = 40
  special = false
}

resource "aws_secretsmanager_secret" "database" {
  #checkov:skip=CKV2_AWS_57:Rotation needs a Lambda that also rewrites the url key; rotate with `terraform apply -replace=module.gridlink.module.secrets.random_password.database` (RDS and the secret change together, then redeploy the service).
  name                    = "${var.name}/database"
  description             = "gridlink-cloud database credentials and GRIDLINK_DATABASE_URL"
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = var.recovery_window_in_days
  tags                    = var.tags
}

resource "aws_secretsmanager_secret_version" "database" {
  secret_id = aws_secretsmanager_secret.database.id
  secret_string = jsonencode({
    username = var.database_username
    password = random_password.database.result
    host     = var.database_host
    port     = var.database_port
    dbname   = var.database_name
    url      = "postgres://${var.database_username}:${random_password.database.result}@${var.database_host}:${var.database_port}/${var.database_name}?${var.database_url_options}"
  })
}

resource "aws_secretsmanager_secret" "mqtt" {
  #checkov:skip=CKV2_AWS_57:An X.509 identity is rotated by issuing a new IoT certificate (terraform apply -replace on the iot-core certificate), not by a Secrets Manager rotation Lambda.
  name                    = "${var.name}/mqtt"
  description             = "gridlink-cloud MQTT client certificate and key for AWS IoT Core"
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = var.recovery_window_in_days
  tags                    = var.tags
}

resource "aws_secretsmanager_secret_version" "mqtt" {
  secret_id = aws_secretsmanager_secret.mqtt.id
  secret_string = jsonencode({
    cert_pem = var.mqtt_certificate_pem
    key_pem  = var.mqtt_private_key_pem
  })
}
