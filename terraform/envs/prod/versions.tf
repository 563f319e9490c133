terraform {
  required_version = ">= 1.10" # S3-native state locking (use_lockfile)

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.0"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
  }

  # Remote state in S3. bucket and region come from a backend config file:
  #   terraform init -backend-config=backend.hcl
  # (see backend.hcl.example and terraform/README.md). use_lockfile locks
  # the state with an S3 object (Terraform >= 1.10); on older Terraform use
  # dynamodb_table = "<table with a LockID string hash key>" instead.
  backend "s3" {
    key          = "gridlink/prod/terraform.tfstate"
    encrypt      = true
    use_lockfile = true
  }
}
