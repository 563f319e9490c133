output "alb_arn" {
  description = "ARN of the load balancer."
  value       = aws_lb.this.arn
}

output "alb_arn_suffix" {
  description = "ARN suffix of the load balancer (CloudWatch dimension LoadBalancer)."
  value       = aws_lb.this.arn_suffix
}

output "alb_dns_name" {
  description = "DNS name of the load balancer (CNAME target when route53_zone_id is null)."
  value       = aws_lb.this.dns_name
}

output "security_group_id" {
  description = "Security group of the load balancer."
  value       = aws_security_group.alb.id
}

output "target_group_arn" {
  description = "Target group the ECS service registers its tasks in (available once the HTTPS listener forwards to it: ECS refuses a target group without a load balancer)."
  value       = aws_lb_target_group.this.arn
  depends_on  = [aws_lb_listener.https]
}

output "target_group_arn_suffix" {
  description = "ARN suffix of the target group (CloudWatch dimension TargetGroup, request-count scaling)."
  value       = aws_lb_target_group.this.arn_suffix
}

output "https_listener_arn" {
  description = "ARN of the HTTPS listener."
  value       = aws_lb_listener.https.arn
}

output "access_logs_bucket" {
  description = "Bucket holding the ALB access logs."
  value       = local.access_logs_bucket
}

output "api_url" {
  description = "Base URL of the API."
  value       = "https://${var.domain_name}"
}

output "certificate_validation_records" {
  description = "DNS records to create by hand when the module made the certificate without a Route 53 zone."
  value       = local.create_certificate ? aws_acm_certificate.this[0].domain_validation_options : []
}
