"""`PublicApi`: the REST API in front of the platform (A1-A7).

A regional API Gateway REST API with `/videos` (POST creates a video and opens its presigned
multipart upload, GET lists by status), `/videos/{videoId}` (GET) and the upload's
`/videos/{videoId}/upload/parts` (POST: part URLs), `/upload/complete` (POST: completes it and
requests processing) and `/upload` (DELETE: aborts it) (M1), and `/videos/{videoId}/playback`
(GET: a signed grant for the delivery tier, never cached, M8). The CreateVideo model is the
contract's, narrowed to the stack's upload size and content types. Requests are validated by API
Gateway (a JSON-schema model for the body, declared parameters) before the Lambda backend is
invoked through a proxy integration. Every method requires an API key whose value lives only
in Secrets Manager (or IAM authorisation as the opt-out); throttling is set on the stage and
in the usage plan with a quota; a WAF web ACL (rate limit per IP plus AWS managed rules) sits
on the stage; access logs, execution logs and WAF logs go to encrypted log groups; X-Ray traces
the stage and the function. The Lambda runs in the private app subnets with its own security
group; consumers of other tiers let it in with their `allow_from(api.security_group)`.
The routes are data in `components.api_routes`; the web ACL is built by `components.waf`.

The API key rotates (issue 14, item 7): a Secrets Manager rotation function of its own
(`services/rotation/api_key.py`, in the app subnets) issues a new key into the usage plan
every `apiKeyRotationDays` and retires the key before the previous one, so each key works
for two rotation periods; the first key, the one this component creates, is disabled rather
than deleted when it retires, and its `enabled` flag is the rotation's from then on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from components.api_routes import (
    RESOURCES,
    ROUTES,
    VALIDATORS,
    ApiAuth,
    Route,
    api_definition,
    method_authorization,
    redeploy_hash,
    request_models,
)
from components.aws_limits import API_CACHE_SIZES_GB
from components.connections import DataPlane, db_ssl_problems
from components.delivery import PlaybackTarget
from components.firewall import RoleSecurityGroup
from components.functions import GrantFn, VpcFunctionArgs, app_function_args, vpc_function
from components.iam import Grant, attach_grants
from components.kms import AwsContext
from components.logs import encrypted_log_group, retention_problems
from components.media_storage import UploadTarget
from components.naming import NameKind, name_tag
from components.observability import metric_alarm
from components.placement import AppPlacement, NetworkGrant
from components.rotation import (
    ROTATION_DAYS_RANGE,
    SecretRotationArgs,
    rotation_function,
)
from components.secrets import stored_secret
from components.tunables import Tunables, tunable
from components.waf import WAF_MAX_RATE_LIMIT, WAF_MIN_RATE_LIMIT, WebAclArgs, web_acl
from services.contract import (
    API_DB_USER,
    API_KEY_LENGTH,
    API_KEY_ROTATION_HANDLER,
    LOG_LEVELS,
    EnvVar,
)

HANDLER = "services.api.handler.handler"
API_STEM = "api"
"""The API function's name stem: `function_role_arn(ctx, namer, API_STEM)` is its role's ARN,
which the signing key's policy names before this component exists (it is built after)."""
# API Gateway ends every integration call after 29 s; the function must answer before.
INTEGRATION_TIMEOUT_SECONDS = 29
QUOTA_PERIODS = ("DAY", "WEEK", "MONTH")
STAGE_CACHE_TTL_SECONDS = 60
_STAGE_NAME = re.compile(r"^[A-Za-z0-9_]{1,128}$")

# One JSON object per request; identifies the caller by key id and IP, never the key value.
ACCESS_LOG_FIELDS = {
    "requestId": "$context.requestId",
    "extendedRequestId": "$context.extendedRequestId",
    "ip": "$context.identity.sourceIp",
    "caller": "$context.identity.caller",
    "user": "$context.identity.user",
    "requestTime": "$context.requestTime",
    "httpMethod": "$context.httpMethod",
    "resourcePath": "$context.resourcePath",
    "status": "$context.status",
    "protocol": "$context.protocol",
    "responseLength": "$context.responseLength",
    "integrationLatency": "$context.integrationLatency",
    "responseLatency": "$context.responseLatency",
    "apiKeyId": "$context.identity.apiKeyId",
    "wafResponseCode": "$context.wafResponseCode",
    "xrayTraceId": "$context.xrayTraceId",
    "errorMessage": "$context.error.message",
}
ACCESS_LOG_FORMAT = json.dumps(ACCESS_LOG_FIELDS, separators=(",", ":"))


# The id of the one API Gateway account-settings resource per region.
API_GATEWAY_ACCOUNT_ID = "api-gateway-account"

KEY_ROTATION_STEM = "api-key-rotation"
# A step makes a handful of API Gateway and Secrets Manager calls, each bounded to 3 attempts
# of at most 13 s by the function's own clients.
KEY_ROTATION_TIMEOUT_SECONDS = 60


