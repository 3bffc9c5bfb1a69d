"""The CloudFormation template in deploy/aws against the code it deploys for.

Three things are held together here: the template lints clean; what ``storyboard bootstrap``
creates on moto matches what the template declares (names, queue attributes, table schema,
TTL), and the template's parameter defaults match the settings' defaults, so a change on
either side alone fails; and the IAM policy grants exactly the AWS actions the backend code
calls, found by scanning ``service/backends/aws*.py``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.backends.aws_clients import open_clients
from service.backends.aws_records import EXPIRES_AT, INDEXES
from service.bootstrap import RETENTION_S
from service.settings import Settings
from tests.conftest import SettingsFactory, prepare

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "deploy" / "aws" / "storyboard.yaml"
BACKENDS = ROOT / "service" / "backends"

SQS_MAX_RETENTION_S = 14 * 24 * 3600

PSEUDO_PARAMETERS = {
    "AWS::AccountId": "123456789012",
    "AWS::Partition": "aws",
    "AWS::Region": "us-east-1",
    "AWS::StackName": "storyboard",
    "AWS::URLSuffix": "amazonaws.com",
}
"""Stand-ins for the pseudo parameters CloudFormation fills in at deploy time."""

# --------------------------------------------------------------------------- AWS calls → IAM

CALL = re.compile(
    r"\b(?:self\._client|client|clients\.(?:sqs|dynamodb|s3)|sqs|dynamodb|s3)\.([a-z][a-z0-9_]*)\("
)
"""A call on a botocore client as the backend modules spell them (``self._client.put_item(``)."""

IAM_ACTIONS = {
    # SQS: the batch calls are authorised by the single-message permissions.
    "get_queue_url": "sqs:GetQueueUrl",
    "send_message": "sqs:SendMessage",
    "receive_message": "sqs:ReceiveMessage",
    "delete_message": "sqs:DeleteMessage",
    "delete_message_batch": "sqs:DeleteMessage",
    "change_message_visibility": "sqs:ChangeMessageVisibility",
    "change_message_visibility_batch": "sqs:ChangeMessageVisibility",
    "get_queue_attributes": "sqs:GetQueueAttributes",
    # DynamoDB
    "get_item": "dynamodb:GetItem",
    "batch_get_item": "dynamodb:BatchGetItem",
    "put_item": "dynamodb:PutItem",
    "update_item": "dynamodb:UpdateItem",
    # A transaction is authorised by the actions of its items; ours are only Updates.
    "transact_write_items": "dynamodb:UpdateItem",
    "delete_item": "dynamodb:DeleteItem",
    "describe_table": "dynamodb:DescribeTable",
    "query": "dynamodb:Query",
    # S3: HeadBucket is authorised by ListBucket, HeadObject by GetObject.
    "get_object": "s3:GetObject",
    "head_object": "s3:GetObject",
    "put_object": "s3:PutObject",
    "delete_object": "s3:DeleteObject",
    "delete_objects": "s3:DeleteObject",
    "list_objects_v2": "s3:ListBucket",
    "head_bucket": "s3:ListBucket",
    # Secrets Manager: the model API key, when it is kept there.
    "get_secret_value": "secretsmanager:GetSecretValue",
    # SNS
    "publish": "sns:Publish",
}
"""The IAM action each client method needs. A new AWS call must be added here and to the
template's ServicePolicy; until it is, ``test_policy_grants_exactly_what_the_code_calls``
fails."""

SECRET_ACTIONS = {"secretsmanager:GetSecretValue"}
"""Granted only when the stack is given the model key's secret (LlmApiKeySecretArn)."""

SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:storyboard/llm-AbCdEf"


def client_calls() -> dict[str, set[str]]:
    """Every client method the runtime backend calls, mapped to the files that call it."""
    calls: dict[str, set[str]] = {}
    for path in sorted(BACKENDS.glob("aws*.py")):
        for method in CALL.findall(path.read_text(encoding="utf-8")):
            calls.setdefault(method, set()).add(path.name)
    return calls


# ------------------------------------------------------------------------- template reading


class CfnLoader(yaml.SafeLoader):
    """A safe YAML loader that reads CloudFormation's short tags as their long forms."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    """``!Ref X`` → ``{"Ref": "X"}``, ``!GetAtt A.B`` → ``{"Fn::GetAtt": ["A", "B"]}``, etc."""
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    elif isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    else:  # pragma: no cover - YAML has no other node kinds
        raise TypeError(f"unexpected node {node!r}")
    if suffix in {"Ref", "Condition"}:
        return {suffix: value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


CfnLoader.add_multi_constructor("!", _intrinsic)


def load_template() -> dict[str, Any]:
    """The template as plain data, intrinsic functions in their long (JSON) form."""
    with TEMPLATE.open(encoding="utf-8") as stream:
        document = yaml.load(stream, Loader=CfnLoader)
    assert isinstance(document, dict)
    return document


class Stack:
    """The template evaluated for one set of parameters, as far as these tests need.

    ``Ref`` and ``Fn::Sub`` resolve parameters (their defaults unless overridden) and pseudo
    parameters; a resource reference becomes a marker such as ``<Queue>`` or
    ``<Queue.Arn>``, standing for what CloudFormation would put there.
    """

    def __init__(self, template: Mapping[str, Any], **overrides: str) -> None:
        self.template = template
        self.parameters: dict[str, str] = {
            name: str(spec.get("Default", "")) for name, spec in template["Parameters"].items()
        }
        unknown = set(overrides) - set(self.parameters)
        assert not unknown, f"no such parameters: {sorted(unknown)}"
        self.parameters.update(overrides)

    def resource(self, name: str) -> dict[str, Any]:
        """A resource's properties, resolved."""
        resource = self.template["Resources"][name]
        properties = self.resolve(resource.get("Properties", {}))
        assert isinstance(properties, dict)
        return properties

    def resources_of(self, kind: str) -> list[str]:
        """The logical ids of the resources of ``kind`` that this stack would create."""
        return [
            name
            for name, resource in self.template["Resources"].items()
            if resource["Type"] == kind
            and ("Condition" not in resource or self.condition(resource["Condition"]))
        ]

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.template["Conditions"][name]))

    def reference(self, name: str) -> str:
        if name in self.parameters:
            return self.parameters[name]
        if name in PSEUDO_PARAMETERS:
            return PSEUDO_PARAMETERS[name]
        assert name in self.template["Resources"], f"unknown reference {name}"
        return f"<{name}>"

    def attribute(self, resource: str, attribute: str) -> str:
        assert resource in self.template["Resources"], f"unknown resource {resource}"
        return f"<{resource}.{attribute}>"

    def substitute(self, text: str, variables: Mapping[str, Any]) -> str:
        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return str(variables[name])
            if "." in name and not name.startswith("AWS::"):
                return self.attribute(*name.split(".", 1))
            return self.reference(name)

        return re.sub(r"\$\{([^}!]+)\}", replace, text)

    def resolve(self, value: Any) -> Any:
        """``value`` with every intrinsic function this template uses evaluated."""
        if isinstance(value, list):
            return [self.resolve(entry) for entry in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, argument),) = value.items()
            if key == "Ref":
                return None if argument == "AWS::NoValue" else self.reference(argument)
            if key == "Condition":
                return self.condition(argument)
            if key == "Fn::GetAtt":
                return self.attribute(*argument)
            if key == "Fn::Sub":
                text, variables = (argument, {}) if isinstance(argument, str) else argument
                return self.substitute(text, self.resolve(variables))
            if key == "Fn::Equals":
                left, right = self.resolve(argument)
                return str(left) == str(right)
            if key == "Fn::Not":
                return not self.resolve(argument[0])
            if key == "Fn::And":
                return all(self.resolve(argument))
            if key == "Fn::Or":
                return any(self.resolve(argument))
            if key == "Fn::If":
                name, when_true, when_false = argument
                return self.resolve(when_true if self.condition(name) else when_false)
            assert not key.startswith("Fn::"), f"{key} is not evaluated by these tests"
        return {key: self.resolve(entry) for key, entry in value.items()}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture
