data "aws_region" "current" {}

locals {
  container_name = "gridlink-cloud"
  mqtt_dir       = "/run/gridlink/mqtt"

  # Settings from cloud/src/config.rs (ENV_VARS). The MQTT CA is Amazon Root
  # CA 1, which the Dockerfile puts in the image; cert and key are written
  # by the init container; the shadow runs in AWS IoT itself.
  base_environment = {
    GRIDLINK_HTTP_LISTEN    = "0.0.0.0:${var.container_port}"
    GRIDLINK_MQTT_HOST      = var.mqtt_host
    GRIDLINK_MQTT_PORT      = "8883"
    GRIDLINK_MQTT_CA        = "/etc/ssl/certs/AmazonRootCA1.pem"
    GRIDLINK_MQTT_CERT      = "${local.mqtt_dir}/cert.pem"
    GRIDLINK_MQTT_KEY       = "${local.mqtt_dir}/key.pem"
    GRIDLINK_SHADOW_ENABLED = "false"
    GRIDLINK_LOG            = "info"

    # The tasks split the VENs' messages through the shared subscription the
    # backend policy allows (iot-core's share_group). serve takes a group only
    # for a broker that keeps shared subscriptions in persistent sessions: AWS
    # IoT Core keeps every subscription of a persistent session (developer
    # guide, "MQTT persistent sessions"); Mosquitto 2.0 does not.
    GRIDLINK_MQTT_SHARE_GROUP                  = var.share_group
    GRIDLINK_MQTT_SHARED_SUBSCRIPTIONS_PERSIST = "true"
  }
  environment = merge(local.base_environment, var.environment)
}

resource "aws_ecs_cluster" "this" {
  name = var.name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }

  tags = var.tags
}

resource "aws_cloudwatch_log_group" "this" {
  name              = "/gridlink/${var.name}/cloud"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags
}

# --- IAM --------------------------------------------------------------------

data "aws_iam_policy_document" "tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
  }
}

# Pulls the image, writes logs, reads the two secrets.
resource "aws_iam_role" "execution" {
  name               = "${var.name}-ecs-execution"
  assume_role_policy = data.aws_iam_policy_document.tasks_assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "execution" {
  role       = aws_iam_role.execution.name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

data "aws_iam_policy_document" "execution_secrets" {
  statement {
    actions   = ["secretsmanager:GetSecretValue"]
    resources = var.secret_arns
  }
  statement {
    actions   = ["kms:Decrypt"]
    resources = [var.kms_key_arn]
  }
}

resource "aws_iam_role_policy" "execution_secrets" {
  name   = "read-gridlink-secrets"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution_secrets.json
}

# The application's own role: serve talks to RDS and IoT with credentials
# of its own (URL, X.509), so it needs no AWS API permission.
resource "aws_iam_role" "task" {
  name               = "${var.name}-ecs-task"
  assume_role_policy = data.aws_iam_policy_document.tasks_assume.json
  tags               = var.tags
}

# --- Network ----------------------------------------------------------------

resource "aws_security_group" "service" {
  name        = "${var.name}-service"
  description = "gridlink-cloud tasks: API from the ALB; out to RDS, AWS IoT and AWS APIs"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = "${var.name}-service" })
}

resource "aws_vpc_security_group_ingress_rule" "from_alb" {
  security_group_id            = aws_security_group.service.id
  description                  = "HTTP API from the ALB"
  referenced_security_group_id = var.alb_security_group_id
  ip_protocol                  = "tcp"
  from_port                    = var.container_port
  to_port                      = var.container_port
}

resource "aws_vpc_security_group_egress_rule" "postgres" {
  security_group_id = aws_security_group.service.id
  description       = "PostgreSQL in the VPC"
  cidr_ipv4         = var.vpc_cidr_block
  ip_protocol       = "tcp"
  from_port         = 5432
  to_port           = 5432
}

resource "aws_vpc_security_group_egress_rule" "https" {
  security_group_id = aws_security_group.service.id
  description       = "AWS APIs (ECR, Secrets Manager, Logs, S3) over HTTPS"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_vpc_security_group_egress_rule" "mqtt" {
  security_group_id = aws_security_group.service.id
  description       = "AWS IoT Core MQTT over TLS"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 8883
  to_port           = 8883
}

# --- Task and service -------------------------------------------------------

