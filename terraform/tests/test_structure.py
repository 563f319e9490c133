#!/usr/bin/env python3
"""Structural test of terraform/: parses the HCL with python-hcl2 and checks
the properties the deployment promises (issue 8), without AWS credentials
or provider downloads.

Run: python3 terraform/tests/test_structure.py  (needs `pip install python-hcl2`;
scripts/check-terraform installs it in its own virtualenv). Every test is a
plain function with asserts; the script runs them all, prints one line per
test and exits 1 if any failed.
"""

from __future__ import annotations

import json
import re
import sys
import traceback
from pathlib import Path

import hcl2

TF = Path(__file__).resolve().parent.parent
REPO = TF.parent
MODULES = TF / "modules"
ENVS = TF / "envs"
META = {"__is_block__", "__start_line__", "__end_line__", "__comments__", "__inline_comments__"}


# --- Loading ------------------------------------------------------------------


def unquote(text: str) -> str:
    """python-hcl2 >= 5 keeps the quotes of string literals and labels."""
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        return text[1:-1]
    return text


def norm(value):
    if isinstance(value, dict):
        return {unquote(k): norm(v) for k, v in value.items() if k not in META}
    if isinstance(value, list):
        return [norm(v) for v in value]
    if isinstance(value, str):
        return unquote(value)
    return value


class Dir:
    """All .tf files of one directory, merged by block kind."""

    def __init__(self, path: Path):
        self.path = path
        self.resources: dict[str, dict[str, dict]] = {}
        self.data: dict[str, dict[str, dict]] = {}
        self.variables: dict[str, dict] = {}
        self.outputs: dict[str, dict] = {}
        self.modules: dict[str, dict] = {}
        self.locals: dict[str, object] = {}
        self.terraform: list[dict] = []
        files = sorted(path.glob("*.tf"))
        assert files, f"no .tf files in {path}"
        for file in files:
            with file.open() as f:
                doc = norm(hcl2.load(f))
            for block in doc.get("resource", []):
                for rtype, named in block.items():
                    self.resources.setdefault(rtype, {}).update(named)
            for block in doc.get("data", []):
                for dtype, named in block.items():
                    self.data.setdefault(dtype, {}).update(named)
            for block in doc.get("variable", []):
                self.variables.update(block)
            for block in doc.get("output", []):
                self.outputs.update(block)
            for block in doc.get("module", []):
                self.modules.update(block)
            for block in doc.get("locals", []):
                self.locals.update(block)
            self.terraform.extend(doc.get("terraform", []))

    def resource(self, rtype: str, name: str) -> dict:
        assert name in self.resources.get(rtype, {}), f"{self.path.name}: no {rtype}.{name}"
        return self.resources[rtype][name]


_cache: dict[Path, Dir] = {}


def load(path: Path) -> Dir:
    if path not in _cache:
        _cache[path] = Dir(path)
    return _cache[path]


def module(name: str) -> Dir:
    return load(MODULES / name)


def env(name: str) -> Dir:
    return load(ENVS / name)


def one(block):
    """A nested block: python-hcl2 gives a list of one dict."""
    if isinstance(block, list):
        assert len(block) == 1, f"expected one block, got {len(block)}"
        return block[0]
    return block


def ref(expr) -> str:
    """`${var.x}` -> `var.x`; anything else unchanged."""
    if isinstance(expr, str):
        m = re.fullmatch(r"\$\{(.*)\}", expr.strip())
        if m:
            return m.group(1).strip()
    return expr


def env_names() -> list[str]:
    return sorted(p.name for p in ENVS.iterdir() if p.is_dir())


# --- RDS ------------------------------------------------------------------------