def stack(template: dict[str, Any]) -> Stack:
    """The template with every parameter at its default."""
    return Stack(template)


def field_default(name: str) -> Any:
    """A settings field's declared default (not the environment's value)."""
    return Settings.model_fields[name].default


def field_bound(name: str, bound: str) -> Any:
    """A settings field's ``ge`` or ``le`` constraint."""
    for constraint in Settings.model_fields[name].metadata:
        if hasattr(constraint, bound):
            return getattr(constraint, bound)
    raise AssertionError(f"settings field {name} has no {bound} constraint")


# ----------------------------------------------------------------------------------- lint


def cfn_lint_executable() -> str | None:
    """The cfn-lint beside this interpreter, else one on PATH."""
    beside = shutil.which("cfn-lint", path=str(Path(sys.executable).parent))
    return beside or shutil.which("cfn-lint")


def test_template_passes_cfn_lint() -> None:
    executable = cfn_lint_executable()
    if executable is None:
        pytest.skip("cfn-lint is not installed (pip install cfn-lint)")
    result = subprocess.run(
        [executable, "--", str(TEMPLATE)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    report = (result.stdout + result.stderr).strip()
    assert result.returncode == 0, report
    assert report == ""


# --------------------------------------------------------------------------- parity: names


@pytest.mark.parametrize(
    ("parameter", "field"),
    [("VisibilityTimeout", "visibility_timeout_s"), ("MaxReceiveCount", "max_receive_count")],
)
def test_parameter_defaults_and_bounds_match_settings(
    template: dict[str, Any], parameter: str, field: str
) -> None:
    spec = template["Parameters"][parameter]
    assert spec["Type"] == "Number"
    assert int(spec["Default"]) == field_default(field)
    assert int(spec["MinValue"]) == field_bound(field, "ge")
    assert int(spec["MaxValue"]) == field_bound(field, "le")


def test_default_names_are_the_settings_defaults(stack: Stack) -> None:
    assert stack.resource("Queue")["QueueName"] == field_default("queue_name")
    assert stack.resource("DeadLetterQueue")["QueueName"] == field_default("dlq_name")
    assert stack.resource("Table")["TableName"] == field_default("table_name")
    # Bucket names are global: the default bucket is the settings' name plus account and region.
    bucket = stack.resource("Bucket")["BucketName"]
    assert bucket == f"{field_default('bucket')}-123456789012-us-east-1"


def test_a_given_bucket_name_is_used_as_is(template: dict[str, Any]) -> None:
    stack = Stack(template, BucketName="my-storyboards")
    assert stack.resource("Bucket")["BucketName"] == "my-storyboards"


def test_environment_output_names_real_settings(stack: Stack) -> None:
    text = stack.resolve(stack.template["Outputs"]["EnvironmentVariables"]["Value"])
    pairs = dict(pair.split("=", 1) for pair in text.split())
    storyboard = {name for name in pairs if name.startswith("STORYBOARD_")}
    for name in storyboard:
        assert name.removeprefix("STORYBOARD_").lower() in Settings.model_fields, name
    assert pairs["STORYBOARD_BACKEND"] == "aws"
    assert pairs["STORYBOARD_QUEUE_URL"] == "<Queue>"
    assert pairs["STORYBOARD_DLQ_URL"] == "<DeadLetterQueue>"
    assert pairs["STORYBOARD_TABLE_NAME"] == "<Table>"
    assert pairs["STORYBOARD_BUCKET"] == "<Bucket>"
    assert pairs["STORYBOARD_EVENTS_TOPIC_ARN"] == "<EventsTopic>"
    # The worker's notion of the last delivery must be the queue's redrive count.
    assert pairs["STORYBOARD_MAX_RECEIVE_COUNT"] == stack.parameters["MaxReceiveCount"]
    assert pairs["STORYBOARD_VISIBILITY_TIMEOUT_S"] == stack.parameters["VisibilityTimeout"]
    outputs = set(stack.template["Outputs"])
    assert {"QueueUrl", "DlqUrl", "TableName", "BucketName", "PolicyArn", "EventsTopicArn"} <= (
        outputs
    )


# ---------------------------------------------------------------------- parity: bootstrap


async def test_bootstrap_creates_what_the_template_declares(
    stack: Stack, aws_settings: SettingsFactory
) -> None:
    queue = stack.resource("Queue")
    dlq = stack.resource("DeadLetterQueue")
    table = stack.resource("Table")
    base = aws_settings()
    topic_name = f"{base.queue_name}-events"  # the template's <prefix>-events, for this test
    settings = await prepare(
        aws_settings(
            visibility_timeout_s=int(queue["VisibilityTimeout"]),
            max_receive_count=int(queue["RedrivePolicy"]["maxReceiveCount"]),
            events_topic_arn=f"arn:aws:sns:us-east-1:123456789012:{topic_name}",
        )
    )

    async with open_clients(settings) as clients:
        queue_url = (await clients.sqs.get_queue_url(QueueName=settings.queue_name))["QueueUrl"]
        dlq_url = (await clients.sqs.get_queue_url(QueueName=settings.dlq_name))["QueueUrl"]
        made_queue = (
            await clients.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])
        )["Attributes"]
        made_dlq = (
            await clients.sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["All"])
        )["Attributes"]
        made_table = (await clients.dynamodb.describe_table(TableName=settings.table_name))["Table"]
        ttl = (await clients.dynamodb.describe_time_to_live(TableName=settings.table_name))[
            "TimeToLiveDescription"
        ]
        await clients.s3.head_bucket(Bucket=settings.bucket)
        assert clients.sns is not None
        topics = (await clients.sns.list_topics())["Topics"]

    assert made_queue["VisibilityTimeout"] == str(queue["VisibilityTimeout"])
    assert made_queue["MessageRetentionPeriod"] == str(queue["MessageRetentionPeriod"])
    redrive = json.loads(made_queue["RedrivePolicy"])
    assert int(redrive["maxReceiveCount"]) == int(queue["RedrivePolicy"]["maxReceiveCount"])
    assert redrive["deadLetterTargetArn"] == made_dlq["QueueArn"]
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == "<DeadLetterQueue.Arn>"
    assert made_dlq["MessageRetentionPeriod"] == str(dlq["MessageRetentionPeriod"])

    def pairs(entries: Any, first: str, second: str) -> set[tuple[str, str]]:
        return {(entry[first], entry[second]) for entry in entries}

    assert pairs(made_table["KeySchema"], "AttributeName", "KeyType") == pairs(
        table["KeySchema"], "AttributeName", "KeyType"
    )
    assert pairs(made_table["AttributeDefinitions"], "AttributeName", "AttributeType") == pairs(
        table["AttributeDefinitions"], "AttributeName", "AttributeType"
    )
    assert made_table.get("BillingModeSummary", {}).get("BillingMode") == table["BillingMode"]
    assert indexes(made_table["GlobalSecondaryIndexes"]) == indexes(table["GlobalSecondaryIndexes"])
    assert set(indexes(table["GlobalSecondaryIndexes"])) == set(INDEXES)
    assert not made_table.get("LocalSecondaryIndexes")
    assert "LocalSecondaryIndexes" not in table
    assert ttl.get("TimeToLiveStatus") in {"ENABLED", "ENABLING"}
    assert ttl.get("AttributeName") == table["TimeToLiveSpecification"]["AttributeName"]
    assert table["TimeToLiveSpecification"]["Enabled"] is True
    assert {"TopicArn": settings.events_topic_arn} in topics
    assert stack.resource("EventsTopic")["TopicName"] == f"{stack.parameters['NamePrefix']}-events"


