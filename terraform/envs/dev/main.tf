provider "aws" {
  region = var.region

  default_tags {
    tags = {
      Project     = "gridlink"
      Environment = "dev"
      ManagedBy   = "terraform"
      Repository  = "gridlink/terraform/envs/dev"
    }
  }
}

module "gridlink" {
  source = "../../modules/stack"

  environment = "dev"
  production  = false

  availability_zones = ["${var.region}a", "${var.region}b"]
  vpc_cidr           = "10.40.0.0/16"
  domain_name        = var.domain_name
  certificate_arn    = var.certificate_arn
  route53_zone_id    = var.route53_zone_id
  image_tag          = var.image_tag

  service_cpu       = 256
  service_memory    = 512
  service_min_tasks = 1
  service_max_tasks = 2

  db_instance_class           = "db.t4g.micro"
  db_allocated_storage_gb     = 20
  db_max_allocated_storage_gb = 100
  db_backup_retention_days    = 7

  alarm_emails      = var.alarm_emails
  enable_cloudtrail = var.enable_cloudtrail
}