def test_rds_private_encrypted_backups():
    rds = module("rds-postgres")
    db = rds.resource("aws_db_instance", "this")
    assert db["publicly_accessible"] is False, "RDS must not be publicly accessible"
    assert db["storage_encrypted"] is True, "RDS storage must be encrypted"
    assert ref(db["kms_key_id"]) == "var.kms_key_arn"
    assert ref(db["backup_retention_period"]) == "var.backup_retention_days"
    retention = rds.variables["backup_retention_days"]
    assert retention["default"] >= 7
    condition = one(retention["validation"])["condition"]
    assert "var.backup_retention_days >= 7" in condition, condition
    # Both environment-driven settings come in as variables without defaults.
    for name in ("multi_az", "deletion_protection"):
        assert ref(db[name]) == f"var.{name}", f"{name} must be the module variable"
        assert "default" not in rds.variables[name], f"{name} must be set by the caller"
    assert ref(db["vpc_security_group_ids"][0]) == "aws_security_group.db.id"
    assert len(db["vpc_security_group_ids"]) == 1


def test_rds_multi_az_and_deletion_protection_follow_the_environment():
    stack = load(MODULES / "stack")
    rds = stack.modules["rds"]
    assert rds["source"] == "../rds-postgres"
    assert ref(rds["multi_az"]) == "var.production"
    assert ref(rds["deletion_protection"]) == "var.production"
    assert ref(rds["skip_final_snapshot"]) == "!var.production"
    assert ref(rds["backup_retention_days"]) == "var.db_backup_retention_days"
    expected = {"dev": False, "staging": True, "prod": True}
    assert "prod" in env_names() and "dev" in env_names()
    for name in env_names():
        gridlink = env(name).modules["gridlink"]
        assert gridlink["source"] == "../../modules/stack"
        assert gridlink["environment"] == name
        assert gridlink["production"] is expected.get(name, True), f"{name}: production"
        assert gridlink["db_backup_retention_days"] >= 7, f"{name}: backups"


def test_rds_admits_5432_only_from_the_service_security_group():
    rds = module("rds-postgres")
    sg = rds.resource("aws_security_group", "db")
    assert "ingress" not in sg and "egress" not in sg, "no inline rules on the DB security group"
    assert "aws_security_group_rule" not in rds.resources
    assert "aws_vpc_security_group_egress_rule" not in rds.resources
    rules = rds.resources.get("aws_vpc_security_group_ingress_rule", {})
    on_db = {n: r for n, r in rules.items() if ref(r["security_group_id"]) == "aws_security_group.db.id"}
    assert list(on_db) == ["from_service"], on_db
    rule = on_db["from_service"]
    assert (rule["from_port"], rule["to_port"], rule["ip_protocol"]) == (5432, 5432, "tcp")
    assert ref(rule["referenced_security_group_id"]) == "var.allowed_security_group_id"
    for key in ("cidr_ipv4", "cidr_ipv6", "prefix_list_id"):
        assert key not in rule, f"DB ingress must not use {key}"
    # ... and that group is the service's.
    stack = load(MODULES / "stack")
    assert ref(stack.modules["rds"]["allowed_security_group_id"]) == "module.ecs_service.security_group_id"
    ecs = module("ecs-service")
    assert ref(ecs.outputs["security_group_id"]["value"]) == "aws_security_group.service.id"
    net = one(ecs.resource("aws_ecs_service", "this")["network_configuration"])
    assert [ref(g) for g in net["security_groups"]] == ["aws_security_group.service.id"]


# --- ECS ------------------------------------------------------------------------


def test_ecs_service_in_private_subnets_without_public_ip():
    ecs = module("ecs-service")
    service = ecs.resource("aws_ecs_service", "this")
    assert service["launch_type"] == "FARGATE"
    net = one(service["network_configuration"])
    assert net["assign_public_ip"] is False
    assert ref(net["subnets"]) == "var.private_subnet_ids"
    stack = load(MODULES / "stack")
    assert ref(stack.modules["ecs_service"]["private_subnet_ids"]) == "module.network.private_subnet_ids"
    assert ref(stack.modules["export_schedule"]["private_subnet_ids"]) == "module.network.private_subnet_ids"
    network = module("network")
    assert "aws_subnet.private" in network.outputs["private_subnet_ids"]["value"]
    private = network.resource("aws_subnet", "private")
    assert private.get("map_public_ip_on_launch", False) is False
    route = network.resource("aws_route", "private_nat")
    assert "nat_gateway_id" in route and "gateway_id" not in route, "private subnets route through NAT"
    # The scheduled export runs the same way.
    schedule = module("export-schedule").resource("aws_scheduler_schedule", "export")
    ecs_params = one(one(schedule["target"])["ecs_parameters"])
    assert one(ecs_params["network_configuration"])["assign_public_ip"] is False