def _logging_role_or_fail(role_arn: str | None) -> str:
    if not role_arn:
        key = PublicApiSettings.key_of("manage_cloudwatch_role")
        raise ValueError(
            "PublicApi: this account's API Gateway settings have no CloudWatch logging role, "
            f"which stage logging needs; set {key}: true on exactly one stack "
            "of this account and region (it owns the setting), deploy it first, or set the "
            "role once by hand"
        )
    return role_arn


@dataclass(frozen=True, kw_only=True)
class ApiBackend(DataPlane):
    """What the handler connects to, plus its own settings."""

    db_ssl: str = "verify-full"
    """`DB_SSL` for the handler: `verify-full` (default: the server's certificate checked
    against the RDS CA bundle shipped in the archive, so no interceptor in the VPC can take
    the 15-minute IAM tokens) or `require` (encrypted, unchecked)."""
    db_user: str = API_DB_USER
    """Database role the handler logs in as with IAM tokens (created by the migrations;
    the function's role gets `rds-db:connect` for it); default `media_api`."""
    cache_ttl_seconds: int = 300
    """Redis cache-aside TTL; default 300 s."""
    log_level: str = "INFO"
    """Handler log level; default INFO."""


@dataclass(frozen=True, kw_only=True)
class PublicApiSettings(Tunables):
    """The API's tunables (A2, A3, A6)."""

    TIER = "api"

    auth: ApiAuth = tunable(
        "apiAuth",
        ApiAuth.API_KEY,
        "Method authorisation: API_KEY (a key on every method, usage plan, quota) or IAM "
        "(SigV4 on every method; no key and no usage plan) (A3).",
        choices=ApiAuth,
    )
    throttle_rate_limit: float = tunable(
        "apiThrottleRateLimit",
        50,
        "Steady requests/s for the stage and usage plan (A2).",
        kind="number",
        range=(1, 10_000),
    )
    throttle_burst_limit: int = tunable(
        "apiThrottleBurstLimit",
        100,
        "Burst requests for the stage and usage plan (A2).",
        range=(1, 5000),
    )
    quota_limit: int = tunable(
        "apiQuotaLimit",
        100_000,
        "Requests per quota period per API key (A2).",
        range=(1, 2_000_000_000),
    )
    quota_period: str = tunable(
        "apiQuotaPeriod", "MONTH", "Quota period (A2).", choices=QUOTA_PERIODS
    )
    waf_rate_limit: int = tunable(
        "apiWafRateLimit",
        2000,
        "WAF requests per 5 minutes per client IP (A6).",
        range=(WAF_MIN_RATE_LIMIT, WAF_MAX_RATE_LIMIT),
    )
    # 1000 is an account's default concurrency; 0 would stop the function.
    reserved_concurrency: int = tunable(
        "apiReservedConcurrency",
        -1,
        "Reserved concurrency of the API function; -1 leaves it unreserved.",
        range=(1, 1000),
        also=(-1,),
    )
    memory_mb: int = tunable(
        "apiLambdaMemoryMb", 256, "API function memory in MiB.", range=(128, 10240)
    )
    cache_size_gb: str = tunable(
        "apiCacheSizeGb",
        "",
        "Stage cache size in GB (encrypted); empty for no cache.",
        check=lambda size: size in ("", *API_CACHE_SIZES_GB),
        allowed="empty (no cache) or one of " + ", ".join(API_CACHE_SIZES_GB),
    )
    manage_cloudwatch_role: bool = tunable(
        "apiManageCloudwatchRole",
        False,
        "Create the account-wide API Gateway CloudWatch Logs role (retained on destroy; one "
        "stack per account). Off: the account must already have one, or stages with logging "
        "fail to deploy.",
    )
    alarm_5xx_threshold: int = tunable(
        "alarmApi5xxThreshold",
        5,
        "API 5xx responses per 5 minutes that alarm (O2).",
        range=(1, 100_000),
    )
    # Below 50 ms a VPC function's p99 is noise; above 29 s API Gateway has already given up.
    alarm_latency_p99_ms: int = tunable(
        "alarmApiLatencyP99Ms",
        3000,
        "API p99 latency (ms) that alarms (O2).",
        range=(50, INTEGRATION_TIMEOUT_SECONDS * 1000),
    )
    # 90 days: the credential age content-security audits commonly accept (MPA best practices
    # ask passwords to change at least that often), without asking clients outside the
    # platform, which must re-read the secret once per period, to do so monthly.
    key_rotation_days: int = tunable(
        "apiKeyRotationDays",
        90,
        "Days between API key rotations (A3); each key works until the rotation after the one "
        "that replaced it, so clients re-read the key's secret at least once per period. 0: "
        "never rotates (warned in the preview). Ignored with apiAuth IAM.",
        range=ROTATION_DAYS_RANGE,
        also=(0,),
    )

    @property
    def rotates_key(self) -> bool:
        """Whether the stack has an API key and rotates it."""
        return self.auth is ApiAuth.API_KEY and self.key_rotation_days > 0


