"""PublicApi (A1-A7): REST API, validation, keys, usage plan, stage, WAF, Lambda backend."""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws
import pytest
from pulumi.runtime.rpc import _special_secret_sig, _special_sig_key

from components.api import (
    ACCESS_LOG_FORMAT,
    ApiBackend,
    KeyRotationCode,
    PublicApi,
    PublicApiArgs,
)
from components.api_routes import (
    ROUTES,
    ApiAuth,
    Route,
    api_definition,
    redeploy_hash,
    request_models,
)
from components.delivery import PlaybackTarget
from components.functions import VPC_NETWORK_INTERFACE_ACTIONS
from components.iam import Grant, attach_grants
from components.media_storage import UploadTarget
from components.packaging import build_api_package, build_rotation_package
from components.secrets import DEPLOYED_STAGE
from offline.engine import ACCOUNT_ID, run_components, run_stack, stack_config
from services.contract import (
    API_KEY_ROTATION_ENVIRONMENT,
    API_KEY_ROTATION_HANDLER,
    CREATE_VIDEO_SCHEMA,
    UPLOAD_PARTS_SCHEMA,
    EnvVar,
)
from services.rotation.api_key import load_settings as load_rotation_settings
from tests.infra import expect

LOGS_KEY = "arn:aws:kms:eu-central-1:123456789012:key/logs"
SECRETS_KEY = "arn:aws:kms:eu-central-1:123456789012:key/secrets"
TOPIC = "arn:aws:sns:eu-central-1:123456789012:media-alarms-test"
DB_SECRET = "arn:aws:secretsmanager:eu-central-1:123456789012:secret:rds!cluster-1-AbC"
REDIS_SECRET = "arn:aws:secretsmanager:eu-central-1:123456789012:secret:media-cache-auth-AbC"
SUBNETS = ["subnet-app-a", "subnet-app-b"]
FUNCTION_ARN = "arn:aws:lambda:eu-central-1:123456789012:function:media-api-test"
INVOKE_ARN = (
    f"arn:aws:apigateway:eu-central-1:lambda:path/2015-03-31/functions/{FUNCTION_ARN}/invocations"
)

T_REST_API = "aws:apigateway/restApi:RestApi"
T_METHOD = "aws:apigateway/method:Method"
T_INTEGRATION = "aws:apigateway/integration:Integration"
T_STAGE = "aws:apigateway/stage:Stage"
T_LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
T_FUNCTION = "aws:lambda/function:Function"
INGEST = "media-ingest-123456789012-eu-central-1-test"
TYPES = ("video/mp4", "video/webm")
MAX_BYTES = 2 * 1024**3
MODELS = request_models(MAX_BYTES, TYPES)


def fake_upload_grant(resource_name: str, role: aws.iam.Role) -> aws.iam.RolePolicy:
    """Stands in for `MediaStorage.grant_upload`: one recognisable statement on the role."""
    grant = Grant("FakeUploads", ("s3:PutObject",), (f"arn:aws:s3:::{INGEST}/sources/*",))
    return attach_grants(resource_name, role, [grant], parent=role)


def uploads(**overrides) -> UploadTarget:
    values = dict(
        ingest_bucket=INGEST,
        max_bytes=MAX_BYTES,
        content_types=TYPES,
        url_ttl_seconds=600,
        grant_upload=fake_upload_grant,
    )
    values.update(overrides)
    return UploadTarget(**values)


def backend(**overrides) -> ApiBackend:
    values = dict(
        db_host="media-aurora-test.cluster-c0ffee.rds.amazonaws.com",
        db_port=5432,
        db_name="media",
        redis_host="master.media-cache-test.cache.amazonaws.com",
        redis_port=6379,
        stream_name="media-stream-test",
    )
    values.update(overrides)
    return ApiBackend(**values)


def api_args(namer, context, **overrides) -> PublicApiArgs:
    values = dict(
        namer=namer,
        context=context,
        vpc_id="vpc-1",
        subnet_ids=SUBNETS,
        code_path="build/lambda/api.zip",
        code_sha256="q2x0c3eDkLIw=",
        backend=backend(),
        uploads=uploads(),
        logs_key_arn=LOGS_KEY,
        secrets_key_arn=SECRETS_KEY,
        alarm_topic_arn=TOPIC,
        log_retention_days=90,
        key_rotation=KeyRotationCode(
            code_path="build/lambda/rotation.zip", code_sha256="cm90YXRpb24="
        ),
    )
    values.update(overrides)
    return PublicApiArgs(**values)


def build(namer, context, **overrides):
    holder = {}

    def program():
        holder["api"] = PublicApi("api", api_args(namer, context, **overrides))

    run = run_components(program)
    run.api = holder["api"]
    return run


@pytest.fixture(scope="module")
def run(module_namer, module_context):
    """The default build, shared by the tests that only read it."""
    return build(module_namer, module_context)


def state(run, name, key):
    return run.named(name).state[key]


def statements(policy_json: str) -> dict[str, dict]:
    return {s["Sid"]: s for s in json.loads(policy_json)["Statement"]}


def as_secret(value) -> dict:
    """How the engine sees a value marked secret."""
    return {_special_sig_key: _special_secret_sig, "value": value}


def method(run, route_key):
    return run.named(f"api-{route_key}-method").inputs


# -- REST API and resources (A1) ---------------------------------------------------------------


def test_rest_api_is_regional_and_reads_keys_from_the_header_a1(run):
    rest_api = run.one(T_REST_API).inputs
    assert rest_api["name"] == "media-api-test"
    assert rest_api["endpointConfiguration"] == {"types": "REGIONAL"}
    assert rest_api["apiKeySource"] == "HEADER"


def test_resources_are_videos_one_video_and_its_upload_a1_m1(run):
    tree = {
        "api-videos": ("videos", run.one(T_REST_API).state["rootResourceId"]),
        "api-videos-videoid": ("{videoId}", run.named("api-videos").id),
        "api-videos-videoid-upload": ("upload", run.named("api-videos-videoid").id),
        "api-videos-videoid-upload-parts": ("parts", run.named("api-videos-videoid-upload").id),
        "api-videos-videoid-upload-complete": (
            "complete",
            run.named("api-videos-videoid-upload").id,
        ),
        "api-videos-videoid-playback": ("playback", run.named("api-videos-videoid").id),
    }
    resources = run.of_type("aws:apigateway/resource:Resource")
    assert {r.name: (r.inputs["pathPart"], r.inputs["parentId"]) for r in resources} == tree


def test_seven_methods_on_their_resources_a1_m1_m8(run):
    found = {(m.inputs["resourceId"], m.inputs["httpMethod"]) for m in run.of_type(T_METHOD)}
    videos, video = run.named("api-videos").id, run.named("api-videos-videoid").id
    upload = run.named("api-videos-videoid-upload").id
    parts = run.named("api-videos-videoid-upload-parts").id
    complete = run.named("api-videos-videoid-upload-complete").id
    playback = run.named("api-videos-videoid-playback").id
    assert found == {
        (videos, "GET"),
        (videos, "POST"),
        (video, "GET"),
        (parts, "POST"),
        (complete, "POST"),
        (upload, "DELETE"),
        (playback, "GET"),
    }


# -- authorisation (A3) ------------------------------------------------------------------------


def test_every_method_requires_the_api_key_a3(run):
    methods = run.of_type(T_METHOD)
    assert len(methods) == 7
    for m in methods:
        assert m.inputs["apiKeyRequired"] is True
        assert m.inputs["authorization"] == "NONE"


def test_key_value_is_generated_and_kept_only_in_secrets_manager_a3_g5(run):
    password = run.one("random:index/randomPassword:RandomPassword").inputs
    assert password["length"] == 40
    assert password["special"] is False
    assert (password["minUpper"], password["minLower"], password["minNumeric"]) == (4, 4, 4)
    value = run.one("random:index/randomPassword:RandomPassword").state["result"]
    secret = run.one("aws:secretsmanager/secret:Secret").inputs
    assert secret["name"] == "media-api-key-test"
    assert secret["kmsKeyId"] == SECRETS_KEY
    assert secret["recoveryWindowInDays"] == 0
    version = run.one("aws:secretsmanager/secretVersion:SecretVersion").inputs
    assert version["secretId"] == run.one("aws:secretsmanager/secret:Secret").id
    assert version["secretString"] == as_secret(value)
    api_key = run.one("aws:apigateway/apiKey:ApiKey").inputs
    assert api_key["value"] == as_secret(value)
    assert api_key["enabled"] is True


def test_secret_recovery_window_follows_data_protection_g3(namer, context, run):
    assert run.one("aws:secretsmanager/secret:Secret").inputs["recoveryWindowInDays"] == 0
    protected = build(namer, context, protect_data=True)
    assert protected.one("aws:secretsmanager/secret:Secret").inputs["recoveryWindowInDays"] == 30