def test_ecs_health_check_and_database_url_secret():
    alb = module("alb")
    tg = alb.resource("aws_lb_target_group", "this")
    health = one(tg["health_check"])
    assert ref(health["path"]) == "var.health_check_path"
    assert alb.variables["health_check_path"]["default"] == "/health"
    ecs = module("ecs-service")
    task = ecs.resource("aws_ecs_task_definition", "this")
    text = task["container_definitions"]
    assert "GRIDLINK_DATABASE_URL" in text and "valueFrom" in text
    # Variable names the cloud really reads (cloud/src/config.rs).
    config = (REPO / "cloud/src/config.rs").read_text()
    used = set(re.findall(r"GRIDLINK_[A-Z_]+", json.dumps(ecs.locals)))
    used |= {"GRIDLINK_DATABASE_URL"}
    for name in sorted(used):
        assert f'"{name}"' in config or name == "GRIDLINK_LOG", f"{name} is not a cloud setting"


# --- ALB ------------------------------------------------------------------------


def test_alb_redirects_http_to_https():
    alb = module("alb")
    listeners = alb.resources["aws_lb_listener"]
    by_port = {l["port"]: l for l in listeners.values()}
    assert set(by_port) == {80, 443}, by_port.keys()
    http = by_port[80]
    action = one(http["default_action"])
    assert action["type"] == "redirect"
    redirect = one(action["redirect"])
    assert (redirect["protocol"], str(redirect["port"]), redirect["status_code"]) == ("HTTPS", "443", "HTTP_301")
    https = by_port[443]
    assert https["protocol"] == "HTTPS"
    assert "ssl_policy" in https and "certificate_arn" in https
    assert alb.variables["ssl_policy"]["default"].startswith("ELBSecurityPolicy-TLS13")
    lb = alb.resource("aws_lb", "this")
    assert lb["drop_invalid_header_fields"] is True


# --- Buckets --------------------------------------------------------------------


def test_export_bucket_private_encrypted_versioned():
    bucket = module("export-bucket")
    block = bucket.resource("aws_s3_bucket_public_access_block", "this")
    for key in ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets"):
        assert block[key] is True, key
    sse = one(bucket.resource("aws_s3_bucket_server_side_encryption_configuration", "this")["rule"])
    default = one(sse["apply_server_side_encryption_by_default"])
    assert default["sse_algorithm"] == "aws:kms"
    assert ref(default["kms_master_key_id"]) == "var.kms_key_arn"
    versioning = one(bucket.resource("aws_s3_bucket_versioning", "this")["versioning_configuration"])
    assert versioning["status"] == "Enabled"
    assert "aws_s3_bucket_lifecycle_configuration" in bucket.resources
    assert "aws:SecureTransport" in json.dumps(bucket.data["aws_iam_policy_document"]["this"])
    stack = load(MODULES / "stack")
    for name in ("export_bucket", "telemetry_archive", "cloudtrail_bucket"):
        assert stack.modules[name]["source"] == "../export-bucket", name


def test_dev_destroys_cleanly():
    """production = false (dev) removes every guard that blocks terraform destroy."""
    stack = load(MODULES / "stack")
    m = stack.modules
    assert ref(m["ecr"]["force_delete"]) == "!var.production"
    for name in ("export_bucket", "telemetry_archive", "cloudtrail_bucket", "alb"):
        assert ref(m[name]["force_destroy"]) == "!var.production", name
    assert ref(m["alb"]["deletion_protection"]) == "var.production"
    assert "var.production" in m["secrets"]["recovery_window_in_days"]


# --- IoT ------------------------------------------------------------------------


