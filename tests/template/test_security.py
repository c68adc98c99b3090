"""Security and operations settings of the translated template: storage, queues, dead letters, logs,
functions, API. Each test covers every resource of its kind: resources added later meet the same rules."""

from __future__ import annotations

import json

import pytest
from template_model import (
    as_list,
    dead_letter_queues,
    event_source_mappings,
    function_target,
    lambda_functions,
    props,
    resources,
    target,
)

pytestmark = pytest.mark.xdist_group("template")


def test_data_bucket_is_encrypted_versioned_private_and_tls_only(cfn):
    bucket = props(cfn["Resources"]["DataBucket"])
    sse = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert sse["SSEAlgorithm"] in ("AES256", "aws:kms", "aws:kms:dsse")
    assert bucket["VersioningConfiguration"]["Status"] == "Enabled"
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    assert len(bucket["PublicAccessBlockConfiguration"]) == 4
    policies = [
        props(p)["PolicyDocument"]
        for p in resources(cfn, "AWS::S3::BucketPolicy").values()
        if target(props(p)["Bucket"]) == "DataBucket"
    ]
    denies_plain_http = [
        st
        for doc in policies
        for st in doc["Statement"]
        if st["Effect"] == "Deny"
        and st.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
    ]
    assert denies_plain_http, "the bucket policy must deny requests without TLS"


def test_data_bucket_access_logging_is_an_option(cfn):
    logging = props(cfn["Resources"]["DataBucket"]).get("LoggingConfiguration")
    assert isinstance(logging, dict) and "Fn::If" in logging, "access logging is switched by a parameter"
    condition = logging["Fn::If"][0]
    assert condition in cfn["Conditions"]


def test_no_bucket_or_queue_policy_allows_everyone(cfn):
    for kind in ("AWS::S3::BucketPolicy", "AWS::SQS::QueuePolicy", "AWS::SNS::TopicPolicy"):
        for name, res in resources(cfn, kind).items():
            for st in props(res)["PolicyDocument"]["Statement"]:
                if st["Effect"] == "Allow":
                    assert st.get("Principal") not in ("*", {"AWS": "*"}), f"{name} allows everyone"


def test_queues_are_encrypted(cfn):
    for name, queue in resources(cfn, "AWS::SQS::Queue").items():
        p = props(queue)
        assert p.get("KmsMasterKeyId") or p.get("SqsManagedSseEnabled") is True, f"{name} is not encrypted"


def test_queues_with_a_customer_key_can_be_read_by_their_consumers(cfn):
    for queue, function in event_source_mappings(cfn):
        key = target(props(cfn["Resources"].get(queue, {})).get("KmsMasterKeyId"))
        if not key:
            continue
        role = target(props(cfn["Resources"][function])["Role"])
        text = json.dumps(props(cfn["Resources"][role]).get("Policies", []))
        assert "kms:Decrypt" in text and key in text, f"{function} cannot decrypt {queue} ({key})"


def test_every_dead_letter_queue_has_an_alarm(cfn):
    dlqs = dead_letter_queues(cfn)
    assert {"AnnotateDeadLetterQueue", "SplitDeadLetterQueue"} <= dlqs
    alarmed = {}
    for _name, alarm in resources(cfn, "AWS::CloudWatch::Alarm").items():
        p = props(alarm)
        if p.get("Namespace") == "AWS/SQS" and p.get("MetricName") == "ApproximateNumberOfMessagesVisible":
            for dim in p.get("Dimensions", []):
                if dim["Name"] == "QueueName":
                    alarmed[target(dim["Value"])] = p
    missing = sorted(dlqs - set(alarmed))
    assert not missing, f"dead-letter queues without an alarm: {missing}"
    for queue in dlqs:
        alarm = alarmed[queue]
        assert alarm["Threshold"] == 0 and alarm["ComparisonOperator"] == "GreaterThanThreshold", queue
        assert alarm.get("AlarmActions"), f"the alarm of {queue} notifies no one"


def test_log_groups_have_retention_and_encryption(cfn):
    for name, group in resources(cfn, "AWS::Logs::LogGroup").items():
        assert props(group).get("RetentionInDays"), f"{name} keeps logs forever"
        assert props(group).get("KmsKeyId"), f"{name} is not encrypted with the pipeline key"


def test_every_function_logs_to_a_group_of_this_stack(cfn):
    groups = resources(cfn, "AWS::Logs::LogGroup")
    for name, fn in lambda_functions(cfn).items():
        group = target((props(fn).get("LoggingConfig") or {}).get("LogGroup"))
        assert group in groups, f"{name} logs to a group without retention (set LoggingConfig.LogGroup)"