def test_exposes_key_id_and_secret_arn_but_never_the_value(run):
    key = run.one("aws:apigateway/apiKey:ApiKey")
    secret = run.one("aws:secretsmanager/secret:Secret")
    resolved = pulumi.runtime.sync_await._sync_await
    assert resolved(run.api.api_key_id.future()) == key.id
    assert resolved(run.api.api_key_secret_arn.future()) == secret.state["arn"]


def test_iam_auth_signs_every_method_and_creates_no_key_a3(namer, context):
    run = build(namer, context, auth=ApiAuth.IAM)
    for m in run.of_type(T_METHOD):
        assert m.inputs["authorization"] == "AWS_IAM"
        assert m.inputs["apiKeyRequired"] is False
    for token in (
        "aws:apigateway/apiKey:ApiKey",
        "aws:apigateway/usagePlan:UsagePlan",
        "aws:apigateway/usagePlanKey:UsagePlanKey",
        "aws:secretsmanager/secret:Secret",
        "random:index/randomPassword:RandomPassword",
    ):
        assert run.of_type(token) == [], token
    assert run.api.api_key_id is None and run.api.api_key_secret_arn is None
    # IAM is not weaker than a key: an info message, not a warning.
    assert run.warnings == []


# -- usage plan and throttling (A2) ------------------------------------------------------------


def test_usage_plan_binds_the_stage_with_throttle_and_quota_a2(namer, context):
    run = build(
        namer,
        context,
        throttle_rate_limit=20,
        throttle_burst_limit=40,
        quota_limit=10000,
        quota_period="WEEK",
    )
    plan = run.one("aws:apigateway/usagePlan:UsagePlan")
    throttle = {"rateLimit": 20, "burstLimit": 40}
    assert plan.inputs["apiStages"] == [
        {
            "apiId": run.one(T_REST_API).id,
            "stage": "v1",
            "throttles": [
                {"path": "/videos/GET", **throttle},
                {"path": "/videos/POST", **throttle},
                {"path": "/videos/{videoId}/GET", **throttle},
                {"path": "/videos/{videoId}/upload/parts/POST", **throttle},
                {"path": "/videos/{videoId}/upload/complete/POST", **throttle},
                {"path": "/videos/{videoId}/upload/DELETE", **throttle},
                {"path": "/videos/{videoId}/playback/GET", **throttle},
            ],
        }
    ]
    assert plan.inputs["throttleSettings"] == throttle
    assert plan.inputs["quotaSettings"] == {"limit": 10000, "period": "WEEK"}
    # The plan names the stage's output, so it is created after the stage exists.
    assert run.one(T_STAGE).urn in plan.dependencies


def test_usage_plan_key_attaches_the_key_to_the_plan_a3(run):
    plan_key = run.one("aws:apigateway/usagePlanKey:UsagePlanKey").inputs
    assert plan_key == {
        "keyId": run.one("aws:apigateway/apiKey:ApiKey").id,
        "keyType": "API_KEY",
        "usagePlanId": run.one("aws:apigateway/usagePlan:UsagePlan").id,
    }


def test_stage_wide_method_settings_throttle_log_and_never_trace_bodies_a2_a5(namer, context):
    run = build(namer, context, throttle_rate_limit=200, throttle_burst_limit=400)
    settings = run.one("aws:apigateway/methodSettings:MethodSettings").inputs
    assert settings["methodPath"] == "*/*"
    assert settings["stageName"] == "v1"
    assert settings["restApi"] == run.one(T_REST_API).id
    assert settings["settings"] == {
        "throttlingRateLimit": 200,
        "throttlingBurstLimit": 400,
        "metricsEnabled": True,
        "loggingLevel": "INFO",
        "dataTraceEnabled": False,
        "cachingEnabled": False,
    }


# -- validation (A7) ---------------------------------------------------------------------------


def test_validators_check_body_and_parameters_or_parameters_only_a7(run):
    body = run.named("api-validate-body-and-parameters")
    params = run.named("api-validate-parameters-only")
    assert body.inputs["name"] == "media-api-body-and-parameters-test"
    assert params.inputs["name"] == "media-api-parameters-only-test"
    assert (body.inputs["validateRequestBody"], body.inputs["validateRequestParameters"]) == (
        True,
        True,
    )
    assert (params.inputs["validateRequestBody"], params.inputs["validateRequestParameters"]) == (
        False,
        True,
    )
    assert method(run, "create-video")["requestValidatorId"] == body.id
    assert method(run, "list-videos")["requestValidatorId"] == params.id
    assert method(run, "get-video")["requestValidatorId"] == params.id
    assert method(run, "upload-parts")["requestValidatorId"] == body.id
    assert method(run, "upload-complete")["requestValidatorId"] == params.id
    assert method(run, "upload-abort")["requestValidatorId"] == params.id


def test_create_video_model_takes_this_stacks_size_limit_and_content_types_a7_m1(run):
    model = run.named("api-create-video-model").inputs
    assert model["name"] == "CreateVideo"
    assert model["contentType"] == "application/json"
    assert json.loads(model["schema"]) == {
        "$schema": "http://json-schema.org/draft-04/schema#",
        "title": "CreateVideo",
        "type": "object",
        "additionalProperties": False,
        "required": ["title", "creator", "size_bytes", "content_type"],
        "properties": {
            "title": {"type": "string", "minLength": 1, "maxLength": 200},
            "creator": {"type": "string", "minLength": 1, "maxLength": 100},
            "size_bytes": {"type": "integer", "minimum": 1, "maximum": MAX_BYTES},
            "content_type": {"type": "string", "enum": ["video/mp4", "video/webm"]},
        },
    }
    assert method(run, "create-video")["requestModels"] == {"application/json": "CreateVideo"}


def test_create_video_model_follows_the_upload_limits_it_is_given_m1(namer, context):
    other = build(
        namer, context, uploads=uploads(max_bytes=1000, content_types=("video/quicktime",))
    )
    properties = json.loads(other.named("api-create-video-model").inputs["schema"])["properties"]
    assert properties["size_bytes"]["maximum"] == 1000
    assert properties["content_type"]["enum"] == ["video/quicktime"]
    # The contract's model is left as it was.
    assert "enum" not in CREATE_VIDEO_SCHEMA["properties"]["content_type"]


def test_upload_parts_model_is_the_contracts_a7_m1(run):
    model = run.named("api-upload-parts-model").inputs
    assert (model["name"], model["contentType"]) == ("UploadParts", "application/json")
    assert json.loads(model["schema"]) == UPLOAD_PARTS_SCHEMA
    assert method(run, "upload-parts")["requestModels"] == {"application/json": "UploadParts"}
    for key in ("upload-complete", "upload-abort", "get-video", "list-videos"):
        assert "requestModels" not in method(run, key)


def test_video_id_path_parameter_is_required_and_list_queries_optional_a7(run):
    assert method(run, "get-video")["requestParameters"] == {"method.request.path.videoId": True}
    assert method(run, "list-videos")["requestParameters"] == {
        "method.request.querystring.status": False,
        "method.request.querystring.limit": False,
        "method.request.querystring.cursor": False,
    }
    assert "requestParameters" not in method(run, "create-video")
    for key in ("upload-parts", "upload-complete", "upload-abort"):
        assert method(run, key)["requestParameters"] == {"method.request.path.videoId": True}


# -- integrations and Lambda permissions (A4) --------------------------------------------------


def test_every_method_is_a_lambda_proxy_called_with_post_a4(run):
    integrations = run.of_type(T_INTEGRATION)
    assert len(integrations) == 7
    for integration in integrations:
        assert integration.inputs["type"] == "AWS_PROXY"
        assert integration.inputs["integrationHttpMethod"] == "POST"
        assert integration.inputs["uri"] == INVOKE_ARN


def test_every_declared_parameter_keys_the_cache(run):
    assert run.named("api-list-videos-integration").inputs["cacheKeyParameters"] == [
        "method.request.querystring.cursor",
        "method.request.querystring.limit",
        "method.request.querystring.status",
    ]
    assert run.named("api-get-video-integration").inputs["cacheKeyParameters"] == [
        "method.request.path.videoId"
    ]
    assert "cacheKeyParameters" not in run.named("api-create-video-integration").inputs