@dataclass(frozen=True, kw_only=True)
class KeyRotationCode:
    """The API key's rotation function: its code and the flows of its own security group."""

    code_path: str
    """Zip built by `components.packaging.build_rotation_package` (required)."""
    code_sha256: str
    """Base64 SHA-256 of that zip (required)."""
    network_grants: Sequence[NetworkGrant] = ()
    """Called with the function's security group before it exists: HTTPS to Secrets Manager
    (the network's `grant_aws_apis`) and to the API Gateway management API, which has no
    interface endpoint (`execute-api` only invokes private APIs), so it goes out through the
    NAT gateways (`grant_public_aws_api`). Default none."""


@dataclass(frozen=True, kw_only=True)
class PublicApiArgs(PublicApiSettings, AppPlacement):
    """Inputs of `PublicApi`: its settings, its placement and what the stack wires in."""

    code_path: str
    """Zip built by `components.packaging` (required)."""
    code_sha256: str
    """Base64 SHA-256 of that zip; a change redeploys the code (required)."""
    backend: ApiBackend
    """Endpoints and secret ARNs passed to the handler (required)."""
    uploads: UploadTarget
    """The ingest bucket, the upload limits (in the environment and the CreateVideo model)
    and the grant for presigned uploads (required)."""
    playback: PlaybackTarget | None = None
    """The delivery tier's playback domain, signing key and grant lifetime, and the grant to
    read the signing key (M8). Default None: `GET /videos/{id}/playback` answers 503."""
    key_rotation: KeyRotationCode | None = None
    """The key's rotation function; required when the key rotates (`rotates_key`). Default
    None."""
    logs_key_arn: pulumi.Input[str]
    """CMK of every log group here (required)."""
    secrets_key_arn: pulumi.Input[str]
    """Secrets Manager CMK: the API key secret and the function's environment (required)."""
    alarm_topic_arn: pulumi.Input[str]
    """Topic the alarms notify (required)."""
    access_grants: Mapping[str, GrantFn] = field(default_factory=dict)
    """label -> grant helper of another tier, called with (resource name, role) — e.g.
    `stream.grant_write`; the function waits for every policy returned. Default none."""
    start_after: Sequence[pulumi.Resource] = ()
    """What the function waits for, e.g. the schema migration. Default none."""
    timeout_seconds: int = 15
    """Function timeout, below API Gateway's 29 s; default 15 s."""
    stage_name: str = "v1"
    """Stage name; default `v1`."""
    log_retention_days: int = 30
    """Retention of every log group here; default 30."""
    protect_data: bool = False
    """False (default): the API key secret is deleted at once on destroy. True: it has a
    30-day recovery window (G3)."""

    def validate(self) -> None:
        problems = [
            *self.tunable_problems(),
            *self._network_problems(),
            *self._function_problems(),
            *self._stage_problems(),
            *self._rotation_problems(),
        ]
        if problems:
            raise ValueError("PublicApiArgs: " + "; ".join(problems))

    def _network_problems(self) -> list[str]:
        if len(self.subnet_ids) < 2:
            return [
                f"subnet_ids: {len(self.subnet_ids)} given, allowed at least 2 (one per AZ, G7)"
            ]
        return []

    def _function_problems(self) -> list[str]:
        problems = []
        if not 1 <= self.timeout_seconds < INTEGRATION_TIMEOUT_SECONDS:
            problems.append(
                f"timeout_seconds={self.timeout_seconds}: allowed "
                f"1..{INTEGRATION_TIMEOUT_SECONDS - 1} (API Gateway gives up "
                f"after {INTEGRATION_TIMEOUT_SECONDS} s)"
            )
        if not self.code_path or not self.code_sha256:
            problems.append(
                "code_path/code_sha256: allowed a built package "
                "(components.packaging.build_api_package)"
            )
        backend = self.backend
        problems += db_ssl_problems("backend.db_ssl", backend.db_ssl)
        if backend.log_level not in LOG_LEVELS:
            problems.append(
                f"backend.log_level={backend.log_level!r}: allowed one of " + ", ".join(LOG_LEVELS)
            )
        if not 1 <= backend.cache_ttl_seconds <= 604_800:
            problems.append(
                f"backend.cache_ttl_seconds={backend.cache_ttl_seconds}: allowed 1..604800"
            )
        return problems

    def _rotation_problems(self) -> list[str]:
        code = self.key_rotation
        if not self.rotates_key or (code and code.code_path and code.code_sha256):
            return []
        return [
            f"key_rotation: required when key_rotation_days={self.key_rotation_days} "
            "(components.packaging.build_rotation_package, with the network's grants)"
        ]

    def _stage_problems(self) -> list[str]:
        problems = []
        if not _STAGE_NAME.match(self.stage_name):
            problems.append(f"stage_name={self.stage_name!r}: allowed 1-128 letters, digits, _")
        problems += retention_problems("log_retention_days", self.log_retention_days)
        return problems


