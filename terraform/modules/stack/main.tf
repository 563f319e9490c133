# One gridlink environment: every module wired together. envs/<env> call
# this with the environment's settings; `production` switches the safeguards.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  name       = "${var.name_prefix}-${var.environment}"
  account_id = data.aws_caller_identity.current.account_id
  tags       = merge(var.tags, { Environment = var.environment })
}

module "kms" {
  source = "../kms"

  name                    = local.name
  deletion_window_in_days = var.production ? 30 : 7
  tags                    = local.tags
}

module "network" {
  source = "../network"

  name                    = local.name
  cidr_block              = var.vpc_cidr
  availability_zones      = var.availability_zones
  single_nat_gateway      = !var.production
  flow_log_retention_days = var.log_retention_days
  kms_key_arn             = module.kms.key_arn
  tags                    = local.tags
}

module "ecr" {
  source = "../ecr"

  repository_name = "${local.name}/gridlink-cloud"
  kms_key_arn     = module.kms.key_arn
  force_delete    = !var.production
  tags            = local.tags
}

module "export_bucket" {
  source = "../export-bucket"

  bucket_name   = "${local.name}-export-${local.account_id}"
  kms_key_arn   = module.kms.key_arn
  force_destroy = !var.production
  tags          = local.tags
}

module "telemetry_archive" {
  source = "../export-bucket"

  bucket_name                = "${local.name}-telemetry-archive-${local.account_id}"
  kms_key_arn                = module.kms.key_arn
  force_destroy              = !var.production
  transition_to_ia_days      = 30
  transition_to_glacier_days = 90
  tags                       = local.tags
}

module "iot" {
  source = "../iot-core"

  name               = local.name
  device_policy_name = var.device_policy_name
  archive_bucket_arn = module.telemetry_archive.bucket_arn
  kms_key_arn        = module.kms.key_arn
  log_level          = var.iot_log_level
  log_retention_days = var.log_retention_days
  tags               = local.tags
}

module "alb" {
  source = "../alb"

  name                = local.name
  vpc_id              = module.network.vpc_id
  public_subnet_ids   = module.network.public_subnet_ids
  domain_name         = var.domain_name
  certificate_arn     = var.certificate_arn
  route53_zone_id     = var.route53_zone_id
  deletion_protection = var.production
  force_destroy       = !var.production
  kms_key_arn         = module.kms.key_arn
  log_retention_days  = var.log_retention_days
  tags                = local.tags
}

module "secrets" {
  source = "../secrets"

  name                    = local.name
  kms_key_arn             = module.kms.key_arn
  database_host           = module.rds.address
  database_port           = module.rds.port
  mqtt_certificate_pem    = module.iot.backend_certificate_pem
  mqtt_private_key_pem    = module.iot.backend_private_key
  recovery_window_in_days = var.production ? 30 : 0
  tags                    = local.tags
}

module "rds" {
  source = "../rds-postgres"

  name                      = local.name
  vpc_id                    = module.network.vpc_id
  private_subnet_ids        = module.network.private_subnet_ids
  allowed_security_group_id = module.ecs_service.security_group_id
  instance_class            = var.db_instance_class
  allocated_storage_gb      = var.db_allocated_storage_gb
  max_allocated_storage_gb  = var.db_max_allocated_storage_gb
  database_name             = module.secrets.database_name
  username                  = module.secrets.database_username
  password                  = module.secrets.database_password
  multi_az                  = var.production
  deletion_protection       = var.production
  skip_final_snapshot       = !var.production
  backup_retention_days     = var.db_backup_retention_days
  kms_key_arn               = module.kms.key_arn
  tags                      = local.tags
}

module "ecs_service" {
  source = "../ecs-service"