def test_api_gateway_may_invoke_the_function_only_through_the_seven_methods_a4(run):
    execution = run.one(T_REST_API).state["executionArn"]
    permissions = [
        p
        for p in run.of_type("aws:lambda/permission:Permission")
        if p.inputs["principal"] == "apigateway.amazonaws.com"
    ]
    assert {p.inputs["sourceArn"] for p in permissions} == {
        f"{execution}/v1/GET/videos",
        f"{execution}/v1/POST/videos",
        f"{execution}/v1/GET/videos/*",
        f"{execution}/v1/POST/videos/*/upload/parts",
        f"{execution}/v1/POST/videos/*/upload/complete",
        f"{execution}/v1/DELETE/videos/*/upload",
        f"{execution}/v1/GET/videos/*/playback",
    }
    for p in permissions:
        assert p.inputs["principal"] == "apigateway.amazonaws.com"
        assert p.inputs["action"] == "lambda:InvokeFunction"
        assert p.inputs["function"] == "media-api-test"


# -- deployment and redeploy trigger (A5) ------------------------------------------------------


def test_deployment_has_a_redeploy_trigger_and_no_stage_a5(run):
    deployment = run.one("aws:apigateway/deployment:Deployment")
    assert "stageName" not in deployment.inputs
    assert deployment.inputs["triggers"] == {
        "redeploy": redeploy_hash(api_definition(ApiAuth.API_KEY, MODELS), INVOKE_ARN)
    }
    snapshot = {r.urn for r in run.of_type(T_METHOD) + run.of_type(T_INTEGRATION)}
    assert snapshot <= set(deployment.dependencies)


def trigger(run):
    return run.one("aws:apigateway/deployment:Deployment").inputs["triggers"]["redeploy"]


def test_redeploy_trigger_changes_when_a_method_changes_a5(namer, context, run):
    assert trigger(build(namer, context, auth=ApiAuth.IAM)) != trigger(run)


def test_redeploy_trigger_is_stable_when_only_stage_or_backend_settings_change_a5(
    namer, context, run
):
    other = build(
        namer,
        context,
        throttle_rate_limit=7,
        waf_rate_limit=100,
        memory_mb=1024,
        cache_size_gb="0.5",
        reserved_concurrency=5,
    )
    assert trigger(other) == trigger(run)
    assert trigger(build(namer, context)) == trigger(run)


def test_redeploy_trigger_changes_when_the_upload_limits_change_a5_m1(namer, context, run):
    assert trigger(build(namer, context, uploads=uploads(max_bytes=1000))) != trigger(run)
    assert trigger(build(namer, context, uploads=uploads(url_ttl_seconds=60))) == trigger(run)


def test_definition_hash_follows_parameters_models_and_the_backend_uri():
    base = api_definition(ApiAuth.API_KEY, MODELS)
    assert redeploy_hash(base, "uri") == redeploy_hash(
        api_definition(ApiAuth.API_KEY, MODELS), "uri"
    )
    other_models = api_definition(ApiAuth.API_KEY, request_models(1, TYPES))
    assert redeploy_hash(other_models, "uri") != redeploy_hash(base, "uri")
    with_param = api_definition(
        ApiAuth.API_KEY,
        MODELS,
        (
            *ROUTES[:2],
            Route(
                "get-video",
                "/videos/{videoId}",
                "GET",
                "parameters-only",
                path_parameters=("videoId",),
                query_parameters=("fields",),
            ),
        ),
    )
    assert redeploy_hash(with_param, "uri") != redeploy_hash(base, "uri")
    assert redeploy_hash(base, "other-uri") != redeploy_hash(base, "uri")


def test_route_arn_paths_wildcard_path_parameters():
    assert [r.arn_path() for r in ROUTES] == [
        "GET/videos",
        "POST/videos",
        "GET/videos/*",
        "POST/videos/*/upload/parts",
        "POST/videos/*/upload/complete",
        "DELETE/videos/*/upload",
        "GET/videos/*/playback",
    ]


# -- stage, logs, tracing, cache (A5, O1) ------------------------------------------------------


def test_stage_writes_structured_access_logs_and_traces_a5(run):
    stage = run.one(T_STAGE).inputs
    access = run.named("api-access-logs")
    assert stage["stageName"] == "v1"
    assert stage["deployment"] == run.one("aws:apigateway/deployment:Deployment").id
    assert stage["xrayTracingEnabled"] is True
    assert stage["accessLogSettings"]["destinationArn"] == access.state["arn"]
    assert stage["accessLogSettings"]["format"] == ACCESS_LOG_FORMAT
    fields = json.loads(stage["accessLogSettings"]["format"])
    assert set(fields) == {
        "requestId",
        "extendedRequestId",
        "ip",
        "caller",
        "user",
        "requestTime",
        "httpMethod",
        "resourcePath",
        "status",
        "protocol",
        "responseLength",
        "integrationLatency",
        "responseLatency",
        "apiKeyId",
        "wafResponseCode",
        "xrayTraceId",
        "errorMessage",
    }
    assert fields["requestId"] == "$context.requestId"
    assert fields["apiKeyId"] == "$context.identity.apiKeyId"
    assert fields["ip"] == "$context.identity.sourceIp"
    assert fields["wafResponseCode"] == "$context.wafResponseCode"
    # The key's value ($context.identity.apiKey) never reaches the logs.
    assert "$context.identity.apiKey" not in fields.values()
    assert "cacheClusterEnabled" not in stage and "cacheClusterSize" not in stage


def test_execution_log_group_exists_before_the_stage_a5_o1(run):
    group = run.named("api-execution-logs")
    rest_api_id = run.one(T_REST_API).id
    assert group.inputs["name"] == f"API-Gateway-Execution-Logs_{rest_api_id}/v1"
    assert group.inputs["kmsKeyId"] == LOGS_KEY
    assert group.inputs["retentionInDays"] == 90
    assert group.urn in run.one(T_STAGE).dependencies


def test_every_log_group_is_encrypted_with_the_logs_key_and_expires_o1(run):
    groups = run.of_type(T_LOG_GROUP)
    assert {g.name for g in groups} == {
        "api-function-logs",
        "api-access-logs",
        "api-execution-logs",
        "api-waf-logs",
        "api-key-rotation-function-logs",
    }
    for group in groups:
        assert group.inputs["kmsKeyId"] == LOGS_KEY
        assert group.inputs["retentionInDays"] == 90


def test_stage_cache_is_encrypted_and_keyed_when_enabled(namer, context):
    run = build(namer, context, cache_size_gb="0.5")
    stage = run.one(T_STAGE).inputs
    assert (stage["cacheClusterEnabled"], stage["cacheClusterSize"]) == (True, "0.5")
    settings = run.named("api-method-settings").inputs["settings"]
    assert settings["cachingEnabled"] is True
    assert settings["cacheDataEncrypted"] is True
    assert settings["cacheTtlInSeconds"] == 60
    assert settings["requireAuthorizationForCacheControl"] is True
    assert settings["unauthorizedCacheControlHeaderStrategy"] == "FAIL_WITH_403"
    # A playback grant is never answered from the cache (M8): its method opts out.
    playback = run.named("api-get-playback-method-settings").inputs
    assert playback["methodPath"] == "videos/{videoId}/playback/GET"
    assert playback["settings"] == {**settings, "cachingEnabled": False}
    # Registration order follows output resolution, which load can reorder: compare as a set.
    assert {r.name for r in run.of_type("aws:apigateway/methodSettings:MethodSettings")} == {
        "api-method-settings",
        "api-get-playback-method-settings",
    }


def test_without_a_stage_cache_one_method_setting_covers_every_method_a5(run):
    (settings,) = run.of_type("aws:apigateway/methodSettings:MethodSettings")
    assert settings.inputs["methodPath"] == "*/*"
    assert settings.inputs["settings"]["cachingEnabled"] is False


def test_no_account_wide_logging_role_unless_asked(run):
    assert run.of_type("aws:apigateway/account:Account") == []