def key_management_grants(ctx: AwsContext, usage_plan_id: pulumi.Input[str]) -> list[Grant]:
    """What the key's rotation function does in API Gateway, on exactly the stack's usage plan
    and the region's API keys (API Gateway's IAM: the HTTP verb on the resource's path)."""

    def arn(*path: pulumi.Input[str]) -> pulumi.Output[str]:
        return pulumi.Output.concat("arn:", ctx.partition, ":apigateway:", ctx.region, "::", *path)

    keys, each_key = arn("/apikeys"), arn("/apikeys/*")
    plan = arn("/usageplans/", usage_plan_id)
    members, each_member = (
        arn("/usageplans/", usage_plan_id, "/keys"),
        arn("/usageplans/", usage_plan_id, "/keys/*"),
    )
    # A key created with tags may also be authorised as tagging it; the tags resource names
    # the (URL-encoded) key ARN, so this admits tagging API keys and nothing else.
    key_tags = arn("/tags/*apikeys*")
    return [
        Grant(
            "ReadKeysAndThePlan", ("apigateway:GET",), (keys, each_key, plan, members, each_member)
        ),
        Grant("IssueKeysIntoThePlan", ("apigateway:POST",), (keys, members, key_tags)),
        Grant("DisableRetiredKeys", ("apigateway:PATCH",), (each_key,)),
        Grant("DeleteRetiredKeys", ("apigateway:DELETE",), (each_key, each_member)),
    ]