resource "aws_ecs_task_definition" "this" {
  family                   = var.name
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.cpu
  memory                   = var.memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.cpu_architecture
  }

  # Task-local scratch volume for the MQTT certificate and key.
  volume {
    name = "mqtt-identity"
  }

  # Writable /tmp under the read-only root file system.
  volume {
    name = "tmp"
  }

  container_definitions = jsonencode([
    {
      name                   = "mqtt-identity"
      image                  = var.init_image
      essential              = false
      readonlyRootFilesystem = true
      entryPoint             = ["sh", "-c"]
      command = [
        "umask 077 && printf '%s\\n' \"$MQTT_CERT_PEM\" > ${local.mqtt_dir}/cert.pem && printf '%s\\n' \"$MQTT_KEY_PEM\" > ${local.mqtt_dir}/key.pem && chown 65532:65532 ${local.mqtt_dir}/cert.pem ${local.mqtt_dir}/key.pem"
      ]
      secrets = [
        { name = "MQTT_CERT_PEM", valueFrom = "${var.mqtt_secret_arn}:cert_pem::" },
        { name = "MQTT_KEY_PEM", valueFrom = "${var.mqtt_secret_arn}:key_pem::" },
      ]
      mountPoints = [
        { sourceVolume = "mqtt-identity", containerPath = local.mqtt_dir, readOnly = false },
      ]
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.this.name
          awslogs-region        = data.aws_region.current.name
          awslogs-stream-prefix = "init"
        }
      }
    },
    {
      name                   = local.container_name
      image                  = var.image
      essential              = true
      readonlyRootFilesystem = true
      stopTimeout            = 20
      portMappings = [
        { containerPort = var.container_port, protocol = "tcp" },
      ]
      environment = [for k in sort(keys(local.environment)) : { name = k, value = local.environment[k] }]
      secrets = [
        { name = "GRIDLINK_DATABASE_URL", valueFrom = var.database_url_value_from },
      ]
      mountPoints = [
        { sourceVolume = "mqtt-identity", containerPath = local.mqtt_dir, readOnly = true },
        { sourceVolume = "tmp", containerPath = "/tmp", readOnly = false },
      ]
      dependsOn = [
        { containerName = "mqtt-identity", condition = "SUCCESS" },
      ]
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.this.name
          awslogs-region        = data.aws_region.current.name
          awslogs-stream-prefix = "cloud"
        }
      }
    },
  ])

  tags = var.tags
}

resource "aws_ecs_service" "this" {
  name                              = "gridlink-cloud"
  cluster                           = aws_ecs_cluster.this.id
  task_definition                   = aws_ecs_task_definition.this.arn
  launch_type                       = "FARGATE"
  platform_version                  = "LATEST"
  desired_count                     = var.desired_count
  health_check_grace_period_seconds = 60
  propagate_tags                    = "SERVICE"
  enable_execute_command            = false

  network_configuration {
    subnets          = var.private_subnet_ids
    security_groups  = [aws_security_group.service.id]
    assign_public_ip = false
  }

  load_balancer {
    target_group_arn = var.target_group_arn
    container_name   = local.container_name
    container_port   = var.container_port
  }

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200

  lifecycle {
    ignore_changes = [desired_count] # owned by autoscaling
  }

  tags = var.tags
}

# --- Autoscaling on CPU and on ALB requests per task ------------------------

resource "aws_appautoscaling_target" "this" {
  service_namespace  = "ecs"
  resource_id        = "service/${aws_ecs_cluster.this.name}/${aws_ecs_service.this.name}"
  scalable_dimension = "ecs:service:DesiredCount"
  min_capacity       = var.min_capacity
  max_capacity       = var.max_capacity
}

resource "aws_appautoscaling_policy" "cpu" {
  name               = "${var.name}-cpu"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.this.service_namespace
  resource_id        = aws_appautoscaling_target.this.resource_id
  scalable_dimension = aws_appautoscaling_target.this.scalable_dimension

  target_tracking_scaling_policy_configuration {
    target_value       = var.cpu_target_percent
    scale_in_cooldown  = 300
    scale_out_cooldown = 60
    predefined_metric_specification {
      predefined_metric_type = "ECSServiceAverageCPUUtilization"
    }
  }
}

resource "aws_appautoscaling_policy" "requests" {
  name               = "${var.name}-requests"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.this.service_namespace
  resource_id        = aws_appautoscaling_target.this.resource_id
  scalable_dimension = aws_appautoscaling_target.this.scalable_dimension

  target_tracking_scaling_policy_configuration {
    target_value       = var.requests_per_target
    scale_in_cooldown  = 300
    scale_out_cooldown = 60
    predefined_metric_specification {
      predefined_metric_type = "ALBRequestCountPerTarget"
      resource_label         = "${var.alb_arn_suffix}/${var.target_group_arn_suffix}"
    }
  }
}