def test_managed_cloudwatch_role_is_set_before_stage_and_settings_a5(namer, context):
    run = build(namer, context, manage_cloudwatch_role=True)
    account = run.one("aws:apigateway/account:Account")
    role = run.named("api-cloudwatch-role")
    attachment = run.named("api-cloudwatch-policy")
    assert account.inputs["cloudwatchRoleArn"] == role.state["arn"]
    # Retained on destroy, so a prefix: a later `up` of the same stack creates a fresh role.
    assert role.inputs["namePrefix"] == "media-apigw-cw-test-"
    assert "name" not in role.inputs
    assert json.loads(role.inputs["assumeRolePolicy"])["Statement"] == [
        {
            "Effect": "Allow",
            "Principal": {"Service": "apigateway.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ]
    assert (
        attachment.inputs["policyArn"]
        == "arn:aws:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"
    )
    assert attachment.urn in account.dependencies
    assert account.urn in run.one(T_STAGE).dependencies
    assert account.urn in run.one("aws:apigateway/methodSettings:MethodSettings").dependencies
    assert run.warnings == []


def test_managed_cloudwatch_role_survives_destroy_with_the_account_setting_g3(namer, context):
    """v7 resets the account-wide setting on delete, breaking every other API's logging; the
    setting and the role it points at are kept instead (the only retained resources)."""
    run = build(namer, context, manage_cloudwatch_role=True)
    retained = {r.name for r in run.resources if r.retain_on_delete}
    assert retained == {"api-account", "api-cloudwatch-role", "api-cloudwatch-policy"}


def test_nothing_is_retained_by_default_g3(run):
    assert [r.name for r in run.resources if r.retain_on_delete] == []


# -- WAF (A6) ----------------------------------------------------------------------------------


def visibility(metric):
    return {"cloudwatchMetricsEnabled": True, "metricName": metric, "sampledRequestsEnabled": True}


def test_web_acl_rate_limits_per_ip_and_applies_managed_rules_a6(namer, context):
    run = build(namer, context, waf_rate_limit=500)
    acl = run.one("aws:wafv2/webAcl:WebAcl").inputs
    assert acl["scope"] == "REGIONAL"
    assert acl["defaultAction"] == {"allow": {}}
    assert acl["visibilityConfig"] == visibility("media-api-waf-test")
    assert acl["rules"] == [
        {
            "name": "rate-limit-per-ip",
            "priority": 1,
            "action": {"block": {}},
            "statement": {"rateBasedStatement": {"limit": 500, "aggregateKeyType": "IP"}},
            "visibilityConfig": visibility("media-api-waf-test-rate-limit-per-ip"),
        },
        {
            "name": "AWSManagedRulesCommonRuleSet",
            "priority": 2,
            "overrideAction": {"none": {}},
            "statement": {
                "managedRuleGroupStatement": {
                    "name": "AWSManagedRulesCommonRuleSet",
                    "vendorName": "AWS",
                }
            },
            "visibilityConfig": visibility("media-api-waf-test-AWSManagedRulesCommonRuleSet"),
        },
        {
            "name": "AWSManagedRulesKnownBadInputsRuleSet",
            "priority": 3,
            "overrideAction": {"none": {}},
            "statement": {
                "managedRuleGroupStatement": {
                    "name": "AWSManagedRulesKnownBadInputsRuleSet",
                    "vendorName": "AWS",
                }
            },
            "visibilityConfig": visibility(
                "media-api-waf-test-AWSManagedRulesKnownBadInputsRuleSet"
            ),
        },
    ]


def test_web_acl_is_associated_with_the_stage_a6(run):
    association = run.one("aws:wafv2/webAclAssociation:WebAclAssociation")
    stage = run.one(T_STAGE)
    assert association.inputs["resourceArn"] == stage.state["arn"]
    assert association.inputs["resourceArn"] == (
        f"arn:aws:apigateway:eu-central-1::/restapis/{run.one(T_REST_API).id}/stages/v1"
    )
    assert association.inputs["webAclArn"] == run.one("aws:wafv2/webAcl:WebAcl").state["arn"]
    assert stage.urn in association.dependencies


def test_waf_logs_go_to_an_aws_waf_logs_group_without_key_headers_a6_o1(run):
    group = run.named("api-waf-logs")
    assert group.inputs["name"] == "aws-waf-logs-media-api-test"
    logging = run.one("aws:wafv2/webAclLoggingConfiguration:WebAclLoggingConfiguration")
    assert logging.inputs["resourceArn"] == run.one("aws:wafv2/webAcl:WebAcl").state["arn"]
    assert logging.inputs["logDestinationConfigs"] == [group.state["arn"]]
    assert logging.inputs["redactedFields"] == [
        {"singleHeader": {"name": "x-api-key"}},
        {"singleHeader": {"name": "authorization"}},
    ]
    policy = run.one("aws:cloudwatch/logResourcePolicy:LogResourcePolicy")
    assert policy.urn in logging.dependencies


def test_waf_log_delivery_policy_is_scoped_to_the_group_and_account_a6(run):
    group_arn = run.named("api-waf-logs").state["arn"]
    policy = run.one("aws:cloudwatch/logResourcePolicy:LogResourcePolicy").inputs
    assert policy["resourceArn"] == group_arn
    assert "policyName" not in policy
    assert json.loads(policy["policyDocument"])["Statement"] == [
        {
            "Sid": "WafLogDelivery",
            "Effect": "Allow",
            "Principal": {"Service": "delivery.logs.amazonaws.com"},
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": f"{group_arn}:*",
            "Condition": {
                "StringEquals": {"aws:SourceAccount": "123456789012"},
                "ArnLike": {"aws:SourceArn": "arn:aws:logs:eu-central-1:123456789012:*"},
            },
        }
    ]


# -- Lambda function (A4) ----------------------------------------------------------------------


def test_function_runtime_size_tracing_and_encrypted_environment_a4(run):
    function = run.one(T_FUNCTION, "api-function").inputs
    assert function["name"] == "media-api-test"
    assert function["runtime"] == "python3.12"
    assert function["runtime"] in {r.value for r in aws.lambda_.Runtime}
    assert function["handler"] == "services.api.handler.handler"
    assert function["architectures"] == ["arm64"]
    assert function["memorySize"] == 256
    assert function["timeout"] == 15
    assert function["sourceCodeHash"] == "q2x0c3eDkLIw="
    assert function["kmsKeyArn"] == SECRETS_KEY
    assert function["tracingConfig"] == {"mode": "Active"}
    assert "reservedConcurrentExecutions" not in function


def test_function_logs_as_json_to_its_precreated_group_o1(run):
    function = run.one(T_FUNCTION, "api-function")
    group = run.named("api-function-logs")
    assert group.inputs["name"] == "/aws/lambda/media-api-test"
    assert function.inputs["loggingConfig"] == {
        "logFormat": "JSON",
        "logGroup": "/aws/lambda/media-api-test",
        "applicationLogLevel": "INFO",
        "systemLogLevel": "WARN",
    }


def test_log_group_and_role_policies_are_created_before_the_function_a4(run):
    dependencies = run.one(T_FUNCTION, "api-function").dependencies
    assert run.named("api-function-logs").urn in dependencies
    assert run.named("api-runtime-policy").urn in dependencies


def test_function_runs_in_the_app_subnets_with_its_own_group_a4_n3(run):
    function = run.one(T_FUNCTION, "api-function").inputs
    group = run.named("api-sg")
    assert function["vpcConfig"] == {"subnetIds": SUBNETS, "securityGroupIds": [group.id]}
    assert group.inputs["name"] == "media-api-sg-test"
    # No rule of its own: the stack grants AWS APIs and data ports (firewall.py, N3).
    assert run.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule") == []
    assert run.of_type("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule") == []


def test_environment_holds_endpoints_names_and_secret_arns_only_a4_g5(run):
    assert run.one(T_FUNCTION, "api-function").inputs["environment"] == {
        "variables": {
            "DB_HOST": "media-aurora-test.cluster-c0ffee.rds.amazonaws.com",
            "DB_PORT": "5432",
            "DB_NAME": "media",
            "DB_SSL": "verify-full",  # issue 14 item 6
            "DB_IAM_USER": "media_api",
            "REDIS_HOST": "master.media-cache-test.cache.amazonaws.com",
            "REDIS_PORT": "6379",
            "REDIS_TLS": "true",
            "STREAM_NAME": "media-stream-test",
            "CACHE_TTL_SECONDS": "300",
            "LOG_LEVEL": "INFO",
            "INGEST_BUCKET": INGEST,
            "UPLOAD_MAX_BYTES": str(MAX_BYTES),
            "UPLOAD_CONTENT_TYPES": "video/mp4,video/webm",
            "UPLOAD_URL_TTL_SECONDS": "600",
        }
    }


def test_environment_names_the_cache_token_secret_when_there_is_one_c3(namer, context):
    run = build(
        namer,
        context,
        backend=backend(redis_auth_secret_arn=REDIS_SECRET, redis_tls=True, log_level="WARNING"),
    )
    function = run.one(T_FUNCTION, "api-function").inputs
    assert function["environment"]["variables"]["REDIS_AUTH_SECRET_ARN"] == REDIS_SECRET
    assert function["environment"]["variables"]["LOG_LEVEL"] == "WARNING"
    assert function["loggingConfig"]["applicationLogLevel"] == "WARN"


def test_environment_says_when_the_cache_has_no_tls_c3(namer, context):
    run = build(namer, context, backend=backend(redis_tls=False))
    variables = run.one(T_FUNCTION, "api-function").inputs["environment"]["variables"]
    assert variables["REDIS_TLS"] == "false"
    assert "REDIS_AUTH_SECRET_ARN" not in variables


def test_reserved_concurrency_and_memory_come_from_args(namer, context):
    function = build(namer, context, reserved_concurrency=50, memory_mb=512).one(
        T_FUNCTION, "api-function"
    )
    assert function.inputs["reservedConcurrentExecutions"] == 50
    assert function.inputs["memorySize"] == 512


def test_role_is_trusted_by_lambda_for_this_account_only_a4(run):
    role = run.one("aws:iam/role:Role", "api-role")
    assert role.inputs["name"] == "media-api-lambda-test"
    assert json.loads(role.inputs["assumeRolePolicy"])["Statement"] == [
        {
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"aws:SourceAccount": "123456789012"}},
        }
    ]
    assert run.one(T_FUNCTION, "api-function").inputs["role"] == role.state["arn"]


def test_runtime_policy_grants_exact_actions_on_exact_resources_a4(run):
    policy = run.named("api-runtime-policy")
    group_arn = run.named("api-function-logs").state["arn"]
    assert policy.inputs["role"] == run.one("aws:iam/role:Role", "api-role").id
    assert statements(policy.inputs["policy"]) == {
        "WriteOwnLogGroup": {
            "Sid": "WriteOwnLogGroup",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": [f"{group_arn}:*"],
        },
        "DecryptOwnEnvironment": {
            "Sid": "DecryptOwnEnvironment",
            "Effect": "Allow",
            "Action": ["kms:Decrypt"],
            "Resource": [SECRETS_KEY],
            "Condition": {
                "StringEquals": {
                    "kms:ViaService": "lambda.eu-central-1.amazonaws.com",
                    "kms:EncryptionContext:aws:lambda:FunctionArn": FUNCTION_ARN,
                }
            },
        },
        "ManageVpcNetworkInterfaces": {
            "Sid": "ManageVpcNetworkInterfaces",
            "Effect": "Allow",
            "Action": list(VPC_NETWORK_INTERFACE_ACTIONS),
            "Resource": ["*"],
        },
        "WriteTraces": {
            "Sid": "WriteTraces",
            "Effect": "Allow",
            "Action": ["xray:PutTraceSegments", "xray:PutTelemetryRecords"],
            "Resource": ["*"],
        },
    }
    actions = {a for s in json.loads(policy.inputs["policy"])["Statement"] for a in s["Action"]}
    # Lambda must not be able to re-create its log group outside the program.
    assert "logs:CreateLogGroup" not in actions
    assert run.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment") == []


def test_grants_of_other_tiers_attach_to_the_role_and_precede_the_function_a4(namer, context):
    calls = []

    def grant(label, resource):
        def attach(resource_name, role):
            calls.append((label, resource_name, role))
            return attach_grants(
                resource_name,
                role,
                [Grant(label, ("kinesis:PutRecord",), (resource,))],
                parent=role,
            )

        return attach

    def skipped(resource_name, role):
        calls.append(("none", resource_name, role))
        return None

    run = build(
        namer,
        context,
        access_grants={
            "stream-write": grant("Write", "arn:aws:kinesis:eu-central-1:123456789012:stream/s"),
            "cache-secret": skipped,
        },
    )
    assert [(c[0], c[1]) for c in calls] == [
        ("none", "api-cache-secret"),
        ("Write", "api-stream-write"),
    ]
    assert all(c[2] is run.api.role for c in calls)
    policy = run.named("api-stream-write")
    assert policy.urn in run.one(T_FUNCTION, "api-function").dependencies
    assert policy.inputs["role"] == run.one("aws:iam/role:Role", "api-role").id


SIGNING_SECRET = "arn:aws:secretsmanager:eu-central-1:123456789012:secret:media-signing-AbC"


def fake_signing_grant(resource_name: str, role: aws.iam.Role) -> aws.iam.RolePolicy:
    """Stands in for `MediaDistribution.grant_signing`."""
    grant = Grant("FakeSigning", ("secretsmanager:GetSecretValue",), (SIGNING_SECRET,))
    return attach_grants(resource_name, role, [grant], parent=role)


def test_m8_playback_target_writes_the_signing_variables_and_grants_the_key(namer, context):
    playback = PlaybackTarget(
        domain="d1234abcd.cloudfront.net",
        key_pair_id="K2JCJMDEHXQW5F",
        signing_secret_arn=SIGNING_SECRET,
        grant_seconds=900,
        grant_signing=fake_signing_grant,
    )
    run = build(namer, context, playback=playback)
    variables = run.one(T_FUNCTION, "api-function").inputs["environment"]["variables"]
    assert {k: v for k, v in variables.items() if k.startswith("PLAYBACK_")} == {
        "PLAYBACK_DOMAIN": "d1234abcd.cloudfront.net",
        "PLAYBACK_KEY_PAIR_ID": "K2JCJMDEHXQW5F",
        "PLAYBACK_SIGNING_SECRET_ARN": SIGNING_SECRET,
        "PLAYBACK_GRANT_SECONDS": "900",
    }
    policy = run.named("api-playback-signing")
    assert policy.inputs["role"] == run.one("aws:iam/role:Role", "api-role").id
    assert json.loads(policy.inputs["policy"])["Statement"][0]["Sid"] == "FakeSigning"
    assert policy.urn in run.one(T_FUNCTION, "api-function").dependencies


def test_m8_without_delivery_the_function_gets_no_playback_variables(run):
    variables = run.one(T_FUNCTION, "api-function").inputs["environment"]["variables"]
    assert [k for k in variables if k.startswith("PLAYBACK_")] == []
    assert [r.name for r in run.resources if r.name == "api-playback-signing"] == []


def test_upload_grant_attaches_to_the_function_role_before_the_function_m1(run):
    """M1: the role that signs presigned uploads gets the storage's upload grant."""
    policy = run.named("api-uploads")
    assert policy.inputs["role"] == run.one("aws:iam/role:Role", "api-role").id
    assert json.loads(policy.inputs["policy"])["Statement"][0]["Sid"] == "FakeUploads"
    assert policy.urn in run.one(T_FUNCTION, "api-function").dependencies


# -- alarms (O2) -------------------------------------------------------------------------------


def test_alarms_on_api_errors_latency_and_function_health_o2(namer, context):
    run = build(namer, context, alarm_5xx_threshold=7, alarm_latency_p99_ms=2500)
    api_dims = {"ApiName": "media-api-test", "Stage": "v1"}
    fn_dims = {"FunctionName": "media-api-test"}
    expected = {
        "media-api-5xx-test": ("AWS/ApiGateway", "5XXError", api_dims, "Sum", 7),
        "media-api-latency-p99-test": ("AWS/ApiGateway", "Latency", api_dims, "p99", 2500),
        "media-api-lambda-errors-test": ("AWS/Lambda", "Errors", fn_dims, "Sum", 0),
        "media-api-lambda-throttles-test": ("AWS/Lambda", "Throttles", fn_dims, "Sum", 0),
    }
    alarms = {
        a.inputs["name"]: a.inputs for a in run.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
    }
    # Beside the key rotation's own failure alarm (tests/infra/test_rotation.py).
    assert set(alarms) == set(expected) | {"media-api-key-rotation-failed-test"}
    for alarm_name, (namespace, metric, dims, statistic, threshold) in expected.items():
        alarm = alarms[alarm_name]
        assert (alarm["namespace"], alarm["metricName"], alarm["dimensions"]) == (
            namespace,
            metric,
            dims,
        )
        assert alarm.get("statistic", alarm.get("extendedStatistic")) == statistic
        assert alarm["threshold"] == threshold
        assert alarm["comparisonOperator"] == "GreaterThanThreshold"
        assert alarm["alarmActions"] == [TOPIC] and alarm["okActions"] == [TOPIC]


# -- component shape ---------------------------------------------------------------------------


def test_every_child_is_parented_by_the_component(run):
    component = run.one("media:api:PublicApi")
    # The upload grant's policy stands in for MediaStorage's, whose child it is there.
    own = [r for r in run.resources if r.urn != component.urn and r.name != "api-uploads"]
    assert own and all(r.parent_urn == component.urn for r in own)


def test_outputs_for_the_program(run):
    resolved = pulumi.runtime.sync_await._sync_await
    api = run.api
    rest_api_id = run.one(T_REST_API).id
    stage_url = f"https://{rest_api_id}.execute-api.eu-central-1.amazonaws.com/v1"
    assert resolved(api.rest_api_id.future()) == rest_api_id
    assert resolved(api.stage_name.future()) == "v1"
    assert resolved(api.invoke_url.future()) == stage_url
    assert resolved(api.videos_url.future()) == f"{stage_url}/videos"
    assert resolved(api.function_name.future()) == "media-api-test"
    assert resolved(api.web_acl_arn.future()) == run.one("aws:wafv2/webAcl:WebAcl").state["arn"]


# -- validation (G8) ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"subnet_ids": ["subnet-a"]}, "subnet_ids: 1 given, allowed at least 2"),
        ({"throttle_rate_limit": 0}, "throttle_rate_limit=0: allowed 1..10000"),
        ({"throttle_burst_limit": 0}, "throttle_burst_limit=0: allowed 1..5000"),
        ({"quota_limit": 0}, "quota_limit=0: allowed 1..2000000000"),
        ({"quota_period": "YEAR"}, 'quota_period="YEAR": allowed one of DAY, WEEK, MONTH'),
        ({"waf_rate_limit": 5}, "waf_rate_limit=5: allowed 10..2000000000"),
        ({"reserved_concurrency": 0}, "reserved_concurrency=0: allowed -1 or 1..1000"),
        ({"memory_mb": 64}, "memory_mb=64: allowed 128..10240"),
        ({"timeout_seconds": 29}, "timeout_seconds=29: allowed 1..28"),
        ({"code_sha256": ""}, "code_path/code_sha256: allowed a built package"),
        (
            {"backend": backend(db_ssl="prefer")},
            "backend.db_ssl='prefer': allowed one of require, verify-full",
        ),
        (
            {"backend": backend(log_level="TRACE")},
            "backend.log_level='TRACE': allowed one of DEBUG",
        ),
        (
            {"backend": backend(cache_ttl_seconds=0)},
            "backend.cache_ttl_seconds=0: allowed 1..604800",
        ),
        ({"cache_size_gb": "2"}, 'cache_size_gb="2": allowed empty (no cache) or one of 0.5, 1.6'),
        ({"stage_name": "v-1"}, "stage_name='v-1': allowed 1-128 letters, digits, _"),
        ({"log_retention_days": 45}, "log_retention_days=45: allowed one of 1, 3"),
        ({"alarm_5xx_threshold": 0}, "alarm_5xx_threshold=0: allowed 1..100000"),
        ({"alarm_latency_p99_ms": 30000}, "alarm_latency_p99_ms=30000: allowed 50..29000"),
    ],
)
def test_bad_args_fail_with_a_message_naming_the_field_g8(namer, context, overrides, message):
    with pytest.raises(ValueError, match="PublicApiArgs: ") as error:
        api_args(namer, context, **overrides).validate()
    assert message in str(error.value)


