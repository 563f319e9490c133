output "schedule_arn" {
  description = "ARN of the EventBridge Scheduler schedule."
  value       = aws_scheduler_schedule.export.arn
}

output "task_definition_arn" {
  description = "Task definition of the export (run by hand with aws ecs run-task for a backfill)."
  value       = aws_ecs_task_definition.export.arn
}

output "command" {
  description = "The command the export task runs after /gridlink-cloud."
  value       = local.command
}

output "dead_letter_queue_arn" {
  description = "SQS queue of runs the scheduler could not start."
  value       = aws_sqs_queue.dead_letter.arn
}