class PublicApi(pulumi.ComponentResource):
    """Regional REST API with keys, throttling, validation, WAF, logs and a VPC Lambda."""

    rest_api_id: pulumi.Output[str]
    stage_name: pulumi.Output[str]
    invoke_url: pulumi.Output[str]
    videos_url: pulumi.Output[str]
    api_key_id: pulumi.Output[str] | None
    api_key_secret_arn: pulumi.Output[str] | None
    key_rotation_function_name: pulumi.Output[str] | None
    security_group: RoleSecurityGroup
    function_name: pulumi.Output[str]
    web_acl_arn: pulumi.Output[str]

    def __init__(self, name: str, args: PublicApiArgs, opts: pulumi.ResourceOptions | None = None):
        args.validate()
        super().__init__("media:api:PublicApi", name, None, opts)
        self._name = name
        self._args = args
        self._child = pulumi.ResourceOptions(parent=self)
        namer = args.namer
        self.security_group = RoleSecurityGroup(
            f"{name}-sg",
            role="api",
            description="API Lambda backend",
            vpc_id=args.vpc_id,
            namer=namer,
            parent=self,
        )
        # Secrets Manager, Kinesis, X-Ray and KMS over HTTPS (via NAT or the VPC endpoints).
        self.function = self._function()
        self.function_name = self.function.name
        self.rest_api = aws.apigateway.RestApi(
            f"{name}-rest-api",
            name=namer.name("api"),
            description="Video metadata and processing requests",
            endpoint_configuration={"types": "REGIONAL"},
            api_key_source="HEADER",
            tags=name_tag(namer.name("api")),
            opts=self._child,
        )
        self.rest_api_id = self.rest_api.id
        deployment = self._methods_and_deployment()
        account = self._cloudwatch_account() if args.manage_cloudwatch_role else None
        if account is None:
            self._require_account_logging_role()
        self.stage = self._stage(deployment, account)
        self.stage_name = self.stage.stage_name
        self.invoke_url = self.stage.invoke_url
        self.videos_url = pulumi.Output.concat(self.stage.invoke_url, "/videos")
        self._method_settings(account)
        self.key_rotation_function_name = None
        self.api_key_id, self.api_key_secret_arn = self._access_control()
        self.web_acl_arn = self._firewall()
        self._alarms()
        self.register_outputs(
            {
                "rest_api_id": self.rest_api_id,
                "stage_name": self.stage_name,
                "invoke_url": self.invoke_url,
                "api_key_id": self.api_key_id,
                "api_key_secret_arn": self.api_key_secret_arn,
                "key_rotation_function_name": self.key_rotation_function_name,
                "security_group_id": self.security_group.id,
                "function_name": self.function_name,
                "web_acl_arn": self.web_acl_arn,
            }
        )

    # -- Lambda backend (A4) ---------------------------------------------------------------

    def _function(self) -> aws.lambda_.Function:
        args = self._args
        backend = vpc_function(
            self._name,
            app_function_args(
                args,
                self.security_group,
                start_after=args.start_after,
                stem=API_STEM,
                description="Video API backend (API Gateway proxy integration)",
                handler=HANDLER,
                environment=self._environment(),
                log_level=args.backend.log_level,
                memory_mb=args.memory_mb,
                timeout_seconds=args.timeout_seconds,
                reserved_concurrency=args.reserved_concurrency,
                access_grants={**args.access_grants, **self._media_grants()},
            ),
            parent=self,
        )
        self.role = backend.role
        return backend.function

    def _media_grants(self) -> dict[str, GrantFn]:
        grants: dict[str, GrantFn] = {"uploads": self._args.uploads.grant_upload}
        if self._args.playback is not None:
            grants["playback-signing"] = self._args.playback.grant_signing
        return grants

    def _environment(self) -> dict[str, pulumi.Input[str]]:
        backend, uploads = self._args.backend, self._args.uploads
        variables: dict[str, pulumi.Input[str]] = {
            **backend.environment(backend.db_ssl, backend.db_user),
            EnvVar.CACHE_TTL_SECONDS: str(backend.cache_ttl_seconds),
            EnvVar.LOG_LEVEL: backend.log_level,
            EnvVar.INGEST_BUCKET: uploads.ingest_bucket,
            EnvVar.UPLOAD_MAX_BYTES: str(uploads.max_bytes),
            EnvVar.UPLOAD_CONTENT_TYPES: ",".join(uploads.content_types),
            EnvVar.UPLOAD_URL_TTL_SECONDS: str(uploads.url_ttl_seconds),
        }
        if backend.redis_auth_secret_arn is not None:
            variables[EnvVar.REDIS_AUTH_SECRET_ARN] = backend.redis_auth_secret_arn
        if (playback := self._args.playback) is not None:
            variables |= {
                EnvVar.PLAYBACK_DOMAIN: playback.domain,
                EnvVar.PLAYBACK_KEY_PAIR_ID: playback.key_pair_id,
                EnvVar.PLAYBACK_SIGNING_SECRET_ARN: playback.signing_secret_arn,
                EnvVar.PLAYBACK_GRANT_SECONDS: str(playback.grant_seconds),
            }
        return variables

    # -- resources, validation, methods, deployment (A1, A5, A7) ---------------------------

    def _methods_and_deployment(self) -> aws.apigateway.Deployment:
        args, name = self._args, self._name
        resource_ids = self._resources()
        validators = self._validators()
        definitions = request_models(args.uploads.max_bytes, args.uploads.content_types)
        models = self._models(definitions)
        snapshot: list[pulumi.Resource] = []
        for route in ROUTES:
            snapshot += self._route(
                route, resource_ids[route.path], validators[route.validator], models
            )
        trigger = self.function.invoke_arn.apply(
            lambda uri: redeploy_hash(api_definition(args.auth, definitions), uri)
        )
        # A deployment snapshots the API when created; the trigger replaces it on any change.
        return aws.apigateway.Deployment(
            f"{name}-deployment",
            rest_api=self.rest_api.id,
            description="Video API",
            triggers={"redeploy": trigger},
            opts=pulumi.ResourceOptions(parent=self, depends_on=snapshot),
        )

    def _resources(self) -> dict[str, pulumi.Input[str]]:
        """Resource path -> id, parents before children."""
        rest_api = self.rest_api
        resource_ids: dict[str, pulumi.Input[str]] = {"/": rest_api.root_resource_id}
        for path, (part, parent) in RESOURCES.items():
            resource = aws.apigateway.Resource(
                f"{self._name}{path.replace('/', '-').replace('{', '').replace('}', '').lower()}",
                rest_api=rest_api.id,
                parent_id=resource_ids[parent],
                path_part=part,
                opts=self._child,
            )
            resource_ids[path] = resource.id
        return resource_ids

    def _validators(self) -> dict[str, aws.apigateway.RequestValidator]:
        return {
            key: aws.apigateway.RequestValidator(
                f"{self._name}-validate-{key}",
                rest_api=self.rest_api.id,
                name=self._args.namer.name(f"api-{key}"),
                validate_request_body=body,
                validate_request_parameters=params,
                opts=self._child,
            )
            for key, (body, params) in VALIDATORS.items()
        }

    def _models(self, definitions: Mapping[str, Any]) -> dict[str, aws.apigateway.Model]:
        """One model per request body; the logical names are the model names in kebab case."""
        return {
            model: aws.apigateway.Model(
                f"{self._name}-{re.sub(r'(?<!^)(?=[A-Z])', '-', model).lower()}-model",
                rest_api=self.rest_api.id,
                name=model,
                description=f"{model} request body",
                content_type="application/json",
                schema=json.dumps(schema, sort_keys=True),
                opts=self._child,
            )
            for model, schema in definitions.items()
        }

    def _route(
        self,
        route: Route,
        resource_id: pulumi.Input[str],
        validator: aws.apigateway.RequestValidator,
        models: Mapping[str, aws.apigateway.Model],
    ) -> list[pulumi.Resource]:
        """The route's method, its Lambda proxy integration and the permission to invoke."""
        args, name, rest_api = self._args, self._name, self.rest_api
        method = aws.apigateway.Method(
            f"{name}-{route.key}-method",
            rest_api=rest_api.id,
            resource_id=resource_id,
            http_method=route.http_method,
            **method_authorization(args.auth),
            request_validator_id=validator.id,
            request_parameters=route.request_parameters() or None,
            request_models=(
                {"application/json": models[route.body_model].name} if route.body_model else None
            ),
            opts=self._child,
        )
        integration = aws.apigateway.Integration(
            f"{name}-{route.key}-integration",
            rest_api=rest_api.id,
            resource_id=resource_id,
            http_method=method.http_method,
            type="AWS_PROXY",
            # Lambda is always invoked with POST, whatever the client's method.
            integration_http_method="POST",
            uri=self.function.invoke_arn,
            cache_key_parameters=route.cache_key_parameters() or None,
            opts=self._child,
        )
        aws.lambda_.Permission(
            f"{name}-{route.key}-invoke",
            action="lambda:InvokeFunction",
            function=self.function.name,
            principal="apigateway.amazonaws.com",
            source_arn=pulumi.Output.concat(
                rest_api.execution_arn, "/", args.stage_name, "/", route.arn_path()
            ),
            opts=self._child,
        )
        return [method, integration]

    # -- stage, logging, throttling (A2, A5) -----------------------------------------------

    def _require_account_logging_role(self) -> None:
        """Read the region's API Gateway settings that another stack (or the account's owner)
        manages: without a logging role the stage's access and execution logs fail to deploy,
        so the preview stops here with what to do instead of at the stage, minutes into `up`."""
        settings = aws.apigateway.Account.get(
            f"{self._name}-account-settings",
            API_GATEWAY_ACCOUNT_ID,
            opts=pulumi.ResourceOptions(parent=self),
        )
        settings.cloudwatch_role_arn.apply(_logging_role_or_fail)

    def _cloudwatch_account(self) -> aws.apigateway.Account:
        """The region's API Gateway logging role: an account-wide singleton, kept on destroy
        because v7 resets it on delete, which would break every other API's logging."""
        args, name = self._args, self._name
        ctx = args.context
        pulumi.log.info(
            "PublicApi: manage_cloudwatch_role=True sets the account-wide API "
            "Gateway CloudWatch role; it and its role are retained on destroy",
            resource=self,
        )
        keep = pulumi.ResourceOptions(parent=self, retain_on_delete=True)
        # A prefix, not a fixed name: the role is retained on destroy, so a later `up` of the
        # same stack must be free to create a new one (IAM allows at most 38 chars here).
        role_name = args.namer.name("apigw-cw", NameKind.IAM_ROLE) + "-"
        if len(role_name) > 38:
            raise ValueError(f"name prefix '{role_name}' exceeds IAM's 38 characters")
        # The trust AWS documents for this role: API Gateway assumes it for every API of the
        # account and region.
        role = aws.iam.Role(
            f"{name}-cloudwatch-role",
            name_prefix=role_name,
            assume_role_policy=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "apigateway.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                }
            ),
            tags=name_tag(role_name.rstrip("-")),
            opts=keep,
        )
        attachment = aws.iam.RolePolicyAttachment(
            f"{name}-cloudwatch-policy",
            role=role.name,
            policy_arn=pulumi.Output.concat(
                "arn:",
                ctx.partition,
                ":iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs",
            ),
            opts=keep,
        )
        return aws.apigateway.Account(
            f"{name}-account",
            cloudwatch_role_arn=role.arn,
            opts=pulumi.ResourceOptions(
                parent=self, retain_on_delete=True, depends_on=[attachment]
            ),
        )

    def _stage(
        self, deployment: aws.apigateway.Deployment, account: aws.apigateway.Account | None
    ) -> aws.apigateway.Stage:
        args, name = self._args, self._name
        retention, key = args.log_retention_days, args.logs_key_arn
        execution_logs = encrypted_log_group(
            f"{name}-execution-logs",
            name=pulumi.Output.concat(
                "API-Gateway-Execution-Logs_", self.rest_api.id, "/", args.stage_name
            ),
            kms_key_arn=key,
            retention_days=retention,
            parent=self,
        )
        access_logs = encrypted_log_group(
            f"{name}-access-logs",
            name=args.namer.path("/apigateway/access-logs/", "api"),
            kms_key_arn=key,
            retention_days=retention,
            parent=self,
        )
        cache = (
            {"cache_cluster_enabled": True, "cache_cluster_size": args.cache_size_gb}
            if args.cache_size_gb
            else {}
        )
        return aws.apigateway.Stage(
            f"{name}-stage",
            rest_api=self.rest_api.id,
            deployment=deployment.id,
            stage_name=args.stage_name,
            description="Video API",
            access_log_settings={"destination_arn": access_logs.arn, "format": ACCESS_LOG_FORMAT},
            xray_tracing_enabled=True,
            **cache,
            tags=name_tag(args.namer.name(f"api-{args.stage_name.lower()}")),
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[execution_logs, *([account] if account else [])]
            ),
        )

    def _method_settings(self, account: aws.apigateway.Account | None) -> None:
        args = self._args
        cached = bool(args.cache_size_gb)
        settings: dict[str, Any] = {
            "throttling_rate_limit": args.throttle_rate_limit,
            "throttling_burst_limit": args.throttle_burst_limit,
            "metrics_enabled": True,
            "logging_level": "INFO",
            # Full request/response bodies would put titles and paths of unreleased films
            # (and headers) into the logs.
            "data_trace_enabled": False,
            "caching_enabled": cached,
        }
        if cached:
            settings.update(
                {
                    "cache_data_encrypted": True,
                    "cache_ttl_in_seconds": STAGE_CACHE_TTL_SECONDS,
                    # Clients may not flush the shared cache with Cache-Control: max-age=0.
                    "require_authorization_for_cache_control": True,
                    "unauthorized_cache_control_header_strategy": "FAIL_WITH_403",
                }
            )
        options = pulumi.ResourceOptions(parent=self, depends_on=[account] if account else [])
        aws.apigateway.MethodSettings(
            f"{self._name}-method-settings",
            rest_api=self.rest_api.id,
            stage_name=self.stage.stage_name,
            method_path="*/*",
            settings=settings,
            opts=options,
        )
        if not cached:
            return
        # A grant must never be answered from the cache, to another caller or after it expired.
        for route in ROUTES:
            if not route.cacheable:
                aws.apigateway.MethodSettings(
                    f"{self._name}-{route.key}-method-settings",
                    rest_api=self.rest_api.id,
                    stage_name=self.stage.stage_name,
                    method_path=route.method_path(),
                    settings={**settings, "caching_enabled": False},
                    opts=options,
                )

    # -- API key, usage plan (A2, A3) ------------------------------------------------------

    def _access_control(self) -> tuple[pulumi.Output[str] | None, pulumi.Output[str] | None]:
        args, name = self._args, self._name
        if args.auth is ApiAuth.IAM:
            pulumi.log.info(
                "PublicApi: auth=IAM — every method requires SigV4 (AWS_IAM); no API "
                "key or usage plan is created, so per-client quotas do not apply "
                "(stage throttling still does)",
                resource=self,
            )
            return None, None
        key_name = args.namer.name("api-key")
        value = random.RandomPassword(
            f"{name}-key-value",
            length=API_KEY_LENGTH,
            special=False,
            min_upper=4,
            min_lower=4,
            min_numeric=4,
            opts=self._child,
        )
        # Stored as a rotated secret even when the key does not rotate: turning rotation off
        # after rotations must not write the first value back as AWSCURRENT (a disabled key).
        secret, _ = stored_secret(
            f"{name}-key-secret",
            namer=args.namer,
            stem="api-key",
            description=f"Value of the API key {key_name} (x-api-key header)",
            value=value.result,
            kms_key_arn=args.secrets_key_arn,
            protect_data=args.protect_data,
            parent=self,
            rotated=True,
        )
        api_key = aws.apigateway.ApiKey(
            f"{name}-key",
            name=key_name,
            description="Client key of the video API",
            enabled=True,
            value=value.result,
            tags=name_tag(key_name),
            # The rotation disables this key when it retires; `up` must not enable it again.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["enabled"]),
        )
        plan_name = args.namer.name("api-plan")
        throttle = {
            "rate_limit": args.throttle_rate_limit,
            "burst_limit": args.throttle_burst_limit,
        }
        plan = aws.apigateway.UsagePlan(
            f"{name}-usage-plan",
            name=plan_name,
            description="Per-key throttling and quota of the video API",
            # Naming the stage's output makes the plan wait for the stage to exist.
            api_stages=[
                {
                    "api_id": self.rest_api.id,
                    "stage": self.stage.stage_name,
                    "throttles": [
                        {"path": f"{r.path}/{r.http_method}", **throttle} for r in ROUTES
                    ],
                }
            ],
            throttle_settings=throttle,
            quota_settings={"limit": args.quota_limit, "period": args.quota_period},
            tags=name_tag(plan_name),
            opts=self._child,
        )
        aws.apigateway.UsagePlanKey(
            f"{name}-usage-plan-key",
            key_id=api_key.id,
            key_type="API_KEY",
            usage_plan_id=plan.id,
            opts=self._child,
        )
        self._key_rotation(secret, api_key, plan)
        return api_key.id, secret.arn

    # -- API key rotation (A3, issue 14 item 7) ----------------------------------------------

    def _key_rotation(
        self,
        secret: aws.secretsmanager.Secret,
        api_key: aws.apigateway.ApiKey,
        plan: aws.apigateway.UsagePlan,
    ) -> None:
        args, name = self._args, self._name
        if not args.rotates_key:
            pulumi.log.warn(
                f"PublicApi: {PublicApiSettings.key_of('key_rotation_days')}=0 — the API key "
                "never rotates: a leaked key works until someone rotates the secret by hand",
                resource=self,
            )
            return
        environment: dict[str, pulumi.Input[str]] = {
            EnvVar.API_KEY_SECRET_ARN: secret.arn,
            EnvVar.API_KEY_NAME: api_key.name,
            EnvVar.API_KEY_ID: api_key.id,
            EnvVar.API_USAGE_PLAN_ID: plan.id,
            EnvVar.LOG_LEVEL: args.backend.log_level,
        }
        rotator = rotation_function(
            f"{name}-key-rotation",
            SecretRotationArgs(
                secret_arn=secret.arn,
                secret_key_arn=args.secrets_key_arn,
                function=self._key_rotation_function(environment, plan),
                rotation_days=args.key_rotation_days,
                alarm_topic_arn=args.alarm_topic_arn,
            ),
            parent=self,
        )
        self.key_rotation_function_name = rotator.function.name
        # `pulumi destroy` knows only the first key: on delete, this invocation has the
        # function delete the keys the rotations made (create and update do nothing).
        aws.lambda_.Invocation(
            f"{name}-key-rotation-cleanup",
            function_name=rotator.function.name,
            input=json.dumps({"purpose": "delete the rotation-made API keys on destroy"}),
            lifecycle_scope="CRUD",
            opts=self._child,
        )

    def _key_rotation_function(
        self, environment: Mapping[str, pulumi.Input[str]], plan: aws.apigateway.UsagePlan
    ) -> VpcFunctionArgs:
        args = self._args
        code = args.key_rotation
        assert code is not None  # validated: required when the key rotates
        group = RoleSecurityGroup(
            f"{self._name}-key-rotation-sg",
            role=KEY_ROTATION_STEM,
            description="API key rotation function",
            vpc_id=args.vpc_id,
            namer=args.namer,
            parent=self,
        )
        for grant in code.network_grants:
            grant(group)

        def grant_key_management(resource_name: str, role: aws.iam.Role) -> aws.iam.RolePolicy:
            grants = key_management_grants(args.context, plan.id)
            return attach_grants(resource_name, role, grants, parent=self)

        return VpcFunctionArgs(
            stem=KEY_ROTATION_STEM,
            description="Rotates the API key (Secrets Manager rotation function)",
            handler=API_KEY_ROTATION_HANDLER,
            code_path=code.code_path,
            code_sha256=code.code_sha256,
            subnet_ids=args.subnet_ids,
            security_group=group,
            environment=environment,
            namer=args.namer,
            context=args.context,
            logs_key_arn=args.logs_key_arn,
            environment_key_arn=args.secrets_key_arn,
            log_retention_days=args.log_retention_days,
            log_level=args.backend.log_level,
            timeout_seconds=KEY_ROTATION_TIMEOUT_SECONDS,
            access_grants={"api-keys": grant_key_management},
            # Its rules, routes and endpoints exist before Secrets Manager first invokes it.
            start_after=[*group.access_rules, *args.placement_ready],
        )

    # -- WAF (A6) --------------------------------------------------------------------------

    def _firewall(self) -> pulumi.Output[str]:
        args = self._args
        acl = web_acl(
            self._name,
            WebAclArgs(
                namer=args.namer,
                context=args.context,
                stem="api",
                description="Video API: rate limit per IP and AWS managed rules",
                # Stage.arn has the form WAF requires and makes the association wait for the stage.
                resource_arn=self.stage.arn,
                rate_limit=args.waf_rate_limit,
                logs_key_arn=args.logs_key_arn,
                log_retention_days=args.log_retention_days,
            ),
            parent=self,
        )
        return acl.arn

    # -- alarms (O2) -----------------------------------------------------------------------

    def _alarms(self) -> None:
        args, name, namer = self._args, self._name, self._args.namer
        api = {"ApiName": self.rest_api.name, "Stage": self.stage.stage_name}
        function = {"FunctionName": self.function.name}
        alarms = (
            (
                "5xx",
                "AWS/ApiGateway",
                "5XXError",
                api,
                "Sum",
                args.alarm_5xx_threshold,
                "API answered with server errors",
            ),
            (
                "latency-p99",
                "AWS/ApiGateway",
                "Latency",
                api,
                "p99",
                args.alarm_latency_p99_ms,
                "API p99 latency is high",
            ),
            (
                "lambda-errors",
                "AWS/Lambda",
                "Errors",
                function,
                "Sum",
                0,
                "API function invocations failed",
            ),
            (
                "lambda-throttles",
                "AWS/Lambda",
                "Throttles",
                function,
                "Sum",
                0,
                "API function invocations were throttled",
            ),
        )
        for suffix, namespace, metric, dimensions, statistic, threshold, text in alarms:
            metric_alarm(
                f"{name}-{suffix}-alarm",
                alarm_name=namer.name(f"api-{suffix}"),
                description=text,
                namespace=namespace,
                metric_name=metric,
                dimensions=dimensions,
                statistic=statistic,
                comparison="GreaterThanThreshold",
                threshold=threshold,
                topic_arn=args.alarm_topic_arn,
                parent=self,
            )
