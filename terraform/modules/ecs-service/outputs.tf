output "cluster_name" {
  description = "ECS cluster name (CloudWatch dimension ClusterName)."
  value       = aws_ecs_cluster.this.name
}

output "cluster_arn" {
  description = "ECS cluster ARN."
  value       = aws_ecs_cluster.this.arn
}

output "service_name" {
  description = "ECS service name (CloudWatch dimension ServiceName)."
  value       = aws_ecs_service.this.name
}

output "security_group_id" {
  description = "Security group of the tasks (the database admits only this one)."
  value       = aws_security_group.service.id
}

output "execution_role_arn" {
  description = "Task execution role (image pull, logs, secrets)."
  value       = aws_iam_role.execution.arn
}

output "task_definition_arn" {
  description = "Current task definition of the service."
  value       = aws_ecs_task_definition.this.arn
}

output "log_group_name" {
  description = "CloudWatch log group of the containers."
  value       = aws_cloudwatch_log_group.this.name
}

output "container_environment" {
  description = "The GRIDLINK_* environment of the serve container (without secrets)."
  value       = local.environment
}