def test_state_machines_log_to_a_group_of_this_stack(cfn):
    groups = resources(cfn, "AWS::Logs::LogGroup")
    for name, machine in resources(cfn, "AWS::StepFunctions::StateMachine").items():
        destinations = props(machine)["LoggingConfiguration"]["Destinations"]
        for d in destinations:
            assert target(d["CloudWatchLogsLogGroup"]["LogGroupArn"]) in groups, name


def test_catalog_table_uses_the_customer_key_and_point_in_time_recovery(cfn):
    table = props(cfn["Resources"]["CatalogTable"])
    assert table["SSESpecification"]["SSEEnabled"] is True
    assert table["SSESpecification"].get("SSEType") == "KMS"
    assert table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True


def test_keys_rotate(cfn):
    for name, key in resources(cfn, "AWS::KMS::Key").items():
        assert props(key).get("EnableKeyRotation") is True, name


def test_topics_are_encrypted(cfn):
    for name, topic in resources(cfn, "AWS::SNS::Topic").items():
        assert props(topic).get("KmsMasterKeyId"), name


def test_upload_driven_functions_have_bounded_concurrency(cfn):
    """A mass upload must not run away with cost: functions fed by upload queues or rules are capped."""
    capped = set()
    for name, fn in lambda_functions(cfn).items():
        if props(fn).get("ReservedConcurrentExecutions") is not None:
            capped.add(name)
    for esm in resources(cfn, "AWS::Lambda::EventSourceMapping").values():
        if (props(esm).get("ScalingConfig") or {}).get("MaximumConcurrency"):
            capped.add(function_target(cfn, props(esm)["FunctionName"]))
    upload_driven = {fn for _, fn in event_source_mappings(cfn)}
    for rule in resources(cfn, "AWS::Events::Rule").values():
        if "aws.s3" in json.dumps(props(rule).get("EventPattern", {})):
            upload_driven |= {function_target(cfn, t["Arn"]) for t in props(rule)["Targets"]}
    assert upload_driven and upload_driven <= capped, sorted(upload_driven - capped)


def test_functions_set_timeout_and_memory(raw_template):
    for name, res in raw_template["Resources"].items():
        if res["Type"] == "AWS::Serverless::Function":
            p = res["Properties"]
            assert "Timeout" in p and "MemorySize" in p, (
                f"{name}: size Timeout and MemorySize from measurements"
            )


def test_zip_functions_are_built_by_the_makefile(raw_template):
    """`sam build` needs no local Python 3.13: zip functions and layers build through the root Makefile."""
    for name, res in raw_template["Resources"].items():
        if res["Type"] not in ("AWS::Serverless::Function", "AWS::Serverless::LayerVersion"):
            continue
        if res.get("Properties", {}).get("PackageType") == "Image":
            continue
        meta = res.get("Metadata") or {}
        assert meta.get("BuildMethod") == "makefile", f"{name}: Metadata BuildMethod: makefile"
        assert meta.get("ContextPath") == ".", f"{name}: Metadata ContextPath: . (the root Makefile)"


# Routes that carry no data and are public by design (the upload page and the health check).
PUBLIC_ROUTES = {("get", "/"), ("get", "/health")}


def test_api_has_auth_throttling_and_access_logs(cfn):
    stages = resources(cfn, "AWS::ApiGateway::Stage") | resources(cfn, "AWS::ApiGatewayV2::Stage")
    assert stages, "the template declares the inference API's stage"
    for name, stage in stages.items():
        p = props(stage)
        assert p.get("AccessLogSetting") or p.get("AccessLogSettings"), f"{name}: access logs"
        settings = as_list(p.get("MethodSettings")) + as_list(p.get("DefaultRouteSettings"))
        assert any("ThrottlingRateLimit" in s for s in settings), f"{name}: throttling"
    for name, method in resources(cfn, "AWS::ApiGateway::Method").items():
        p = props(method)
        if p.get("HttpMethod") == "OPTIONS":
            continue
        assert p.get("AuthorizationType", "NONE") != "NONE" or p.get("ApiKeyRequired"), f"{name}: no auth"
    for name, api in resources(cfn, "AWS::ApiGateway::RestApi").items():
        for path, ops in props(api).get("Body", {}).get("paths", {}).items():
            for verb, op in ops.items():
                if verb.lower() == "options" or (verb.lower(), path) in PUBLIC_ROUTES:
                    continue
                assert op.get("security"), f"{name} {verb.upper()} {path}: no auth"
