"""`MediaDistribution`: CloudFront in front of the media bucket, signed playback and key
delivery (M7, M8, M9, K3).

    player ──HTTPS + signed cookies──▶ CloudFront (trusted key group on every behaviour)
        media/*/keys/*, media/*/session ──origin access control (Lambda)──▶ key delivery
        media/*.m3u8 (short TTL), media/* (long TTL) ──origin access control (S3)──▶ media bucket

The signing key pair is generated here (RSA 2048, `pulumi_tls`); its public half is the
distribution's trusted key group and goes to key delivery, its private half lives only in a
Secrets Manager secret that the API function alone reads (`grant_signing`) to sign grants.
Key delivery is a VPC Lambda behind a function URL with IAM auth that only this distribution
may invoke; it reads the content key (K3) and derives each title's key for holders of a valid
grant. Access logs (standard logging v2), the distribution's alarms and their topic, the web
ACL and the viewer certificate live in `CLOUDFRONT_REGION`, as CloudFront requires.

What is built on it elsewhere: the media bucket's and media key's policies admit exactly this
distribution (`MediaStorageArgs.distribution_arn`), and the worker's content-key policy
admits the key-delivery role (`MediaWorkerServiceArgs.content_key_readers`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Self
from urllib.parse import urlparse

import pulumi
import pulumi_aws as aws
import pulumi_tls as tls

from components.aws_limits import CLOUDFRONT_PRICE_CLASSES, CLOUDFRONT_REGION
from components.delivery_policies import (
    CORS_METHODS,
    KEYS_ORIGIN,
    MANAGED_CACHING_DISABLED,
    MEDIA_ORIGIN,
    READ_METHODS,
    GeoRestriction,
    behaviour,
    cors,
    country_codes_ok,
    custom_origin,
    domain_name_ok,
    geo_restriction,
    hosted_zone_ok,
    key_delivery_forwarding,
    ordered_behaviours,
    player_origins_ok,
    security_headers,
    shared_cache_key,
    viewer_certificate,
)
from components.firewall import RoleSecurityGroup
from components.functions import app_function_args, vpc_function
from components.iam import Grant, attach_grants, decrypt_via
from components.kms import (
    EncryptionKey,
    EncryptionKeyArgs,
    cloudwatch_alarms_grant,
    cloudwatch_logs_grant,
)
from components.logs import encrypted_log_group, retention_problems
from components.naming import NameKind, name_tag
from components.observability import AlarmTopic, AlarmTopicArgs, metric_alarm
from components.placement import AppPlacement
from components.protection import Lifecycle
from components.secrets import restrict_reads, stored_secret
from components.tunables import Problem, Tunables, tunable
from components.waf import (
    WAF_MAX_RATE_LIMIT,
    WAF_MIN_RATE_LIMIT,
    WafScope,
    WebAclArgs,
    log_delivery_policy,
    web_acl,
)
from services.contract import (
    DEFAULT_LOG_LEVEL,
    KEYS_HANDLER,
    LOG_LEVELS,
    PLAYBACK_GRANT_SECONDS_DEFAULT,
    PLAYBACK_GRANT_SECONDS_RANGE,
    EnvVar,
)

GrantFn = Callable[[str, aws.iam.Role], aws.iam.RolePolicy]

KEYS_STEM = "keys"
"""Key delivery's name stem: `function_role_arn(ctx, namer, KEYS_STEM)` is its role's ARN, which
the worker's content-key policy names before this component exists (it is built after)."""
KEYS_TIMEOUT_SECONDS = 10
KEYS_MEMORY_MB = 256
# Headers and query parts WAF never writes to its logs: the grant travels in both.
WAF_REDACTED_HEADERS = ("cookie", "authorization")
CLOUDFRONT_METRICS = "AWS/CloudFront"
SEGMENT_TTL_MAX = 31_536_000  # CloudFront's default maximum TTL: a year