def indexes(declared: Any) -> dict[str, tuple[list[tuple[str, str]], str]]:
    """Each global secondary index: its keys and what it projects."""
    return {
        index["IndexName"]: (
            [(key["AttributeName"], key["KeyType"]) for key in index["KeySchema"]],
            index["Projection"]["ProjectionType"],
        )
        for index in declared
    }


def test_template_values_are_the_codes_constants(stack: Stack) -> None:
    table = stack.resource("Table")
    assert table["TimeToLiveSpecification"]["AttributeName"] == EXPIRES_AT
    assert stack.resource("Queue")["MessageRetentionPeriod"] == RETENTION_S
    assert stack.resource("DeadLetterQueue")["MessageRetentionPeriod"] == RETENTION_S


def test_dead_letter_queue_keeps_messages_as_long_as_the_queue(stack: Stack) -> None:
    queue, dlq = stack.resource("Queue"), stack.resource("DeadLetterQueue")
    # A dead letter keeps its original enqueue time, so the DLQ must retain at least as long.
    assert dlq["MessageRetentionPeriod"] >= queue["MessageRetentionPeriod"]
    assert dlq["MessageRetentionPeriod"] <= SQS_MAX_RETENTION_S
    allow = dlq["RedriveAllowPolicy"]
    assert allow["redrivePermission"] == "byQueue"
    queue_arn = f"arn:aws:sqs:us-east-1:123456789012:{queue['QueueName']}"
    assert allow["sourceQueueArns"] == [queue_arn]