  name                    = local.name
  vpc_id                  = module.network.vpc_id
  vpc_cidr_block          = module.network.vpc_cidr_block
  private_subnet_ids      = module.network.private_subnet_ids
  alb_security_group_id   = module.alb.security_group_id
  target_group_arn        = module.alb.target_group_arn
  alb_arn_suffix          = module.alb.alb_arn_suffix
  target_group_arn_suffix = module.alb.target_group_arn_suffix
  image                   = "${module.ecr.repository_url}:${var.image_tag}"
  cpu                     = var.service_cpu
  memory                  = var.service_memory
  desired_count           = var.service_min_tasks
  min_capacity            = var.service_min_tasks
  max_capacity            = var.service_max_tasks
  mqtt_host               = module.iot.data_endpoint
  database_url_value_from = module.secrets.database_url_value_from
  mqtt_secret_arn         = module.secrets.mqtt_secret_arn
  secret_arns             = module.secrets.secret_arns
  environment             = var.service_environment
  kms_key_arn             = module.kms.key_arn
  log_retention_days      = var.log_retention_days
  tags                    = local.tags
}

module "export_schedule" {
  source = "../export-schedule"

  name                    = local.name
  cluster_arn             = module.ecs_service.cluster_arn
  image                   = "${module.ecr.repository_url}:${var.image_tag}"
  execution_role_arn      = module.ecs_service.execution_role_arn
  private_subnet_ids      = module.network.private_subnet_ids
  security_group_id       = module.ecs_service.security_group_id
  database_url_value_from = module.secrets.database_url_value_from
  export_bucket_name      = module.export_bucket.bucket_name
  export_bucket_arn       = module.export_bucket.bucket_arn
  command                 = var.export_command
  kms_key_arn             = module.kms.key_arn
  log_retention_days      = var.log_retention_days
  tags                    = local.tags
}

# --- Audit trail and alarms -------------------------------------------------

data "aws_iam_policy_document" "cloudtrail_bucket" {
  statement {
    sid       = "CloudTrailAclCheck"
    actions   = ["s3:GetBucketAcl"]
    resources = ["arn:${data.aws_partition.current.partition}:s3:::${local.name}-cloudtrail-${local.account_id}"]
    principals {
      type        = "Service"
      identifiers = ["cloudtrail.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }

  statement {
    sid       = "CloudTrailWrite"
    actions   = ["s3:PutObject"]
    resources = ["arn:${data.aws_partition.current.partition}:s3:::${local.name}-cloudtrail-${local.account_id}/AWSLogs/${local.account_id}/*"]
    principals {
      type        = "Service"
      identifiers = ["cloudtrail.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "s3:x-amz-acl"
      values   = ["bucket-owner-full-control"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

module "cloudtrail_bucket" {
  source = "../export-bucket"
  count  = var.enable_cloudtrail ? 1 : 0

  bucket_name                = "${local.name}-cloudtrail-${local.account_id}"
  kms_key_arn                = module.kms.key_arn
  force_destroy              = !var.production
  transition_to_ia_days      = 30
  transition_to_glacier_days = 90
  expiration_days            = 2555 # 7 years
  additional_policy_json     = data.aws_iam_policy_document.cloudtrail_bucket.json
  tags                       = local.tags
}

module "monitoring" {
  source = "../monitoring"

  name                                 = local.name
  kms_key_arn                          = module.kms.key_arn
  alarm_emails                         = var.alarm_emails
  enable_cloudtrail                    = var.enable_cloudtrail
  cloudtrail_bucket_name               = var.enable_cloudtrail ? module.cloudtrail_bucket[0].bucket_name : null
  cloudtrail_s3_data_event_bucket_arns = [module.export_bucket.bucket_arn, module.telemetry_archive.bucket_arn]
  ecs_cluster_name                     = module.ecs_service.cluster_name
  ecs_service_name                     = module.ecs_service.service_name
  alb_arn_suffix                       = module.alb.alb_arn_suffix
  rds_instance_identifier              = module.rds.instance_identifier
  iot_rule_name                        = module.iot.archive_rule_name
  archive_delivery_stream_name         = module.iot.archive_delivery_stream_name
  tags                                 = local.tags
}