@dataclass(frozen=True, kw_only=True)
class MediaDistributionSettings(Tunables):
    """The delivery tier's tunables (M7, M8)."""

    TIER = "delivery"

    price_class: str = tunable(
        "deliveryPriceClass",
        "PriceClass_All",
        "CloudFront edge locations that serve viewers: PriceClass_100 (North America, Europe, "
        "Israel; viewers in Asia such as Tokyo are served from there), PriceClass_200 (adds "
        "Asia, the Middle East and Africa) or PriceClass_All (M7).",
        choices=CLOUDFRONT_PRICE_CLASSES,
    )
    geo_restriction: GeoRestriction = tunable(
        "deliveryGeoRestriction",
        GeoRestriction.NONE,
        "Broadcast rights: none (everywhere), allow (only deliveryGeoLocations) or deny "
        "(everywhere but deliveryGeoLocations) (M7).",
        choices=GeoRestriction,
    )
    geo_locations: tuple[str, ...] = tunable(
        "deliveryGeoLocations",
        (),
        'ISO 3166-1 alpha-2 country codes the geo restriction allows or denies, e.g. ["JP"] '
        "for a Japan-only catalogue (M7).",
        check=country_codes_ok,
        allowed="distinct ISO 3166-1 alpha-2 codes such as JP, DE, US",
    )
    player_origins: tuple[str, ...] = tunable(
        "deliveryPlayerOrigins",
        (),
        "Web origins of players that fetch media with credentials (CORS); empty: no CORS (M7).",
        check=player_origins_ok,
        allowed="distinct origins https://host[:port] (never *)",
    )
    grant_seconds: int = tunable(
        "playbackGrantSeconds",
        PLAYBACK_GRANT_SECONDS_DEFAULT,
        "Lifetime of a signed playback grant the API issues (M8).",
        range=PLAYBACK_GRANT_SECONDS_RANGE,
    )
    # Playlists of a published version do not change, but a short TTL bounds how long an
    # edge serves one after a re-publication; segments never change once written.
    playlist_ttl_seconds: int = tunable(
        "deliveryPlaylistTtlSeconds",
        5,
        "Seconds an edge caches a playlist (M7).",
        range=(1, 300),
    )
    segment_ttl_seconds: int = tunable(
        "deliverySegmentTtlSeconds",
        SEGMENT_TTL_MAX,
        "Seconds an edge caches a segment or poster; they never change once published (M7).",
        range=(3600, SEGMENT_TTL_MAX),
    )
    domain_name: str = tunable(
        "deliveryDomainName",
        "",
        "Playback domain (e.g. media.example.com) with its own ACM certificate (TLS 1.2 or "
        "later); empty: the distribution's *.cloudfront.net name (M7).",
        check=domain_name_ok,
        allowed="empty or a lowercase DNS name such as media.example.com",
    )
    hosted_zone_id: str = tunable(
        "deliveryHostedZoneId",
        "",
        "Route 53 hosted zone of deliveryDomainName: certificate validation and alias records.",
        check=hosted_zone_ok,
        allowed="empty or a Route 53 hosted zone id such as Z0123456789ABCDEFGHIJ",
    )
    waf: bool = tunable(
        "deliveryWaf",
        True,
        "A WAF web ACL (rate limit per IP, AWS managed rules) on the distribution (M7).",
    )
    waf_rate_limit: int = tunable(
        "deliveryWafRateLimit",
        3000,
        "WAF requests per 5 minutes per client IP at the edge (a viewer asks for a segment "
        "every few seconds).",
        range=(WAF_MIN_RATE_LIMIT, WAF_MAX_RATE_LIMIT),
    )
    alarm_5xx_rate_percent: int = tunable(
        "alarmDelivery5xxRatePercent",
        5,
        "Share (%) of viewer requests answered with 5xx over 5 minutes that alarms (O2).",
        range=(1, 100),
    )
    alarm_origin_latency_ms: int = tunable(
        "alarmDeliveryOriginLatencyMs",
        3000,
        "p90 origin latency (ms) over 5 minutes that alarms (O2).",
        range=(100, 60_000),
    )

    def rules(self) -> list[Problem]:
        problems = []
        # Compared as text: a value outside the choices is reported by its declaration.
        restriction = str(self.geo_restriction)
        if restriction in (GeoRestriction.ALLOW, GeoRestriction.DENY) and not self.geo_locations:
            problems.append(
                Problem(
                    "geo_locations",
                    [],
                    f"at least one country code while {{geo_restriction}} is {restriction}",
                )
            )
        if restriction == GeoRestriction.NONE and self.geo_locations:
            problems.append(
                Problem(
                    "geo_locations",
                    list(self.geo_locations),
                    "none while {geo_restriction} is none (set it to allow or deny)",
                )
            )
        if self.domain_name and not self.hosted_zone_id:
            problems.append(
                Problem(
                    "hosted_zone_id",
                    "",
                    "the Route 53 hosted zone of {domain_name} (certificate validation)",
                )
            )
        if self.hosted_zone_id and not self.domain_name:
            problems.append(
                Problem("domain_name", "", "a domain name while {hosted_zone_id} is set")
            )
        return problems