def test_every_problem_is_reported_at_once_and_nothing_is_registered_g8(namer, context):
    args = api_args(namer, context, memory_mb=1, quota_period="YEAR", stage_name="")
    failures = []

    def program():
        try:
            PublicApi("api", args)
        except ValueError as error:
            failures.append(str(error))

    run = run_components(program)
    assert run.resources == []
    assert len(failures) == 1
    for part in ("memory_mb=1", 'quota_period="YEAR"', "stage_name=''"):
        assert part in failures[0]


def test_component_type_token(run):
    """`media:api:PublicApi`, named by the caller, directly under the stack."""
    (component,) = [r for r in run.resources if not r.custom]
    assert (component.type, component.name) == ("media:api:PublicApi", "api")
    assert component.urn == (
        "urn:pulumi:test::media-pipeline::pulumi:pulumi:Stack$media:api:PublicApi::api"
    )
    assert component.parent_urn == (
        "urn:pulumi:test::media-pipeline::pulumi:pulumi:Stack::media-pipeline-test"
    )


# -- API key rotation (A3, K3; issue 14, item 7) -----------------------------------------------

T_ROTATION = "aws:secretsmanager/secretRotation:SecretRotation"
T_INVOCATION = "aws:lambda/invocation:Invocation"
ROTATION_FUNCTION = "media-api-key-rotation-test"
ROTATION_FUNCTION_ARN = f"arn:aws:lambda:eu-central-1:123456789012:function:{ROTATION_FUNCTION}"