def test_iot_policy_comes_from_the_provisioning_tool():
    iot = module("iot-core")
    policy = iot.resource("aws_iot_policy", "device")
    assert ref(policy["policy"]) == "file(local.device_policy_path)", policy["policy"]
    path_expr = iot.locals["device_policy_path"]
    assert path_expr == "${path.module}/../../../provisioning/policy/device-policy.json", path_expr
    path = (MODULES / "iot-core" / "../../../provisioning/policy/device-policy.json").resolve()
    assert path == REPO / "provisioning/policy/device-policy.json"
    document = json.loads(path.read_text())
    statements = document["Statement"]
    assert statements
    for statement in statements:
        resources = statement["Resource"]
        resources = [resources] if isinstance(resources, str) else resources
        for resource in resources:
            assert "${iot:Connection.Thing.ThingName}" in resource, resource
    # No second copy of the device policy anywhere in terraform/.
    for tf in TF.rglob("*.tf"):
        assert "Connection.Thing.ThingName" not in tf.read_text(), f"{tf}: device policy must come from the file"
    assert iot.variables["device_policy_name"]["default"] == "gridlink-device"
    provision = (REPO / "provisioning/src/aws.rs").read_text()
    assert 'DEFAULT_POLICY_NAME: &str = "gridlink-device"' in provision
    endpoint = iot.data["aws_iot_endpoint"]["data"]
    assert endpoint["endpoint_type"] == "iot:Data-ATS"
    rule = iot.resource("aws_iot_topic_rule", "archive")
    assert rule["sql"].endswith("FROM 'oadr/meter/+'"), rule["sql"]
    assert "encode(*, 'base64')" in rule["sql"], "the raw payload is archived whole"
    firehose = one(rule["firehose"])
    assert ref(firehose["delivery_stream_name"]) == "aws_kinesis_firehose_delivery_stream.archive.name"
    stream = iot.resource("aws_kinesis_firehose_delivery_stream", "archive")
    s3 = one(stream["extended_s3_configuration"])
    assert ref(s3["bucket_arn"]) == "var.archive_bucket_arn"
    stack = load(MODULES / "stack")
    assert ref(stack.modules["iot"]["archive_bucket_arn"]) == "module.telemetry_archive.bucket_arn"


# --- Every module ------------------------------------------------------------------


def test_every_module_documents_its_interface():
    dirs = [p for p in MODULES.iterdir() if p.is_dir()] + [p for p in ENVS.iterdir() if p.is_dir()]
    for path in dirs:
        for file in ("variables.tf", "outputs.tf", "versions.tf"):
            assert (path / file).is_file(), f"{path.name}/{file} missing"
        d = load(path)
        for name, var in d.variables.items():
            assert var.get("description"), f"{path.name}: variable {name} has no description"
            assert "type" in var, f"{path.name}: variable {name} has no type"
        for name, out in d.outputs.items():
            assert out.get("description"), f"{path.name}: output {name} has no description"
        providers = json.dumps(d.terraform)
        assert '"hashicorp/aws"' in providers and '"~> 5.0"' in providers, f"{path.name}: aws ~> 5"
    for name in env_names():
        versions = (ENVS / name / "versions.tf").read_text()
        assert 'backend "s3"' in versions and "use_lockfile" in versions, name


def test_readme_documents_every_variable_and_output():
    readme = (TF / "README.md").read_text()
    dirs = [p for p in MODULES.iterdir() if p.is_dir()] + [p for p in ENVS.iterdir() if p.is_dir()]
    for path in dirs:
        d = load(path)
        for name in list(d.variables) + list(d.outputs):
            assert f"| `{name}` |" in readme, f"terraform/README.md: {path.name}: {name} is not in a table"
    for path in MODULES.iterdir():
        assert f"modules/{path.name}" in readme, f"terraform/README.md does not describe modules/{path.name}"


def main() -> int:
    tests = [(n, f) for n, f in sorted(globals().items()) if n.startswith("test_") and callable(f)]
    failed = 0
    for name, test in tests:
        try:
            test()
        except Exception:  # noqa: BLE001 - report every failure, then exit 1
            failed += 1
            print(f"FAIL {name}")
            traceback.print_exc()
        else:
            print(f"ok   {name}")
    print(f"{len(tests) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