@dataclass(frozen=True, kw_only=True)
class MediaDistributionArgs(MediaDistributionSettings, AppPlacement):
    """Inputs of `MediaDistribution`: its settings, where key delivery runs and what the
    stack wires in."""

    media_bucket_domain_name: pulumi.Input[str]
    """Regional domain name of the media bucket, the S3 origin (required)."""
    content_key_secret_arn: pulumi.Input[str]
    """The content-key secret key delivery derives title keys from (K3) (required)."""
    code_path: str
    """Key delivery's zip (`components.packaging.build_keys_package`) (required)."""
    code_sha256: str
    """Base64 SHA-256 of that zip (required)."""
    secrets_key_arn: pulumi.Input[str]
    """Secrets Manager CMK: the signing-key secret, key delivery's environment, and the
    content key's decryption (required)."""
    logs_key_arn: pulumi.Input[str]
    """CMK of key delivery's log group, in the stack's region (required)."""
    signing_key_readers: Sequence[pulumi.Input[str]] = ()
    """Role ARNs that may read the signing key: the API function's, which signs grants (M8).
    Grant them access with `grant_signing`. Default none."""
    deployer_arn: pulumi.Input[str] | None = None
    """IAM role that runs Pulumi: may read the signing key back, as the provider does on
    refresh. Default none."""
    alarm_email: str = ""
    """Address subscribed to the delivery alarms' topic (in `CLOUDFRONT_REGION`); default
    none."""
    log_retention_days: int = 30
    """Retention of every log group here (key delivery, access logs, WAF); default 30."""
    log_level: str = DEFAULT_LOG_LEVEL
    """Key delivery's log level; default INFO."""
    protect_data: bool = False
    """False (default): everything goes on destroy, the signing secret at once. True: the
    CloudFront-region key is protected and retained, the signing secret keeps a 30-day
    recovery window and the distribution is only disabled on destroy (G3)."""

    def validate(self) -> None:
        problems = self.tunable_problems()
        if len(self.subnet_ids) < 2:
            problems.append(
                f"subnet_ids: {len(self.subnet_ids)} given, allowed at least 2 (one per AZ, G7)"
            )
        if not self.code_path or not self.code_sha256:
            problems.append(
                "code_path/code_sha256: allowed a built package "
                "(components.packaging.build_keys_package)"
            )
        if self.log_level not in LOG_LEVELS:
            problems.append(
                f"log_level={self.log_level!r}: allowed one of " + ", ".join(LOG_LEVELS)
            )
        problems += retention_problems("log_retention_days", self.log_retention_days)
        if problems:
            raise ValueError("MediaDistributionArgs: " + "; ".join(problems))


def function_url_host(url: str) -> str:
    """`https://<id>.lambda-url.<region>.on.aws/` -> the host, the origin's domain name."""
    host = urlparse(url).hostname
    if not host:
        raise ValueError(f"function URL {url!r} has no host")
    return host