def key_secret_arn(run) -> str:
    return run.named("api-key-secret").state["arn"]


def test_k_the_key_rotates_every_90_days_by_default_never_during_up(run):
    rotation = run.one(T_ROTATION).inputs
    assert rotation["secretId"] == key_secret_arn(run)
    assert rotation["rotationLambdaArn"] == ROTATION_FUNCTION_ARN
    assert rotation["rotationRules"] == {"automaticallyAfterDays": 90}
    assert rotation["rotateImmediately"] is False
    assert run.named("api-key-rotation-invoke").urn in run.one(T_ROTATION).dependencies


def test_k_the_rotation_period_comes_from_args(namer, context):
    run = build(namer, context, key_rotation_days=30)
    assert run.one(T_ROTATION).inputs["rotationRules"] == {"automaticallyAfterDays": 30}


def test_k_rotation_function_runs_its_handler_in_the_app_subnets_with_its_own_group(run):
    function = run.one(T_FUNCTION, "api-key-rotation-function").inputs
    assert function["name"] == ROTATION_FUNCTION
    assert function["handler"] == API_KEY_ROTATION_HANDLER
    assert function["timeout"] == 60
    assert function["kmsKeyArn"] == SECRETS_KEY
    assert function["tracingConfig"] == {"mode": "Active"}
    own_group = run.named("api-key-rotation-sg")
    assert own_group.inputs["name"] == "media-api-key-rotation-sg-test"
    assert function["vpcConfig"] == {
        "subnetIds": SUBNETS,
        "securityGroupIds": [own_group.id],
    }
    assert run.named("api-sg").id not in function["vpcConfig"]["securityGroupIds"]


def test_k_rotation_function_is_told_the_secret_the_first_key_and_the_plan(run):
    variables = run.one(T_FUNCTION, "api-key-rotation-function").inputs["environment"]["variables"]
    key = run.one("aws:apigateway/apiKey:ApiKey")
    assert variables == {
        EnvVar.API_KEY_SECRET_ARN: key_secret_arn(run),
        EnvVar.API_KEY_NAME: "media-api-key-test",
        EnvVar.API_KEY_ID: key.id,
        EnvVar.API_USAGE_PLAN_ID: run.one("aws:apigateway/usagePlan:UsagePlan").id,
        EnvVar.LOG_LEVEL: "INFO",
    }
    # What the stack writes is what the function reads (the contract, round-tripped).
    settings = load_rotation_settings({**variables, EnvVar.AWS_REGION: "eu-central-1"})
    assert (settings.secret_arn, settings.key_name, settings.first_key_id) == (
        key_secret_arn(run),
        "media-api-key-test",
        key.id,
    )
    assert set(variables) == API_KEY_ROTATION_ENVIRONMENT.required | {EnvVar.LOG_LEVEL}


def test_k_rotation_function_may_manage_keys_only_in_the_stacks_usage_plan(run):
    plan = run.one("aws:apigateway/usagePlan:UsagePlan").id
    api = "arn:aws:apigateway:eu-central-1::"
    policy = run.named("api-key-rotation-api-keys")
    assert policy.inputs["role"] == run.named("api-key-rotation-role").id
    assert statements(policy.inputs["policy"]) == {
        "ReadKeysAndThePlan": {
            "Sid": "ReadKeysAndThePlan",
            "Effect": "Allow",
            "Action": ["apigateway:GET"],
            "Resource": [
                f"{api}/apikeys",
                f"{api}/apikeys/*",
                f"{api}/usageplans/{plan}",
                f"{api}/usageplans/{plan}/keys",
                f"{api}/usageplans/{plan}/keys/*",
            ],
        },
        "IssueKeysIntoThePlan": {
            "Sid": "IssueKeysIntoThePlan",
            "Effect": "Allow",
            "Action": ["apigateway:POST"],
            "Resource": [
                f"{api}/apikeys",
                f"{api}/usageplans/{plan}/keys",
                f"{api}/tags/*apikeys*",
            ],
        },
        "DisableRetiredKeys": {
            "Sid": "DisableRetiredKeys",
            "Effect": "Allow",
            "Action": ["apigateway:PATCH"],
            "Resource": [f"{api}/apikeys/*"],
        },
        "DeleteRetiredKeys": {
            "Sid": "DeleteRetiredKeys",
            "Effect": "Allow",
            "Action": ["apigateway:DELETE"],
            "Resource": [f"{api}/apikeys/*", f"{api}/usageplans/{plan}/keys/*"],
        },
    }
    assert policy.urn in run.one(T_FUNCTION, "api-key-rotation-function").dependencies


