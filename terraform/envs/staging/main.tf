provider "aws" {
  region = var.region

  default_tags {
    tags = {
      Project     = "gridlink"
      Environment = "staging"
      ManagedBy   = "terraform"
      Repository  = "gridlink/terraform/envs/staging"
    }
  }
}

module "gridlink" {
  source = "../../modules/stack"

  environment = "staging"
  production  = true

  availability_zones = ["${var.region}a", "${var.region}b"]
  vpc_cidr           = "10.41.0.0/16"
  domain_name        = var.domain_name
  certificate_arn    = var.certificate_arn
  route53_zone_id    = var.route53_zone_id
  image_tag          = var.image_tag

  service_cpu       = 512
  service_memory    = 1024
  service_min_tasks = 2
  service_max_tasks = 4

  db_instance_class           = "db.t4g.medium"
  db_allocated_storage_gb     = 50
  db_max_allocated_storage_gb = 200
  db_backup_retention_days    = 7

  alarm_emails      = var.alarm_emails
  enable_cloudtrail = var.enable_cloudtrail
}
