resource "aws_sns_topic" "alarms" {
  name              = "${var.name}-alarms"
  kms_master_key_id = var.kms_key_arn
  tags              = var.tags
}

resource "aws_sns_topic_subscription" "email" {
  for_each = toset(var.alarm_emails)

  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = each.value
}

locals {
  actions = [aws_sns_topic.alarms.arn]

  alarms = {
    service-cpu = {
      description = "gridlink-cloud service CPU above ${var.cpu_threshold_percent}% (autoscaling at max?)"
      namespace   = "AWS/ECS"
      metric      = "CPUUtilization"
      statistic   = "Average"
      period      = 300
      periods     = 1
      threshold   = var.cpu_threshold_percent
      comparison  = "GreaterThanThreshold"
      dimensions  = { ClusterName = var.ecs_cluster_name, ServiceName = var.ecs_service_name }
      missing     = "missing"
    }
    service-memory = {
      description = "gridlink-cloud service memory above ${var.memory_threshold_percent}%"
      namespace   = "AWS/ECS"
      metric      = "MemoryUtilization"
      statistic   = "Average"
      period      = 300
      periods     = 1
      threshold   = var.memory_threshold_percent
      comparison  = "GreaterThanThreshold"
      dimensions  = { ClusterName = var.ecs_cluster_name, ServiceName = var.ecs_service_name }
      missing     = "missing"
    }
    alb-5xx = {
      description = "ALB answered 5xx itself (no healthy target, timeouts)"
      namespace   = "AWS/ApplicationELB"
      metric      = "HTTPCode_ELB_5XX_Count"
      statistic   = "Sum"
      period      = 300
      periods     = 1
      threshold   = var.alb_5xx_threshold
      comparison  = "GreaterThanThreshold"
      dimensions  = { LoadBalancer = var.alb_arn_suffix }
      missing     = "notBreaching"
    }
    target-5xx = {
      description = "gridlink-cloud answered 5xx (500 internal, 503 database unavailable)"
      namespace   = "AWS/ApplicationELB"
      metric      = "HTTPCode_Target_5XX_Count"
      statistic   = "Sum"
      period      = 300
      periods     = 1
      threshold   = var.alb_5xx_threshold
      comparison  = "GreaterThanThreshold"
      dimensions  = { LoadBalancer = var.alb_arn_suffix }
      missing     = "notBreaching"
    }
    rds-cpu = {
      description = "RDS CPU above ${var.rds_cpu_threshold_percent}% for 10 min"
      namespace   = "AWS/RDS"
      metric      = "CPUUtilization"
      statistic   = "Average"
      period      = 300
      periods     = 2
      threshold   = var.rds_cpu_threshold_percent
      comparison  = "GreaterThanThreshold"
      dimensions  = { DBInstanceIdentifier = var.rds_instance_identifier }
      missing     = "missing"
    }
    rds-free-storage = {
      description = "RDS free storage below ${var.rds_free_storage_threshold_bytes} bytes (autoscaling at its ceiling?)"
      namespace   = "AWS/RDS"
      metric      = "FreeStorageSpace"
      statistic   = "Minimum"
      period      = 300
      periods     = 1
      threshold   = var.rds_free_storage_threshold_bytes
      comparison  = "LessThanThreshold"
      dimensions  = { DBInstanceIdentifier = var.rds_instance_identifier }
      missing     = "breaching"
    }
    iot-rule-failure = {
      description = "IoT telemetry-archive rule: Firehose action failures (raw telemetry not archived)"
      namespace   = "AWS/IoT"
      metric      = "Failure"
      statistic   = "Sum"
      period      = 300
      periods     = 1
      threshold   = 0
      comparison  = "GreaterThanThreshold"
      dimensions  = { RuleName = var.iot_rule_name, ActionType = "Firehose" }
      missing     = "notBreaching"
    }
    iot-rule-parse-error = {
      description = "IoT telemetry-archive rule: SQL parse errors"
      namespace   = "AWS/IoT"
      metric      = "ParseError"
      statistic   = "Sum"
      period      = 300
      periods     = 1
      threshold   = 0
      comparison  = "GreaterThanThreshold"
      dimensions  = { RuleName = var.iot_rule_name }
      missing     = "notBreaching"
    }
    archive-freshness = {
      description = "Telemetry archive: oldest record in Firehose older than 15 min (S3 delivery failing)"
      namespace   = "AWS/Firehose"
      metric      = "DeliveryToS3.DataFreshness"
      statistic   = "Maximum"
      period      = 300
      periods     = 1
      threshold   = 900
      comparison  = "GreaterThanThreshold"
      dimensions  = { DeliveryStreamName = var.archive_delivery_stream_name }
      missing     = "notBreaching"
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "this" {
  for_each = local.alarms

  alarm_name          = "${var.name}-${each.key}"
  alarm_description   = each.value.description
  namespace           = each.value.namespace
  metric_name         = each.value.metric
  statistic           = each.value.statistic
  period              = each.value.period
  evaluation_periods  = each.value.periods
  threshold           = each.value.threshold
  comparison_operator = each.value.comparison
  dimensions          = each.value.dimensions
  treat_missing_data  = each.value.missing
  alarm_actions       = local.actions
  ok_actions          = local.actions
  tags                = var.tags
}

# Percentiles need extended_statistic, so latency has its own alarm.
resource "aws_cloudwatch_metric_alarm" "alb_latency" {
  alarm_name          = "${var.name}-alb-latency-p95"
  alarm_description   = "p95 target response time above ${var.alb_latency_p95_seconds} s for 10 min"
  namespace           = "AWS/ApplicationELB"
  metric_name         = "TargetResponseTime"
  extended_statistic  = "p95"
  period              = 300
  evaluation_periods  = 2
  threshold           = var.alb_latency_p95_seconds
  comparison_operator = "GreaterThanThreshold"
  dimensions          = { LoadBalancer = var.alb_arn_suffix }
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions
  tags                = var.tags
}

# --- CloudTrail -------------------------------------------------------------

resource "aws_cloudtrail" "this" {
  #checkov:skip=CKV2_AWS_10:The trail is delivered to S3 (queried with Athena); CloudWatch Logs delivery would double the ingestion cost. Add cloud_watch_logs_group_arn where metric filters on API calls are wanted.
  #checkov:skip=CKV_AWS_252:Per-file SNS notifications from CloudTrail have no consumer here.
  count = var.enable_cloudtrail ? 1 : 0

  name                          = "${var.name}-trail"
  s3_bucket_name                = var.cloudtrail_bucket_name
  is_multi_region_trail         = true
  include_global_service_events = true
  enable_log_file_validation    = true
  kms_key_id                    = var.kms_key_arn

  event_selector {
    read_write_type           = "All"
    include_management_events = true

    dynamic "data_resource" {
      for_each = length(var.cloudtrail_s3_data_event_bucket_arns) > 0 ? [1] : []
      content {
        type   = "AWS::S3::Object"
        values = [for arn in var.cloudtrail_s3_data_event_bucket_arns : "${arn}/"]
      }
    }
  }

  tags = var.tags
}