def test_resources_are_encrypted_and_private(stack: Stack) -> None:
    for name in ("Queue", "DeadLetterQueue"):
        assert stack.resource(name)["SqsManagedSseEnabled"] is True
    table = stack.resource("Table")
    assert table["SSESpecification"]["SSEEnabled"] is True
    assert table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    bucket = stack.resource("Bucket")
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    assert len(bucket["PublicAccessBlockConfiguration"]) == 4
    assert bucket["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    (encryption,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert encryption["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    rules = {rule["Id"]: rule for rule in bucket["LifecycleConfiguration"]["Rules"]}
    assert rules["expire-checkpoints"]["Prefix"] == "checkpoints/"
    assert int(rules["expire-checkpoints"]["ExpirationInDays"]) >= 1
    assert "AbortIncompleteMultipartUpload" in rules["abort-incomplete-multipart-uploads"]


# ------------------------------------------------------------------------------------ IAM


def policy_statements(stack: Stack) -> list[dict[str, Any]]:
    (policy,) = stack.resources_of("AWS::IAM::ManagedPolicy")
    statements = stack.resource(policy)["PolicyDocument"]["Statement"]
    assert isinstance(statements, list)
    # A statement under a false condition is AWS::NoValue, which CloudFormation drops.
    return [statement for statement in statements if statement is not None]


@pytest.fixture(params=["no secret", "secret"])
def any_stack(request: pytest.FixtureRequest, template: dict[str, Any]) -> Stack:
    """The template at its defaults, and with the model key's secret given."""
    if request.param == "secret":
        return Stack(template, LlmApiKeySecretArn=SECRET_ARN)
    return Stack(template)


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_backend_calls_are_all_mapped_to_iam_actions() -> None:
    calls = client_calls()
    # The scan must see the calls it exists for, or it would pass by finding nothing.
    assert {"receive_message", "update_item", "put_object"} <= set(calls)
    unmapped = {
        method: sorted(files) for method, files in calls.items() if method not in IAM_ACTIONS
    }
    assert not unmapped, (
        f"AWS calls without an IAM action in IAM_ACTIONS: {unmapped}; add them there and "
        "grant them in the template's ServicePolicy"
    )


def test_policy_grants_exactly_what_the_code_calls(any_stack: Stack) -> None:
    stack = any_stack
    needed = {IAM_ACTIONS[method] for method in client_calls() if method in IAM_ACTIONS}
    assert needed >= SECRET_ACTIONS
    if not stack.parameters["LlmApiKeySecretArn"]:
        needed -= SECRET_ACTIONS
    granted: set[str] = set()
    for statement in policy_statements(stack):
        assert statement["Effect"] == "Allow"
        assert "NotAction" not in statement
        assert "NotResource" not in statement
        granted.update(as_list(statement["Action"]))
    assert not {action for action in granted if "*" in action}
    assert granted == needed, (
        f"missing: {sorted(needed - granted)}, not called: {sorted(granted - needed)}"
    )


def test_policy_is_scoped_to_this_stacks_resources(any_stack: Stack) -> None:
    stack = any_stack
    expected = {
        "sqs": {"<Queue.Arn>", "<DeadLetterQueue.Arn>"},
        "dynamodb": {"<Table.Arn>", "<Table.Arn>/index/*"},
        "s3": {"<Bucket.Arn>", "<Bucket.Arn>/*"},
        "secretsmanager": {SECRET_ARN},
        "sns": {"<EventsTopic>"},
    }
    for statement in policy_statements(stack):
        resources = set(as_list(statement["Resource"]))
        services = {action.split(":", 1)[0] for action in as_list(statement["Action"])}
        assert len(services) == 1, statement
        (service,) = services
        assert resources <= expected[service], statement
        for action in as_list(statement["Action"]):
            # Bucket-level actions on the bucket, object-level actions on its objects.
            if action == "s3:ListBucket":
                assert resources == {"<Bucket.Arn>"}
            elif action == "dynamodb:Query":
                assert resources == {"<Table.Arn>/index/*"}, "lists read the indexes only"
            elif service == "dynamodb":
                assert resources == {"<Table.Arn>"}
            elif service == "s3":
                assert resources == {"<Bucket.Arn>/*"}


def test_the_model_key_secret_is_granted_only_when_given(template: dict[str, Any]) -> None:
    granted = [s for s in policy_statements(Stack(template)) if "secretsmanager" in str(s)]
    assert granted == []
    stack = Stack(template, LlmApiKeySecretArn=SECRET_ARN)
    (statement,) = [s for s in policy_statements(stack) if "secretsmanager" in str(s)]
    assert statement["Action"] == ["secretsmanager:GetSecretValue"]
    assert statement["Resource"] == SECRET_ARN


def _environment(stack: Stack) -> dict[str, str]:
    text = stack.resolve(stack.template["Outputs"]["EnvironmentVariables"]["Value"])
    return dict(pair.split("=", 1) for pair in text.split())


def test_the_model_key_secret_reaches_the_service_environment(template: dict[str, Any]) -> None:
    assert "STORYBOARD_LLM_API_KEY_SECRET_ID" not in _environment(Stack(template))
    given = _environment(Stack(template, LlmApiKeySecretArn=SECRET_ARN))
    assert given["STORYBOARD_LLM_API_KEY_SECRET_ID"] == SECRET_ARN
    assert "llm_api_key_secret_id" in Settings.model_fields
    assert given["STORYBOARD_MAX_RECEIVE_COUNT"] == "10"


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("", True),
        (SECRET_ARN, True),
        ("arn:aws-cn:secretsmanager:cn-north-1:123456789012:secret:llm-AbCdEf", True),
        ("storyboard/llm", False),
        ("arn:aws:secretsmanager:us-east-1:123456789012:secret:*", False),
        ("arn:aws:s3:::storyboard-data", False),
    ],
)
def test_the_secret_parameter_takes_only_one_secrets_arn(
    template: dict[str, Any], value: str, accepted: bool
) -> None:
    pattern = template["Parameters"]["LlmApiKeySecretArn"]["AllowedPattern"]
    assert template["Parameters"]["LlmApiKeySecretArn"]["Default"] == ""
    assert bool(re.fullmatch(pattern, value)) is accepted


# ----------------------------------------------------------------------------------- IRSA


def test_no_role_without_an_oidc_provider(stack: Stack) -> None:
    assert stack.resources_of("AWS::IAM::Role") == []


def test_irsa_role_trusts_only_the_service_account(template: dict[str, Any]) -> None:
    issuer = "oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE"
    stack = Stack(
        template,
        EksOidcProvider=issuer,
        ServiceAccountNamespace="comics",
        ServiceAccountName="storyboard-worker",
    )
    (role,) = stack.resources_of("AWS::IAM::Role")
    properties = stack.resource(role)
    assert properties["ManagedPolicyArns"] == ["<ServicePolicy>"]
    trust = json.loads(properties["AssumeRolePolicyDocument"])
    (statement,) = trust["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert statement["Principal"] == {
        "Federated": f"arn:aws:iam::123456789012:oidc-provider/{issuer}"
    }
    assert statement["Condition"] == {
        "StringEquals": {
            f"{issuer}:sub": "system:serviceaccount:comics:storyboard-worker",
            f"{issuer}:aud": "sts.amazonaws.com",
        }
    }