class MediaDistribution(pulumi.ComponentResource):
    """CloudFront distribution, signing key pair, key delivery, access logs and alarms."""

    distribution_id: pulumi.Output[str]
    distribution_arn: pulumi.Output[str]
    domain_name: pulumi.Output[str]
    """Where players fetch media: the custom domain when set, else *.cloudfront.net."""
    key_group_id: pulumi.Output[str]
    public_key_id: pulumi.Output[str]
    """The Key-Pair-Id of every grant."""
    signing_secret_arn: pulumi.Output[str]
    keys_function_role_arn: pulumi.Output[str]
    security_group: RoleSecurityGroup
    settings: MediaDistributionSettings

    def __init__(
        self, name: str, args: MediaDistributionArgs, opts: pulumi.ResourceOptions | None = None
    ):
        args.validate()
        super().__init__("media:delivery:MediaDistribution", name, None, opts)
        self._name, self._args = name, args
        self._child = pulumi.ResourceOptions(parent=self)
        self._edge = replace(args.context, region=CLOUDFRONT_REGION)
        self.settings = MediaDistributionSettings(**args.tuned())
        self.edge_key = self._edge_key()
        self._signing_key()
        self._key_delivery()
        certificate_arn = self._certificate() if args.domain_name else None
        web_acl_arn = self._firewall() if args.waf else None
        if not args.waf:
            pulumi.log.warn(
                "deliveryWaf=false: the distribution has no web ACL (no per-IP rate limit or "
                "managed rules at the edge); every object still needs a signed grant (M8)",
                resource=self,
            )
        self.distribution = self._distribution(certificate_arn, web_acl_arn)
        self.distribution_id = self.distribution.id
        self.distribution_arn = self.distribution.arn
        self._invoke_permissions()
        if args.domain_name:
            self._alias_records()
        self.domain_name = (
            pulumi.Output.from_input(args.domain_name)
            if args.domain_name
            else self.distribution.domain_name
        )
        self._access_logs()
        self._alarms()
        self.register_outputs(
            {
                "distribution_id": self.distribution_id,
                "distribution_arn": self.distribution_arn,
                "domain_name": self.domain_name,
                "key_group_id": self.key_group_id,
                "public_key_id": self.public_key_id,
                "signing_secret_arn": self.signing_secret_arn,
                "keys_function_role_arn": self.keys_function_role_arn,
                "security_group_id": self.security_group.id,
            }
        )

    # -- grants ----------------------------------------------------------------------------
    def grant_signing(self, resource_name: str, role: aws.iam.Role) -> aws.iam.RolePolicy:
        """Let `role` (the API function, also named in `signing_key_readers`) read the private
        key that signs playback grants (M8)."""
        grants = [
            Grant(
                "ReadPlaybackSigningKey",
                ("secretsmanager:GetSecretValue",),
                (self.signing_secret_arn,),
            ),
            decrypt_via(
                "DecryptPlaybackSigningKey",
                self._args.secrets_key_arn,
                "secretsmanager",
                self._args.context,
            ),
        ]
        return attach_grants(resource_name, role, grants, parent=self)

    # -- the CloudFront region's key (alarm topic, access logs, WAF logs) ------------------
    def _edge_key(self) -> EncryptionKey:
        args = self._args
        return EncryptionKey(
            f"{self._name}-edge-key",
            EncryptionKeyArgs(
                purpose="edge-key",
                context=self._edge,
                namer=args.namer,
                deletion_window_days=Lifecycle(args.protect_data).key_deletion_window_days,
                service_grants=(
                    cloudwatch_logs_grant(self._edge),
                    cloudwatch_alarms_grant(self._edge),
                ),
                protect_data=args.protect_data,
                region=CLOUDFRONT_REGION,
            ),
            self._child,
        )

    # -- signing key pair (M8) -------------------------------------------------------------
    def _signing_key(self) -> None:
        args, name, namer = self._args, self._name, self._args.namer
        # RSA 2048: CloudFront takes RSA 2048 or ECDSA P-256 (tls's ECDSA default is P-224).
        # The provider keeps the private key in the stack's state as a secret (encrypted by the
        # secrets provider, readable by whoever may decrypt the state, PITFALLS 150); at run
        # time it exists only in the secret below. Rotation adds a second public key to the
        # key group before the first leaves it.
        self.signing_key = tls.PrivateKey(
            f"{name}-signing-key", algorithm="RSA", rsa_bits=2048, opts=self._child
        )
        # public_key_pem ends with a newline, as CloudFront stores it: no diff on every run.
        self.public_key = aws.cloudfront.PublicKey(
            f"{name}-public-key",
            name=namer.name("playback-key", NameKind.CLOUDFRONT),
            comment="Verifies playback grants signed by the API (M8)",
            encoded_key=self.signing_key.public_key_pem,
            opts=self._child,
        )
        self.key_group = aws.cloudfront.KeyGroup(
            f"{name}-key-group",
            name=namer.name("playback", NameKind.CLOUDFRONT),
            comment="Signers of playback grants",
            items=[self.public_key.id],
            opts=self._child,
        )
        self.public_key_id, self.key_group_id = self.public_key.id, self.key_group.id
        secret, version = stored_secret(
            f"{name}-signing-secret",
            namer=namer,
            stem="playback-signing-key",
            description="Private key that signs CloudFront playback grants (M8)",
            value=pulumi.Output.secret(self.signing_key.private_key_pem),
            kms_key_arn=args.secrets_key_arn,
            protect_data=args.protect_data,
            parent=self,
        )
        self.signing_secret_arn = secret.arn
        readers = [*args.signing_key_readers]
        if args.deployer_arn is not None:
            readers.append(args.deployer_arn)
        restrict_reads(
            f"{name}-signing-secret-policy",
            secret=secret,
            version=version,
            sid="OnlyApiReadsSigningKey",
            readers=readers,
            parent=self,
        )

    # -- key delivery (M9) -----------------------------------------------------------------
    def _key_delivery(self) -> None:
        args, name = self._args, self._name
        self.security_group = RoleSecurityGroup(
            f"{name}-sg",
            role=KEYS_STEM,
            description="Key delivery Lambda: egress to AWS APIs only",
            vpc_id=args.vpc_id,
            namer=args.namer,
            parent=self,
        )
        backend = vpc_function(
            name,
            app_function_args(
                args,
                self.security_group,
                stem=KEYS_STEM,
                description="Per-title keys for holders of a playback grant (function URL)",
                handler=KEYS_HANDLER,
                environment=self._environment(),
                log_level=args.log_level,
                memory_mb=KEYS_MEMORY_MB,
                timeout_seconds=KEYS_TIMEOUT_SECONDS,
                access_grants={"content-key": self._grant_content_key},
            ),
            parent=self,
        )
        self.keys_function, self.keys_role = backend.function, backend.role
        self.keys_function_role_arn = backend.role.arn
        # IAM auth: only requests signed for this account's principals, i.e. the distribution
        # through its origin access control, reach the function.
        self.function_url = aws.lambda_.FunctionUrl(
            f"{name}-function-url",
            function_name=backend.function.name,
            authorization_type="AWS_IAM",
            opts=self._child,
        )

    def _environment(self) -> dict[str, pulumi.Input[str]]:
        public_keys = pulumi.Output.all(self.public_key.id, self.signing_key.public_key_pem).apply(
            lambda pair: json.dumps({pair[0]: pair[1]}, sort_keys=True)
        )
        return {
            EnvVar.CONTENT_KEY_SECRET_ARN: self._args.content_key_secret_arn,
            EnvVar.PLAYBACK_PUBLIC_KEYS: public_keys,
            EnvVar.LOG_LEVEL: self._args.log_level,
        }

    def _grant_content_key(self, resource_name: str, role: aws.iam.Role) -> aws.iam.RolePolicy:
        args = self._args
        grants = [
            Grant(
                "ReadContentKey", ("secretsmanager:GetSecretValue",), (args.content_key_secret_arn,)
            ),
            decrypt_via("DecryptContentKey", args.secrets_key_arn, "secretsmanager", args.context),
        ]
        return attach_grants(resource_name, role, grants, parent=self)

    def _invoke_permissions(self) -> None:
        """CloudFront's origin access control may call the function URL, for this distribution
        only. Function URLs made since October 2025 also need InvokeFunction (through the URL
        only); Lambda refuses the request with 403 without either."""
        name, function = self._name, self.keys_function.name
        source = {"principal": "cloudfront.amazonaws.com", "source_arn": self.distribution.arn}
        aws.lambda_.Permission(
            f"{name}-invoke-url",
            action="lambda:InvokeFunctionUrl",
            function=function,
            function_url_auth_type="AWS_IAM",
            opts=self._child,
            **source,
        )
        aws.lambda_.Permission(
            f"{name}-invoke-via-url",
            action="lambda:InvokeFunction",
            function=function,
            invoked_via_function_url=True,
            opts=self._child,
            **source,
        )

    # -- distribution (M7) -----------------------------------------------------------------
    def _policies(self) -> dict[str, Any]:
        args, name, namer = self._args, self._name, self._args.namer
        playlists = aws.cloudfront.CachePolicy(
            f"{name}-playlists-cache",
            name=namer.name("playlists", NameKind.CLOUDFRONT),
            comment="HLS playlists: short TTL, shared by every viewer",
            **shared_cache_key(args.playlist_ttl_seconds),
            opts=self._child,
        )
        segments = aws.cloudfront.CachePolicy(
            f"{name}-segments-cache",
            name=namer.name("segments", NameKind.CLOUDFRONT),
            comment="HLS segments and posters: immutable once published, long TTL",
            **shared_cache_key(args.segment_ttl_seconds),
            opts=self._child,
        )
        forwarding = aws.cloudfront.OriginRequestPolicy(
            f"{name}-key-forwarding",
            name=namer.name("key-delivery", NameKind.CLOUDFRONT),
            comment="Signed cookies and signed query only: key delivery checks the grant again",
            **key_delivery_forwarding(),
            opts=self._child,
        )
        headers = aws.cloudfront.ResponseHeadersPolicy(
            f"{name}-headers",
            name=namer.name("playback-headers", NameKind.CLOUDFRONT),
            comment="Security headers; CORS with credentials for the player origins",
            security_headers_config=security_headers(),
            cors_config=cors(args.player_origins),
            opts=self._child,
        )
        caching_disabled = aws.cloudfront.get_cache_policy_output(
            name=MANAGED_CACHING_DISABLED, opts=pulumi.InvokeOutputOptions(parent=self)
        ).id
        return {
            "playlists": playlists.id,
            "segments": segments.id,
            "forwarding": forwarding.id,
            "headers": headers.id,
            "caching_disabled": caching_disabled,
        }

    def _origins(self) -> list[dict[str, Any]]:
        args, name, namer = self._args, self._name, self._args.namer
        s3_access = aws.cloudfront.OriginAccessControl(
            f"{name}-media-oac",
            name=namer.name("media-oac", NameKind.CLOUDFRONT_OAC),
            description="Signs the distribution's requests to the media bucket",
            origin_access_control_origin_type="s3",
            signing_behavior="always",
            signing_protocol="sigv4",
            opts=self._child,
        )
        lambda_access = aws.cloudfront.OriginAccessControl(
            f"{name}-keys-oac",
            name=namer.name("keys-oac", NameKind.CLOUDFRONT_OAC),
            description="Signs the distribution's requests to the key delivery function URL",
            origin_access_control_origin_type="lambda",
            signing_behavior="always",
            signing_protocol="sigv4",
            opts=self._child,
        )
        # No s3_origin_config: the provider adds the empty one S3 origins need (PITFALLS 125).
        return [
            {
                "origin_id": MEDIA_ORIGIN,
                "domain_name": args.media_bucket_domain_name,
                "origin_access_control_id": s3_access.id,
            },
            {
                "origin_id": KEYS_ORIGIN,
                "domain_name": self.function_url.function_url.apply(function_url_host),
                "origin_access_control_id": lambda_access.id,
                "custom_origin_config": custom_origin(),
            },
        ]

    def _distribution(
        self, certificate_arn: pulumi.Output[str] | None, web_acl_arn: pulumi.Output[str] | None
    ) -> aws.cloudfront.Distribution:
        args, name = self._args, self._name
        policies = self._policies()
        methods = CORS_METHODS if args.player_origins else READ_METHODS
        common = {"key_group_id": self.key_group_id, "headers_policy_id": policies["headers"]}
        physical = args.namer.name("delivery")
        return aws.cloudfront.Distribution(
            f"{name}-distribution",
            enabled=True,
            comment=f"Signed HLS playback ({physical})",
            aliases=[args.domain_name] if args.domain_name else None,
            origins=self._origins(),
            default_cache_behavior=behaviour(
                origin=MEDIA_ORIGIN,
                cache_policy_id=policies["segments"],
                methods=methods,
                **common,
            ),
            ordered_cache_behaviors=ordered_behaviours(
                methods=methods,
                caching_disabled_id=policies["caching_disabled"],
                key_forwarding_id=policies["forwarding"],
                playlists_policy_id=policies["playlists"],
                **common,
            ),
            price_class=args.price_class,
            http_version="http2and3",
            is_ipv6_enabled=True,
            restrictions=geo_restriction(args.geo_restriction, args.geo_locations),
            viewer_certificate=viewer_certificate(certificate_arn),
            web_acl_id=web_acl_arn,
            # Destroy disables, waits, then deletes; with data protection it only disables.
            retain_on_delete=args.protect_data,
            wait_for_deployment=True,
            tags=name_tag(physical),
            opts=self._child,
        )

    # -- custom domain: certificate in the CloudFront region, alias records ----------------
    def _certificate(self) -> pulumi.Output[str]:
        args, name = self._args, self._name
        certificate = aws.acm.Certificate(
            f"{name}-certificate",
            domain_name=args.domain_name,
            validation_method="DNS",
            tags=name_tag(args.domain_name),
            region=CLOUDFRONT_REGION,
            opts=self._child,
        )
        option = certificate.domain_validation_options[0]
        record = aws.route53.Record(
            f"{name}-certificate-validation-record",
            zone_id=args.hosted_zone_id,
            name=option.resource_record_name,
            type=option.resource_record_type,
            records=[option.resource_record_value],
            ttl=300,
            allow_overwrite=True,
            opts=self._child,
        )
        validation = aws.acm.CertificateValidation(
            f"{name}-certificate-validation",
            certificate_arn=certificate.arn,
            validation_record_fqdns=[record.fqdn],
            region=CLOUDFRONT_REGION,
            opts=self._child,
        )
        return validation.certificate_arn

    def _alias_records(self) -> None:
        args, name = self._args, self._name
        target = {
            "name": self.distribution.domain_name,
            "zone_id": self.distribution.hosted_zone_id,
            "evaluate_target_health": False,
        }
        for record_type in ("A", "AAAA"):
            aws.route53.Record(
                f"{name}-alias-{record_type.lower()}",
                zone_id=args.hosted_zone_id,
                name=args.domain_name,
                type=record_type,
                aliases=[target],
                opts=self._child,
            )

    # -- WAF (M7, A6) ----------------------------------------------------------------------
    def _firewall(self) -> pulumi.Output[str]:
        args = self._args
        acl = web_acl(
            self._name,
            WebAclArgs(
                namer=args.namer,
                context=args.context,
                stem="delivery",
                description="Media delivery: rate limit per IP and AWS managed rules",
                resource_arn=None,
                rate_limit=args.waf_rate_limit,
                logs_key_arn=self.edge_key.arn,
                log_retention_days=args.log_retention_days,
                redacted_headers=WAF_REDACTED_HEADERS,
                redact_query_string=True,
                scope=WafScope.CLOUDFRONT,
            ),
            parent=self,
        )
        return acl.arn

    # -- access logs: standard logging v2 (M7, O1) -----------------------------------------
    def _access_logs(self) -> None:
        """CloudFront delivers through CloudWatch Logs' vended-log delivery, in the CloudFront
        region, to a log group under the CloudFront-region key with the stack's retention. Not
        legacy logging: it needs ACLs on the target bucket, which every bucket here disables
        (PITFALLS 133)."""
        args, name, namer = self._args, self._name, self._args.namer
        child = pulumi.ResourceOptions(parent=self)
        group = encrypted_log_group(
            f"{name}-access-logs",
            name=namer.path("/aws/vendedlogs/cloudfront/", "delivery"),
            kms_key_arn=self.edge_key.arn,
            retention_days=args.log_retention_days,
            parent=self,
            region=CLOUDFRONT_REGION,
        )
        # Granted up front on this group, instead of log delivery growing the account-wide
        # resource policy when the delivery is created.
        policy = aws.cloudwatch.LogResourcePolicy(
            f"{name}-access-logs-policy",
            resource_arn=group.arn,
            policy_document=pulumi.Output.json_dumps(log_delivery_policy(group.arn, self._edge)),
            region=CLOUDFRONT_REGION,
            opts=child,
        )
        source = aws.cloudwatch.LogDeliverySource(
            f"{name}-access-log-source",
            name=namer.name("cloudfront-access", NameKind.LOG_DELIVERY),
            log_type="ACCESS_LOGS",
            resource_arn=self.distribution.arn,
            region=CLOUDFRONT_REGION,
            opts=child,
        )
        destination = aws.cloudwatch.LogDeliveryDestination(
            f"{name}-access-log-destination",
            name=namer.name("cloudfront-logs", NameKind.LOG_DELIVERY),
            output_format="json",
            delivery_destination_configuration={"destination_resource_arn": group.arn},
            region=CLOUDFRONT_REGION,
            opts=child,
        )
        aws.cloudwatch.LogDelivery(
            f"{name}-access-log-delivery",
            delivery_source_name=source.name,
            delivery_destination_arn=destination.arn,
            region=CLOUDFRONT_REGION,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[policy]),
        )

    # -- alarms in the CloudFront region (O2) ----------------------------------------------
    def _alarms(self) -> None:
        args, name, namer = self._args, self._name, self._args.namer
        # OriginLatency is one of the additional metrics, published only with a subscription.
        aws.cloudfront.MonitoringSubscription(
            f"{name}-metrics",
            distribution_id=self.distribution.id,
            monitoring_subscription={
                "realtime_metrics_subscription_config": {
                    "realtime_metrics_subscription_status": "Enabled"
                }
            },
            opts=self._child,
        )
        topic = AlarmTopic(
            f"{name}-alarms",
            AlarmTopicArgs(
                email=args.alarm_email,
                namer=namer,
                context=self._edge,
                kms_key_arn=self.edge_key.arn,
                stem="delivery-alarms",
                region=CLOUDFRONT_REGION,
            ),
            self._child,
        )
        self.alarm_topic_arn = topic.arn
        dimensions = {"DistributionId": self.distribution.id, "Region": "Global"}
        for suffix, metric, statistic, threshold, text in (
            (
                "5xx-rate",
                "5xxErrorRate",
                "Average",
                args.alarm_5xx_rate_percent,
                "Viewers get server errors",
            ),
            (
                "origin-latency",
                "OriginLatency",
                "p90",
                args.alarm_origin_latency_ms,
                "Origins answer slowly",
            ),
        ):
            metric_alarm(
                f"{name}-{suffix}-alarm",
                alarm_name=namer.name(f"delivery-{suffix}"),
                description=text,
                namespace=CLOUDFRONT_METRICS,
                metric_name=metric,
                dimensions=dimensions,
                statistic=statistic,
                comparison="GreaterThanThreshold",
                threshold=threshold,
                topic_arn=topic.arn,
                parent=self,
                region=CLOUDFRONT_REGION,
            )


@dataclass(frozen=True, kw_only=True)
class PlaybackTarget:
    """What the API needs of the delivery tier to issue grants (M8)."""

    domain: pulumi.Input[str]
    """The playback domain the grants' resources name (required)."""
    key_pair_id: pulumi.Input[str]
    """The public key id that signs, `Key-Pair-Id` (required)."""
    signing_secret_arn: pulumi.Input[str]
    """The secret holding the private key (required)."""
    grant_seconds: int
    """Lifetime of a grant (required)."""
    grant_signing: GrantFn = field(repr=False)
    """Grants the API role read access to the signing key (required)."""

    @classmethod
    def of(cls, delivery: MediaDistribution) -> Self:
        return cls(
            domain=delivery.domain_name,
            key_pair_id=delivery.public_key_id,
            signing_secret_arn=delivery.signing_secret_arn,
            grant_seconds=delivery.settings.grant_seconds,
            grant_signing=delivery.grant_signing,
        )