def test_k_rotation_function_may_rotate_exactly_the_key_secret(run):
    secret = key_secret_arn(run)
    rotation = json.loads(run.named("api-key-rotation-rotation").inputs["policy"])["Statement"]
    # Exactly these two: random values come from the function's own CSPRNG, so no
    # GetRandomPassword on "*".
    assert rotation == expect.rotation_statements(secret, SECRETS_KEY, "eu-central-1")
    # Nothing of the API function's (database, cache, stream, uploads): these three only.
    role = run.named("api-key-rotation-role").id
    assert {
        policy.name
        for policy in run.of_type("aws:iam/rolePolicy:RolePolicy")
        if policy.inputs["role"] == role
    } == {
        "api-key-rotation-runtime-policy",
        "api-key-rotation-rotation",
        "api-key-rotation-api-keys",
    }


def test_k_only_secrets_manager_may_invoke_it_for_this_secret_in_this_account(run):
    permission = run.named("api-key-rotation-invoke").inputs
    assert permission == {
        "action": "lambda:InvokeFunction",
        "function": ROTATION_FUNCTION,
        "principal": "secretsmanager.amazonaws.com",
        "sourceArn": key_secret_arn(run),
        "sourceAccount": ACCOUNT_ID,
    }


def test_k_up_never_undoes_a_rotation(run):
    """After a rotation the first key is disabled and AWSCURRENT is on another version: the
    next `up` writes neither back (and `refresh` + `preview --expect-no-changes` stays quiet)."""
    key = run.one("aws:apigateway/apiKey:ApiKey")
    assert key.ignore_changes == ["enabled"]
    version = run.named("api-key-secret-value")
    assert version.inputs["versionStages"] == ["AWSCURRENT", DEPLOYED_STAGE]
    assert sorted(version.ignore_changes) == ["secretString", "versionStages"]


def test_g3_destroy_has_the_function_delete_the_keys_rotations_made(run):
    cleanup = run.one(T_INVOCATION)
    assert cleanup.name == "api-key-rotation-cleanup"
    assert cleanup.inputs["functionName"] == ROTATION_FUNCTION
    assert cleanup.inputs["lifecycleScope"] == "CRUD"
    assert "tf" not in json.loads(cleanup.inputs["input"])
    # Created after the function and its grants, so deleted before them.
    assert run.one(T_FUNCTION, "api-key-rotation-function").urn in cleanup.dependencies


def test_k_the_function_waits_for_the_flows_it_is_granted(namer, context):
    granted = []

    def https_out(group):
        group.allow_https_egress()
        granted.append(group.physical_name)

    code = KeyRotationCode(
        code_path="build/lambda/rotation.zip", code_sha256="cm90", network_grants=(https_out,)
    )
    run = build(namer, context, key_rotation=code)
    assert granted == ["media-api-key-rotation-sg-test"]
    rule = run.named("api-key-rotation-sg-https-out")
    assert rule.inputs["securityGroupId"] == run.named("api-key-rotation-sg").id
    assert (rule.inputs["cidrIpv4"], rule.inputs["fromPort"]) == ("0.0.0.0/0", 443)
    assert rule.urn in run.one(T_FUNCTION, "api-key-rotation-function").dependencies


def test_k_no_rotation_is_a_visible_opt_out(namer, context):
    run = build(namer, context, key_rotation_days=0, key_rotation=None)
    assert run.of_type(T_ROTATION) == [] and run.of_type(T_INVOCATION) == []
    assert [f.name for f in run.of_type(T_FUNCTION)] == ["api-function"]
    assert run.warnings == [
        "PublicApi: apiKeyRotationDays=0 — the API key never rotates: a leaked key works until "
        "someone rotates the secret by hand"
    ]
    # Still stored as a rotated secret: a stack that rotated before keeps its current key.
    assert run.named("api-key-secret-value").inputs["versionStages"] == [
        "AWSCURRENT",
        DEPLOYED_STAGE,
    ]


def test_k_iam_auth_has_no_key_to_rotate(namer, context):
    run = build(namer, context, auth=ApiAuth.IAM, key_rotation=None)
    assert run.of_type(T_ROTATION) == [] and run.warnings == []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"key_rotation": None}, "key_rotation: required when key_rotation_days=90"),
        (
            {"key_rotation": KeyRotationCode(code_path="", code_sha256="")},
            "key_rotation: required when key_rotation_days=90",
        ),
        ({"key_rotation_days": 1001}, "key_rotation_days=1001: allowed 0 or 1..1000"),
        ({"key_rotation_days": -1}, "key_rotation_days=-1: allowed 0 or 1..1000"),
    ],
)
def test_k_bad_rotation_args_fail_naming_the_field_g8(namer, context, overrides, message):
    with pytest.raises(ValueError, match="PublicApiArgs: ") as error:
        api_args(namer, context, **overrides).validate()
    assert message in str(error.value)


# -- whole program (G6, A2, A4, N3, G1) --------------------------------------------------------

PROGRAM_REGIONS = ["eu-central-1", "us-east-1", "ca-central-1", "ap-northeast-1"]


@pytest.mark.parametrize("fixture", ["dev_run", "prod_run"])
def test_program_exports_the_api_but_never_the_key_value_g6(request, fixture):
    run = request.getfixturevalue(fixture)
    rest_api = run.one(T_REST_API)
    key = run.one("aws:apigateway/apiKey:ApiKey")
    secret = run.one("aws:secretsmanager/secret:Secret", "api-key-secret")
    assert run.outputs["apiUrl"] == (
        f"https://{rest_api.id}.execute-api.{run.region}.amazonaws.com/v1"
    )
    assert run.outputs["apiId"] == rest_api.id
    assert run.outputs["apiStageName"] == "v1"
    assert run.outputs["apiKeyId"] == key.id
    assert run.outputs["apiKeySecretArn"] == secret.state["arn"]
    value = run.one("random:index/randomPassword:RandomPassword", "api-key-value").state["result"]
    assert value not in repr(run.outputs)


@pytest.mark.parametrize(
    ("fixture", "rate", "burst", "quota"),
    [("dev_run", 20, 40, 10000), ("prod_run", 200, 400, 5000000)],
)
def test_program_throttles_and_quotas_come_from_the_stack_file_a2(
    request, fixture, rate, burst, quota
):
    run = request.getfixturevalue(fixture)
    plan = run.one("aws:apigateway/usagePlan:UsagePlan").inputs
    assert plan["throttleSettings"] == {"rateLimit": rate, "burstLimit": burst}
    assert plan["quotaSettings"] == {"limit": quota, "period": "MONTH"}
    settings = run.one("aws:apigateway/methodSettings:MethodSettings").inputs["settings"]
    assert (settings["throttlingRateLimit"], settings["throttlingBurstLimit"]) == (rate, burst)
    assert run.one("aws:wafv2/webAcl:WebAcl", "api-waf").inputs["rules"][0]["statement"] == {
        "rateBasedStatement": {"limit": 2000, "aggregateKeyType": "IP"}
    }


def test_program_sizes_the_function_per_stack_a4(dev_run, prod_run):
    dev, prod = (
        dev_run.one(T_FUNCTION, "api-function").inputs,
        prod_run.one(T_FUNCTION, "api-function").inputs,
    )
    assert (dev["memorySize"], "reservedConcurrentExecutions" in dev) == (256, False)
    assert (prod["memorySize"], prod["reservedConcurrentExecutions"]) == (512, 50)
    assert (
        prod_run.one("aws:secretsmanager/secret:Secret", "api-key-secret").inputs[
            "recoveryWindowInDays"
        ]
        == 30
    )
    for run, days in ((dev_run, 14), (prod_run, 365)):
        groups = [g for g in run.of_type(T_LOG_GROUP) if g.name.startswith("api-")]
        # The function's, access, execution and WAF logs, and the key rotation function's.
        assert len(groups) == 5
        assert {g.inputs["retentionInDays"] for g in groups} == {days}


def test_program_ships_the_reproducible_package_a4(dev_run):
    function = dev_run.one(T_FUNCTION, "api-function").inputs
    package = build_api_package()
    assert function["sourceCodeHash"] == package.sha256_base64
    assert function["code"].path == "build/lambda/api.zip"


def test_program_passes_the_data_tier_endpoints_and_secret_arns_a4(dev_run):
    variables = dev_run.one(T_FUNCTION, "api-function").inputs["environment"]["variables"]
    cluster = dev_run.one("aws:rds/cluster:Cluster")
    group = dev_run.one("aws:elasticache/replicationGroup:ReplicationGroup")
    stream = dev_run.one("aws:kinesis/stream:Stream")
    assert variables["DB_HOST"] == cluster.state["endpoint"]
    assert variables["DB_PORT"] == "5432"
    assert variables["DB_IAM_USER"] == "media_api"
    assert "DB_SECRET_ARN" not in variables  # only the migration function reads the master
    assert variables["REDIS_HOST"] == group.state["primaryEndpointAddress"]
    assert variables["REDIS_TLS"] == "true"
    assert (
        variables["REDIS_AUTH_SECRET_ARN"]
        == dev_run.one("aws:secretsmanager/secret:Secret", "cache-auth-secret").state["arn"]
    )
    assert variables["STREAM_NAME"] == stream.inputs["name"]


