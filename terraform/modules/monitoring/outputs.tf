output "sns_topic_arn" {
  description = "SNS topic every alarm notifies (subscribe pagers, chat hooks or e-mail)."
  value       = aws_sns_topic.alarms.arn
}

output "alarm_names" {
  description = "Names of the CloudWatch alarms."
  value       = concat([for a in aws_cloudwatch_metric_alarm.this : a.alarm_name], [aws_cloudwatch_metric_alarm.alb_latency.alarm_name])
}

output "cloudtrail_arn" {
  description = "ARN of the trail (null when enable_cloudtrail is false)."
  value       = var.enable_cloudtrail ? aws_cloudtrail.this[0].arn : null
}