def test_program_lets_the_api_reach_the_database_and_cache_only_on_their_ports_n3_a4(dev_run):
    api_sg = dev_run.named("api-sg").id
    ingress = [
        r.inputs
        for r in dev_run.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
        if r.inputs.get("referencedSecurityGroupId") == api_sg
    ]
    targets = {r.id: r.name for r in [dev_run.named("database-sg"), dev_run.named("cache-sg")]}
    assert sorted((targets[i["securityGroupId"]], i["fromPort"], i["toPort"]) for i in ingress) == [
        ("cache-sg", 6379, 6379),
        ("database-sg", 5432, 5432),
    ]
    egress = sorted(
        (r.inputs.get("referencedSecurityGroupId") or r.inputs["cidrIpv4"], r.inputs["fromPort"])
        for r in dev_run.of_type("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")
        if r.inputs["securityGroupId"] == api_sg
    )
    assert egress == sorted(
        [
            ("0.0.0.0/0", 443),
            (dev_run.named("database-sg").id, 5432),
            (dev_run.named("cache-sg").id, 6379),
        ]
    )


def test_program_role_connects_as_its_db_user_reads_the_cache_secret_and_writes_the_stream_d6(
    dev_run,
):
    role = dev_run.one("aws:iam/role:Role", "api-role")
    function = dev_run.one(T_FUNCTION, "api-function")
    for name in ("api-db-connect", "api-cache-secret", "api-stream-write", "api-runtime-policy"):
        policy = dev_run.named(name)
        assert policy.inputs["role"] == role.id
        assert policy.urn in function.dependencies
    cluster = dev_run.one("aws:rds/cluster:Cluster").state
    assert statements(dev_run.named("api-db-connect").inputs["policy"]) == {
        "ConnectAsMediaApi": {
            "Sid": "ConnectAsMediaApi",
            "Effect": "Allow",
            "Action": ["rds-db:connect"],
            "Resource": [
                f"arn:aws:rds-db:eu-central-1:{ACCOUNT_ID}:dbuser:"
                f"{cluster['clusterResourceId']}/media_api"
            ],
        }
    }
    assert not any(r.name == "api-db-secret" for r in dev_run.resources)
    # The function starts only once the schema and its role exist.
    assert (
        dev_run.one("aws:lambda/invocation:Invocation", "schema-run").urn in function.dependencies
    )
    stream_arn = dev_run.one("aws:kinesis/stream:Stream").state["arn"]
    write = statements(dev_run.named("api-stream-write").inputs["policy"])
    assert any(stream_arn in s["Resource"] for s in write.values())


@pytest.mark.parametrize("region", PROGRAM_REGIONS)
def test_program_evaluates_in_every_region_without_warnings_g1(region_runs, region):
    run = region_runs["dev", region]
    assert run.warnings == []
    association = run.one("aws:wafv2/webAclAssociation:WebAclAssociation").inputs
    assert association["resourceArn"].startswith(f"arn:aws:apigateway:{region}::/restapis/")
    policy = statements(run.named("api-runtime-policy").inputs["policy"])
    assert (
        policy["DecryptOwnEnvironment"]["Condition"]["StringEquals"]["kms:ViaService"]
        == f"lambda.{region}.amazonaws.com"
    )
    assert run.outputs["apiUrl"].endswith(f".execute-api.{region}.amazonaws.com/v1")


def test_program_with_iam_auth_exports_no_key_a3():
    run = run_stack("dev", {"apiAuth": "IAM"})
    assert run.warnings == []
    assert "apiKeyId" not in run.outputs and "apiKeySecretArn" not in run.outputs
    assert run.outputs["apiId"] == run.one(T_REST_API).id
    assert {m.inputs["authorization"] for m in run.of_type(T_METHOD)} == {"AWS_IAM"}


# -- the account-wide logging role: one owner, the others read it (issue 14, item 3) ---------


def test_a5_exactly_one_stack_file_owns_the_account_logging_role(dev_run, prod_run):
    key = "media-pipeline:apiManageCloudwatchRole"
    owners = [s for s in ("dev", "prod") if stack_config(s)[key] is True]
    assert owners == ["dev"]
    account = "aws:apigateway/account:Account"
    assert [a.name for a in dev_run.of_type(account)] == ["api-account"]
    assert prod_run.of_type(account) == []


def test_a5_a_reading_stack_stops_at_preview_when_the_account_has_no_logging_role():
    with pytest.raises(Exception) as error:
        run_stack("prod", api_logging_role=False)
    assert "this account's API Gateway settings have no CloudWatch logging role" in str(error.value)
    assert "set apiManageCloudwatchRole: true on exactly one stack" in str(error.value)


def test_a5_an_owning_stack_needs_no_role_in_the_account():
    run = run_stack("dev", api_logging_role=False)
    assert (
        run.one("aws:apigateway/account:Account").inputs["cloudwatchRoleArn"]
        == (run.one("aws:iam/role:Role", "api-cloudwatch-role").state["arn"])
    )


# -- API key rotation in the stacks (issue 14, item 7) -----------------------------------------


@pytest.mark.parametrize("fixture", ["dev_run", "prod_run"])
def test_k_both_stacks_rotate_the_key_every_90_days(request, fixture):
    run = request.getfixturevalue(fixture)
    rotation = run.one(T_ROTATION, "api-key-rotation-schedule").inputs
    assert rotation["rotationRules"] == {"automaticallyAfterDays": 90}
    assert rotation["secretId"] == run.named("api-key-secret").state["arn"]
    function = run.one(T_FUNCTION, "api-key-rotation-function").inputs
    assert function["code"].path == "build/lambda/rotation.zip"
    assert function["sourceCodeHash"] == build_rotation_package().sha256_base64


def test_k_prod_reaches_the_management_api_through_its_nat_and_the_rest_through_endpoints(
    prod_run,
):
    """The API Gateway management API has no interface endpoint (`execute-api` only invokes
    private APIs): prod's rotation function, alone in the app tier, gets HTTPS out through
    the NAT gateways besides the endpoints' group; no endpoint is made for it."""
    endpoints = prod_run.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")
    assert not any(e.inputs["serviceName"].endswith(".apigateway") for e in endpoints)
    egress_rules = prod_run.of_type("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")
    group = prod_run.named("api-key-rotation-sg").id
    egress = [r.inputs for r in egress_rules if r.inputs["securityGroupId"] == group]
    anywhere = [(rule["cidrIpv4"], rule["fromPort"]) for rule in egress if rule.get("cidrIpv4")]
    assert anywhere == [("0.0.0.0/0", 443)]
    endpoints_group = prod_run.named("network-endpoints-sg").id
    assert {"referencedSecurityGroupId": endpoints_group, "fromPort": 443} in [
        {k: rule.get(k) for k in ("referencedSecurityGroupId", "fromPort")} for rule in egress
    ]
    worker_group = prod_run.named("worker-sg").id
    assert not any(
        r.inputs.get("cidrIpv4")
        for r in egress_rules
        if r.inputs["securityGroupId"] == worker_group
    )


def test_k_rotation_without_a_nat_is_refused_before_anything_is_made():
    with pytest.raises(Exception) as error:
        run_stack("prod", {"natStrategy": "NONE"})
    assert str(error.value) == (
        "invalid configuration for stack (1 problem(s)):\n"
        '  - natStrategy="NONE": allowed ONE_PER_AZ or SINGLE while apiKeyRotationDays is '
        "above 0 (the API Gateway management API the rotation calls has no interface endpoint)"
    )


def test_k_dev_reaches_the_management_api_through_its_nat(dev_run):
    assert not any(r.name == "network-apigateway-endpoint" for r in dev_run.resources)
    group = dev_run.named("api-key-rotation-sg").id
    egress = [
        r.inputs
        for r in dev_run.of_type("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")
        if r.inputs["securityGroupId"] == group
    ]
    assert [(rule.get("cidrIpv4"), rule["fromPort"]) for rule in egress] == [("0.0.0.0/0", 443)]


def test_k_a_stack_without_rotation_opens_no_way_out_for_it():
    run = run_stack("prod", {"apiKeyRotationDays": "0"})
    assert not any(r.name == "api-key-rotation-sg" for r in run.resources)
    assert not run.of_type(T_ROTATION) or all(
        r.name != "api-key-rotation-schedule" for r in run.of_type(T_ROTATION)
    )
    assert any("apiKeyRotationDays=0" in warning for warning in run.warnings)
