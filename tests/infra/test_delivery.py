"""MediaDistribution (M7, M8, M9, K3, O1, O2, G2, G3): CloudFront in front of the media bucket,
the signing key pair, key delivery, access logs and alarms, exact inputs under mocks; the
settings' rules; the pure configuration of `components.delivery_policies`."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_aws as aws
import pytest
from pulumi.runtime.rpc import _special_secret_sig, _special_sig_key

from components.aws_limits import CLOUDFRONT_REGION
from components.delivery import (
    KEYS_STEM,
    MediaDistribution,
    MediaDistributionArgs,
    MediaDistributionSettings,
    PlaybackTarget,
    function_url_host,
)
from components.delivery_policies import GeoRestriction
from components.functions import function_role_arn
from components.kms import AwsContext
from components.naming import Namer
from offline.engine import ACCOUNT_ID, MANAGED_CACHE_POLICIES, run_components
from services.contract import (
    KEY_PATH_PATTERN,
    KEYS_HANDLER,
    PLAYBACK_GRANT_SECONDS_DEFAULT,
    PLAYLIST_PATH_PATTERN,
    SESSION_PATH_PATTERN,
    SIGNED_COOKIES,
    SIGNED_QUERY_PARAMETERS,
    EnvVar,
)
from tests.infra.expect import assert_rejected, config_problems

REGION = "eu-central-1"
EDGE = CLOUDFRONT_REGION
SUBNETS = ["subnet-app-a", "subnet-app-b"]
MEDIA_DOMAIN = f"media-media-{ACCOUNT_ID}-{REGION}-test.s3.{REGION}.amazonaws.com"
CONTENT_KEY = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT_ID}:secret:media-content-key-test-AbC"
SECRETS_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/secrets"
LOGS_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/logs"
API_ROLE = f"arn:aws:iam::{ACCOUNT_ID}:role/media-api-lambda-test"
DEPLOYER = f"arn:aws:iam::{ACCOUNT_ID}:role/deployer"
DOMAIN, ZONE = "media.example.com", "Z0123456789ABCDEFGHIJ"
PLAYER = "https://player.example.com"

DISTRIBUTION = "aws:cloudfront/distribution:Distribution"
OAC = "aws:cloudfront/originAccessControl:OriginAccessControl"
CACHE_POLICY = "aws:cloudfront/cachePolicy:CachePolicy"
HEADERS_POLICY = "aws:cloudfront/responseHeadersPolicy:ResponseHeadersPolicy"
FORWARDING_POLICY = "aws:cloudfront/originRequestPolicy:OriginRequestPolicy"
KEY_GROUP = "aws:cloudfront/keyGroup:KeyGroup"
PUBLIC_KEY = "aws:cloudfront/publicKey:PublicKey"
PRIVATE_KEY = "tls:index/privateKey:PrivateKey"
SECRET = "aws:secretsmanager/secret:Secret"
SECRET_POLICY = "aws:secretsmanager/secretPolicy:SecretPolicy"
FUNCTION = "aws:lambda/function:Function"
PERMISSION = "aws:lambda/permission:Permission"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
RECORD = "aws:route53/record:Record"
WEB_ACL = "aws:wafv2/webAcl:WebAcl"
CACHING_DISABLED = MANAGED_CACHE_POLICIES["Managed-CachingDisabled"]


def context() -> AwsContext:
    return AwsContext(account_id=ACCOUNT_ID, partition="aws", region=REGION)


def delivery_args(**overrides: Any) -> MediaDistributionArgs:
    values: dict[str, Any] = dict(
        namer=Namer("media", "test"),
        context=context(),
        vpc_id="vpc-1",
        subnet_ids=SUBNETS,
        media_bucket_domain_name=MEDIA_DOMAIN,
        content_key_secret_arn=CONTENT_KEY,
        code_path="build/lambda/keys.zip",
        code_sha256="a2V5cw==",
        secrets_key_arn=SECRETS_KEY,
        logs_key_arn=LOGS_KEY,
        signing_key_readers=(API_ROLE,),
        deployer_arn=DEPLOYER,
        log_retention_days=90,
    )
    values.update(overrides)
    return MediaDistributionArgs(**values)


def build(**overrides: Any):
    holder: dict[str, Any] = {}

    def program():
        holder["delivery"] = delivery = MediaDistribution("delivery", delivery_args(**overrides))
        api_role = aws.iam.Role("api", name="media-api-lambda-test", assume_role_policy="{}")
        delivery.grant_signing("api-playback-signing", api_role)
        holder["target"] = PlaybackTarget.of(delivery)
        holder["built_keys_role"] = function_role_arn(context(), Namer("media", "test"), KEYS_STEM)

    run = run_components(program, region=REGION)
    run.holder = holder  # type: ignore[attr-defined]
    return run


@pytest.fixture(scope="module")
def run():
    return build()


@pytest.fixture(scope="module")
def custom():
    """A custom domain, a player origin, a Japan-only catalogue, data protection, no WAF."""
    return build(
        domain_name=DOMAIN,
        hosted_zone_id=ZONE,
        player_origins=(PLAYER,),
        geo_restriction=GeoRestriction.ALLOW,
        geo_locations=("JP",),
        price_class="PriceClass_200",
        waf=False,
        protect_data=True,
        alarm_email="ops@example.com",
    )


def resolved(output: pulumi.Output) -> Any:
    return pulumi.runtime.sync_await._sync_await(output.future())


def as_secret(value: Any) -> dict:
    """How the engine sees a value marked secret."""
    return {_special_sig_key: _special_secret_sig, "value": value}


def distribution(run) -> dict:
    return run.one(DISTRIBUTION).inputs


def ids(run) -> dict[str, str]:
    """Ids of the policies, key group and access controls the behaviours and origins name."""
    return {
        "key_group": run.one(KEY_GROUP).id,
        "headers": run.one(HEADERS_POLICY).id,
        "playlists": run.named("delivery-playlists-cache").id,
        "segments": run.named("delivery-segments-cache").id,
        "forwarding": run.one(FORWARDING_POLICY).id,
        "media_oac": run.named("delivery-media-oac").id,
        "keys_oac": run.named("delivery-keys-oac").id,
    }


def expected_behaviour(run, *, origin: str, cache: str, methods: list[str], **extra) -> dict:
    known = ids(run)
    found = {
        "targetOriginId": origin,
        "viewerProtocolPolicy": "https-only",
        "allowedMethods": methods,
        "cachedMethods": ["GET", "HEAD"],
        "cachePolicyId": cache,
        "responseHeadersPolicyId": known["headers"],
        "trustedKeyGroups": [known["key_group"]],
        "compress": True,
    }
    return found | extra


# -- origins and origin access control (M7, M9) ------------------------------------------------


def test_m7_m9_origins_are_the_media_bucket_and_key_delivery_each_through_its_own_oac(run):
    known = ids(run)
    url = run.one("aws:lambda/functionUrl:FunctionUrl").state["functionUrl"]
    assert distribution(run)["origins"] == [
        {
            "originId": "media",
            "domainName": MEDIA_DOMAIN,
            "originAccessControlId": known["media_oac"],
        },
        {
            "originId": "keys",
            "domainName": function_url_host(url),
            "originAccessControlId": known["keys_oac"],
            "customOriginConfig": {
                "httpPort": 80,
                "httpsPort": 443,
                "originProtocolPolicy": "https-only",
                "originSslProtocols": ["TLSv1.2"],
            },
        },
    ]
    # No s3OriginConfig (PITFALLS 125): origin access control, not an identity.
    assert "s3OriginConfig" not in distribution(run)["origins"][0]


def test_m7_m9_access_controls_always_sign_with_sigv4_for_their_origin_type(run):
    assert {o.name: o.inputs for o in run.of_type(OAC)} == {
        "delivery-media-oac": {
            "name": "media-media-oac-test",
            "description": "Signs the distribution's requests to the media bucket",
            "originAccessControlOriginType": "s3",
            "signingBehavior": "always",
            "signingProtocol": "sigv4",
        },
        "delivery-keys-oac": {
            "name": "media-keys-oac-test",
            "description": "Signs the distribution's requests to the key delivery function URL",
            "originAccessControlOriginType": "lambda",
            "signingBehavior": "always",
            "signingProtocol": "sigv4",
        },
    }


def test_function_url_host_is_the_urls_host_only():
    assert function_url_host("https://abc123.lambda-url.eu-central-1.on.aws/") == (
        "abc123.lambda-url.eu-central-1.on.aws"
    )
    with pytest.raises(ValueError, match="has no host"):
        function_url_host("not a url")


# -- behaviours (M7, M8, M9) -------------------------------------------------------------------


def test_m7_m8_segments_are_the_default_behaviour_from_the_bucket_with_a_grant(run):
    assert distribution(run)["defaultCacheBehavior"] == expected_behaviour(
        run, origin="media", cache=ids(run)["segments"], methods=["GET", "HEAD"]
    )


def test_m7_m8_m9_keys_session_and_playlists_route_in_order_each_with_a_grant(run):
    known = ids(run)
    keys = {"cache": CACHING_DISABLED, "originRequestPolicyId": known["forwarding"]}
    assert distribution(run)["orderedCacheBehaviors"] == [
        {"pathPattern": KEY_PATH_PATTERN}
        | expected_behaviour(run, origin="keys", methods=["GET", "HEAD"], **keys),
        {"pathPattern": SESSION_PATH_PATTERN}
        | expected_behaviour(run, origin="keys", methods=["GET", "HEAD"], **keys),
        {"pathPattern": PLAYLIST_PATH_PATTERN}
        | expected_behaviour(
            run, origin="media", cache=known["playlists"], methods=["GET", "HEAD"]
        ),
    ]
    assert [b["pathPattern"] for b in distribution(run)["orderedCacheBehaviors"]] == [
        "media/*/keys/*",
        "media/*/session",
        "media/*.m3u8",
    ]


def test_m8_every_behaviour_is_https_only_and_requires_the_one_key_group(run, custom):
    for each in (run, custom):
        behaviours = [
            distribution(each)["defaultCacheBehavior"],
            *distribution(each)["orderedCacheBehaviors"],
        ]
        assert {b["viewerProtocolPolicy"] for b in behaviours} == {"https-only"}
        assert [b["trustedKeyGroups"] for b in behaviours] == [[each.one(KEY_GROUP).id]] * 4


def test_m7_player_origins_let_browsers_preflight_every_behaviour(custom):
    behaviours = [
        distribution(custom)["defaultCacheBehavior"],
        *distribution(custom)["orderedCacheBehaviors"],
    ]
    assert {tuple(b["allowedMethods"]) for b in behaviours} == {("GET", "HEAD", "OPTIONS")}
    assert {tuple(b["cachedMethods"]) for b in behaviours} == {("GET", "HEAD")}


def test_m9_key_behaviours_use_the_managed_caching_disabled_policy_looked_up_by_name(run):
    keys = distribution(run)["orderedCacheBehaviors"][:2]
    assert [b["cachePolicyId"] for b in keys] == [CACHING_DISABLED] * 2


# -- cache, origin request and response headers policies (M7, M9) -----------------------------


def shared_key(ttl: int) -> dict:
    return {
        "minTtl": 0,
        "defaultTtl": ttl,
        "maxTtl": ttl,
        "parametersInCacheKeyAndForwardedToOrigin": {
            "cookiesConfig": {"cookieBehavior": "none"},
            "headersConfig": {"headerBehavior": "none"},
            "queryStringsConfig": {"queryStringBehavior": "none"},
            "enableAcceptEncodingGzip": True,
            "enableAcceptEncodingBrotli": True,
        },
    }


def test_m7_playlists_cache_briefly_segments_long_neither_keys_on_cookies_or_query(run):
    assert run.named("delivery-playlists-cache").inputs == {
        "name": "media-playlists-test",
        "comment": "HLS playlists: short TTL, shared by every viewer",
        **shared_key(5),
    }
    assert run.named("delivery-segments-cache").inputs == {
        "name": "media-segments-test",
        "comment": "HLS segments and posters: immutable once published, long TTL",
        **shared_key(31_536_000),
    }


def test_m7_ttls_come_from_the_settings():
    other = build(playlist_ttl_seconds=2, segment_ttl_seconds=86_400, waf=False)
    assert other.named("delivery-playlists-cache").inputs["maxTtl"] == 2
    assert other.named("delivery-segments-cache").inputs["defaultTtl"] == 86_400


def test_m9_key_delivery_receives_exactly_the_signed_cookies_and_query(run):
    assert run.one(FORWARDING_POLICY).inputs == {
        "name": "media-key-delivery-test",
        "comment": "Signed cookies and signed query only: key delivery checks the grant again",
        "cookiesConfig": {
            "cookieBehavior": "whitelist",
            "cookies": {"items": list(SIGNED_COOKIES)},
        },
        "headersConfig": {"headerBehavior": "none"},
        "queryStringsConfig": {
            "queryStringBehavior": "whitelist",
            "queryStrings": {"items": list(SIGNED_QUERY_PARAMETERS)},
        },
    }
    assert SIGNED_COOKIES == ("CloudFront-Policy", "CloudFront-Signature", "CloudFront-Key-Pair-Id")
    assert SIGNED_QUERY_PARAMETERS == ("Policy", "Signature", "Key-Pair-Id")


SECURITY_HEADERS = {
    "strictTransportSecurity": {
        "accessControlMaxAgeSec": 63_072_000,
        "includeSubdomains": True,
        "override": True,
    },
    "contentTypeOptions": {"override": True},
    "frameOptions": {"frameOption": "DENY", "override": True},
    "referrerPolicy": {"referrerPolicy": "no-referrer", "override": True},
}


def test_m7_every_response_carries_the_security_headers_and_no_cors_without_players(run):
    assert run.one(HEADERS_POLICY).inputs == {
        "name": "media-playback-headers-test",
        "comment": "Security headers; CORS with credentials for the player origins",
        "securityHeadersConfig": SECURITY_HEADERS,
    }


def test_m7_player_origins_get_credentialed_cors_for_exactly_those_origins(custom):
    policy = custom.one(HEADERS_POLICY).inputs
    assert policy["securityHeadersConfig"] == SECURITY_HEADERS
    assert policy["corsConfig"] == {
        "accessControlAllowCredentials": True,
        "accessControlAllowOrigins": {"items": [PLAYER]},
        "accessControlAllowMethods": {"items": ["GET", "HEAD", "OPTIONS"]},
        "accessControlAllowHeaders": {"items": ["Range"]},
        "accessControlMaxAgeSec": 600,
        "originOverride": True,
    }


# -- the distribution's own settings (M7) ------------------------------------------------------


def test_m7_defaults_every_edge_no_restriction_http3_ipv6_default_certificate(run):
    inputs = distribution(run)
    assert {
        k: inputs.get(k)
        for k in (
            "enabled",
            "priceClass",
            "httpVersion",
            "isIpv6Enabled",
            "restrictions",
            "viewerCertificate",
            "aliases",
            "retainOnDelete",
            "waitForDeployment",
            "loggingConfig",
            "tags",
        )
    } == {
        "enabled": True,
        "priceClass": "PriceClass_All",
        "httpVersion": "http2and3",
        "isIpv6Enabled": True,
        "restrictions": {"geoRestriction": {"restrictionType": "none", "locations": []}},
        "viewerCertificate": {"cloudfrontDefaultCertificate": True},
        "aliases": None,
        "retainOnDelete": False,
        "waitForDeployment": True,
        # Standard logging v2 is its own resources (PITFALLS 133), never the legacy block.
        "loggingConfig": None,
        "tags": {"Name": "media-delivery-test"},
    }


def test_m7_a_japan_only_catalogue_is_a_whitelist_of_jp(custom):
    assert distribution(custom)["restrictions"] == {
        "geoRestriction": {"restrictionType": "whitelist", "locations": ["JP"]}
    }
    assert distribution(custom)["priceClass"] == "PriceClass_200"


def test_m7_deny_lists_are_blacklists_in_code_order():
    other = build(geo_restriction=GeoRestriction.DENY, geo_locations=("US", "CA"), waf=False)
    assert distribution(other)["restrictions"] == {
        "geoRestriction": {"restrictionType": "blacklist", "locations": ["CA", "US"]}
    }


def test_m7_custom_domain_gets_a_validated_certificate_in_us_east_1_with_tls_1_2(custom):
    certificate = custom.one("aws:acm/certificate:Certificate")
    assert certificate.inputs == {
        "domainName": DOMAIN,
        "validationMethod": "DNS",
        "tags": {"Name": DOMAIN},
        "region": EDGE,
    }
    option = certificate.state["domainValidationOptions"][0]
    record = custom.named("delivery-certificate-validation-record")
    assert record.inputs == {
        "zoneId": ZONE,
        "name": option["resourceRecordName"],
        "type": "CNAME",
        "records": [option["resourceRecordValue"]],
        "ttl": 300,
        "allowOverwrite": True,
    }
    validation = custom.one("aws:acm/certificateValidation:CertificateValidation")
    assert validation.inputs == {
        "certificateArn": certificate.state["arn"],
        "validationRecordFqdns": [record.state["fqdn"]],
        "region": EDGE,
    }
    assert distribution(custom)["aliases"] == [DOMAIN]
    assert distribution(custom)["viewerCertificate"] == {
        "acmCertificateArn": certificate.state["arn"],
        "sslSupportMethod": "sni-only",
        "minimumProtocolVersion": "TLSv1.2_2021",
    }
    assert certificate.state["arn"].startswith(f"arn:aws:acm:{EDGE}:")
    # The distribution waits for the validated certificate, not just the requested one.
    assert validation.urn in custom.one(DISTRIBUTION).dependencies


def test_m7_custom_domain_points_a_and_aaaa_aliases_at_the_distribution(custom):
    state = custom.one(DISTRIBUTION).state
    target = {
        "name": state["domainName"],
        "zoneId": state["hostedZoneId"],
        "evaluateTargetHealth": False,
    }
    aliases = {r.name: r.inputs for r in custom.of_type(RECORD) if "aliases" in r.inputs}
    assert aliases == {
        "delivery-alias-a": {"zoneId": ZONE, "name": DOMAIN, "type": "A", "aliases": [target]},
        "delivery-alias-aaaa": {
            "zoneId": ZONE,
            "name": DOMAIN,
            "type": "AAAA",
            "aliases": [target],
        },
    }
    assert resolved(custom.holder["delivery"].domain_name) == DOMAIN


def test_m7_without_a_domain_players_use_the_distributions_name(run):
    assert resolved(run.holder["delivery"].domain_name) == run.one(DISTRIBUTION).state["domainName"]
    assert run.one(DISTRIBUTION).state["domainName"].endswith(".cloudfront.net")
    assert run.of_type(RECORD) == [] and run.of_type("aws:acm/certificate:Certificate") == []


# -- WAF in the CloudFront region (M7) ---------------------------------------------------------


def test_m7_web_acl_is_cloudfront_scoped_in_us_east_1_and_named_by_the_distribution(run):
    acl = run.one(WEB_ACL)
    assert (acl.inputs["name"], acl.inputs["scope"], acl.inputs["region"]) == (
        "media-delivery-waf-test",
        "CLOUDFRONT",
        EDGE,
    )
    assert acl.inputs["rules"][0]["statement"] == {
        "rateBasedStatement": {"limit": 3000, "aggregateKeyType": "IP"}
    }
    assert distribution(run)["webAclId"] == acl.state["arn"]
    assert ":global/webacl/" in acl.state["arn"] and f":{EDGE}:" in acl.state["arn"]
    # CloudFront takes no association: the distribution names the ACL.
    assert run.of_type("aws:wafv2/webAclAssociation:WebAclAssociation") == []


def test_m7_waf_logs_in_us_east_1_never_hold_a_grant(run):
    logging = run.one("aws:wafv2/webAclLoggingConfiguration:WebAclLoggingConfiguration").inputs
    assert logging["region"] == EDGE
    assert logging["redactedFields"] == [
        {"singleHeader": {"name": "cookie"}},
        {"singleHeader": {"name": "authorization"}},
        {"queryString": {}},
    ]
    group = run.named("delivery-waf-logs").inputs
    assert (group["name"], group["region"], group["kmsKeyId"], group["retentionInDays"]) == (
        "aws-waf-logs-media-delivery-test",
        EDGE,
        edge_key_arn(run),
        90,
    )


def test_m7_waf_can_be_left_off_and_the_preview_says_so(custom, run):
    assert custom.of_type(WEB_ACL) == []
    assert "webAclId" not in distribution(custom)
    assert [w for w in custom.warnings if w.startswith("deliveryWaf=false")] == [
        "deliveryWaf=false: the distribution has no web ACL (no per-IP rate limit or managed "
        "rules at the edge); every object still needs a signed grant (M8)"
    ]
    assert not any(w.startswith("deliveryWaf") for w in run.warnings)


# -- standard logging v2 (M7, O1) --------------------------------------------------------------


def edge_key_arn(run) -> str:
    return run.one("aws:kms/key:Key", "delivery-edge-key-key").state["arn"]


def test_m7_o1_access_logs_go_to_an_encrypted_expiring_group_in_us_east_1(run):
    group = run.named("delivery-access-logs")
    assert group.inputs == {
        "name": "/aws/vendedlogs/cloudfront/media-delivery-test",
        "kmsKeyId": edge_key_arn(run),
        "retentionInDays": 90,
        "region": EDGE,
    }
    source = run.one("aws:cloudwatch/logDeliverySource:LogDeliverySource").inputs
    assert source == {
        "name": "media-cloudfront-access-test",
        "logType": "ACCESS_LOGS",
        "resourceArn": run.one(DISTRIBUTION).state["arn"],
        "region": EDGE,
    }
    destination = run.one("aws:cloudwatch/logDeliveryDestination:LogDeliveryDestination")
    assert destination.inputs == {
        "name": "media-cloudfront-logs-test",
        "outputFormat": "json",
        "deliveryDestinationConfiguration": {"destinationResourceArn": group.state["arn"]},
        "region": EDGE,
    }
    delivery = run.one("aws:cloudwatch/logDelivery:LogDelivery")
    assert delivery.inputs == {
        "deliverySourceName": "media-cloudfront-access-test",
        "deliveryDestinationArn": destination.state["arn"],
        "region": EDGE,
    }
    assert run.named("delivery-access-logs-policy").urn in delivery.dependencies


def test_m7_log_delivery_may_write_to_the_access_log_group_for_this_account_only(run):
    group_arn = run.named("delivery-access-logs").state["arn"]
    policy = run.named("delivery-access-logs-policy").inputs
    assert policy["resourceArn"] == group_arn and policy["region"] == EDGE
    assert json.loads(policy["policyDocument"])["Statement"] == [
        {
            "Sid": "WafLogDelivery",
            "Effect": "Allow",
            "Principal": {"Service": "delivery.logs.amazonaws.com"},
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": f"{group_arn}:*",
            "Condition": {
                "StringEquals": {"aws:SourceAccount": ACCOUNT_ID},
                "ArnLike": {"aws:SourceArn": f"arn:aws:logs:{EDGE}:{ACCOUNT_ID}:*"},
            },
        }
    ]


# -- the CloudFront region's key, topic and alarms (O2, K1, K2) ---------------------------------


def test_o2_k2_edge_key_admits_us_east_1_logs_and_alarm_publishing_only(run):
    key = run.one("aws:kms/key:Key", "delivery-edge-key-key").inputs
    assert key["region"] == EDGE and key["enableKeyRotation"] is True
    sids = [s["Sid"] for s in json.loads(key["policy"])["Statement"]]
    assert sids == [
        "EnableAccountIamPolicies",
        "AllowCloudWatchLogs",
        "AllowCloudWatchAlarmsToPublish",
    ]
    logs = json.loads(key["policy"])["Statement"][1]
    assert logs["Principal"] == {"Service": f"logs.{EDGE}.amazonaws.com"}
    assert logs["Condition"] == {
        "ArnLike": {
            "kms:EncryptionContext:aws:logs:arn": f"arn:aws:logs:{EDGE}:{ACCOUNT_ID}:log-group:*"
        }
    }
    alias = run.one("aws:kms/alias:Alias").inputs
    assert (alias["name"], alias["region"]) == ("alias/media-edge-key-test", EDGE)


def test_o2_alarm_topic_lives_in_us_east_1_under_the_edge_key(run, custom):
    topic = run.one("aws:sns/topic:Topic")
    assert topic.inputs == {
        "name": "media-delivery-alarms-test",
        "kmsMasterKeyId": edge_key_arn(run),
        "tags": {"Name": "media-delivery-alarms-test"},
        "region": EDGE,
    }
    assert run.one("aws:sns/topicPolicy:TopicPolicy").inputs["region"] == EDGE
    assert run.of_type("aws:sns/topicSubscription:TopicSubscription") == []
    subscription = custom.one("aws:sns/topicSubscription:TopicSubscription").inputs
    assert subscription == {
        "topic": custom.one("aws:sns/topic:Topic").state["arn"],
        "protocol": "email",
        "endpoint": "ops@example.com",
        "region": EDGE,
    }


def test_o2_5xx_rate_and_origin_latency_alarm_in_us_east_1(run):
    topic = run.one("aws:sns/topic:Topic").state["arn"]
    assert topic.startswith(f"arn:aws:sns:{EDGE}:")
    dimensions = {"DistributionId": run.one(DISTRIBUTION).id, "Region": "Global"}
    alarms = {a.inputs["name"]: a.inputs for a in run.of_type(ALARM)}
    assert {
        name: (
            a["namespace"],
            a["metricName"],
            a.get("statistic") or a.get("extendedStatistic"),
            a["threshold"],
            a["dimensions"],
            a["region"],
            a["alarmActions"],
            a["okActions"],
        )
        for name, a in alarms.items()
    } == {
        "media-delivery-5xx-rate-test": (
            "AWS/CloudFront",
            "5xxErrorRate",
            "Average",
            5,
            dimensions,
            EDGE,
            [topic],
            [topic],
        ),
        "media-delivery-origin-latency-test": (
            "AWS/CloudFront",
            "OriginLatency",
            "p90",
            3000,
            dimensions,
            EDGE,
            [topic],
            [topic],
        ),
    }


def test_o2_origin_latency_is_published_through_a_monitoring_subscription(run):
    subscription = run.one("aws:cloudfront/monitoringSubscription:MonitoringSubscription").inputs
    assert subscription == {
        "distributionId": run.one(DISTRIBUTION).id,
        "monitoringSubscription": {
            "realtimeMetricsSubscriptionConfig": {"realtimeMetricsSubscriptionStatus": "Enabled"}
        },
    }


def test_m7_the_cloudfront_region_is_named_exactly_where_cloudfront_requires_it(custom, run):
    """us-east-1 on the key, its alias, the topic, the alarms, the certificate, the WAF and
    the log deliveries; everything else in the stack's region (no `region`)."""
    in_edge = {(r.type, r.name) for r in custom.resources if r.inputs.get("region") == EDGE}
    assert in_edge == {
        ("aws:kms/key:Key", "delivery-edge-key-key"),
        ("aws:kms/alias:Alias", "delivery-edge-key-alias"),
        ("aws:sns/topic:Topic", "delivery-alarms-topic"),
        ("aws:sns/topicPolicy:TopicPolicy", "delivery-alarms-policy"),
        ("aws:sns/topicSubscription:TopicSubscription", "delivery-alarms-email"),
        (ALARM, "delivery-5xx-rate-alarm"),
        (ALARM, "delivery-origin-latency-alarm"),
        ("aws:acm/certificate:Certificate", "delivery-certificate"),
        ("aws:acm/certificateValidation:CertificateValidation", "delivery-certificate-validation"),
        (LOG_GROUP, "delivery-access-logs"),
        ("aws:cloudwatch/logResourcePolicy:LogResourcePolicy", "delivery-access-logs-policy"),
        ("aws:cloudwatch/logDeliverySource:LogDeliverySource", "delivery-access-log-source"),
        (
            "aws:cloudwatch/logDeliveryDestination:LogDeliveryDestination",
            "delivery-access-log-destination",
        ),
        ("aws:cloudwatch/logDelivery:LogDelivery", "delivery-access-log-delivery"),
    }
    waf = {(r.type, r.name) for r in run.resources if r.inputs.get("region") == EDGE} - {
        (r.type, r.name) for r in custom.resources if r.inputs.get("region") == EDGE
    }
    assert waf == {
        (WEB_ACL, "delivery-waf"),
        (LOG_GROUP, "delivery-waf-logs"),
        ("aws:cloudwatch/logResourcePolicy:LogResourcePolicy", "delivery-waf-logs-policy"),
        (
            "aws:wafv2/webAclLoggingConfiguration:WebAclLoggingConfiguration",
            "delivery-waf-logging",
        ),
    }
    assert {r.inputs.get("region") for r in custom.resources} == {None, EDGE}


# -- the signing key pair (M8) -----------------------------------------------------------------


def test_m8_rsa_2048_key_pair_public_half_is_the_key_group(run):
    key = run.one(PRIVATE_KEY)
    assert key.inputs == {"algorithm": "RSA", "rsaBits": 2048}
    public = run.one(PUBLIC_KEY).inputs
    assert public == {
        "name": "media-playback-key-test",
        "comment": "Verifies playback grants signed by the API (M8)",
        "encodedKey": key.state["publicKeyPem"],
    }
    # CloudFront stores the PEM with its trailing newline: without it every run would diff.
    assert public["encodedKey"].startswith("-----BEGIN PUBLIC KEY-----\n")
    assert public["encodedKey"].endswith("-----END PUBLIC KEY-----\n")
    assert run.one(KEY_GROUP).inputs == {
        "name": "media-playback-test",
        "comment": "Signers of playback grants",
        "items": [run.one(PUBLIC_KEY).id],
    }


def test_m8_k3_private_key_lives_only_in_its_own_secret_marked_secret(run):
    secret = run.one(SECRET)
    assert secret.inputs == {
        "name": "media-playback-signing-key-test",
        "description": "Private key that signs CloudFront playback grants (M8)",
        "kmsKeyId": SECRETS_KEY,
        "recoveryWindowInDays": 0,
        "tags": {"Name": "media-playback-signing-key-test"},
    }
    version = run.one("aws:secretsmanager/secretVersion:SecretVersion").inputs
    pem = run.one(PRIVATE_KEY).state["privateKeyPem"]
    assert pem.startswith("-----BEGIN RSA PRIVATE KEY-----")
    assert version == {"secretId": secret.id, "secretString": as_secret(pem)}
    # No other resource holds the private key (a line of its base64 stands for it).
    line = pem.splitlines()[1]
    holders = [r.name for r in run.resources if line in json.dumps(r.inputs, default=str)]
    assert holders == ["delivery-signing-secret-value"]


def test_m8_only_the_api_role_and_the_deployer_read_the_signing_key(run):
    policy = run.one(SECRET_POLICY)
    assert policy.inputs["secretArn"] == run.one(SECRET).state["arn"]
    assert policy.inputs["blockPublicPolicy"] is True
    assert json.loads(policy.inputs["policy"]) == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "OnlyApiReadsSigningKey",
                "Effect": "Deny",
                "Principal": {"AWS": "*"},
                "Action": "secretsmanager:GetSecretValue",
                "Resource": "*",
                "Condition": {"StringNotEquals": {"aws:PrincipalArn": [API_ROLE, DEPLOYER]}},
            }
        ],
    }
    assert run.named("delivery-signing-secret-value").urn in policy.dependencies


def test_m8_grant_signing_reads_exactly_the_signing_secret(run):
    policy = run.named("api-playback-signing")
    assert policy.inputs["role"] == run.named("api").id
    assert json.loads(policy.inputs["policy"])["Statement"] == [
        {
            "Sid": "ReadPlaybackSigningKey",
            "Effect": "Allow",
            "Action": ["secretsmanager:GetSecretValue"],
            "Resource": [run.one(SECRET).state["arn"]],
        },
        {
            "Sid": "DecryptPlaybackSigningKey",
            "Effect": "Allow",
            "Action": ["kms:Decrypt"],
            "Resource": [SECRETS_KEY],
            "Condition": {
                "StringEquals": {"kms:ViaService": f"secretsmanager.{REGION}.amazonaws.com"}
            },
        },
    ]


def test_m8_playback_target_carries_what_the_api_signs_with(run):
    target: PlaybackTarget = run.holder["target"]
    assert (
        resolved(pulumi.Output.from_input(target.domain))
        == run.one(DISTRIBUTION).state["domainName"]
    )
    assert resolved(pulumi.Output.from_input(target.key_pair_id)) == run.one(PUBLIC_KEY).id
    assert (
        resolved(pulumi.Output.from_input(target.signing_secret_arn))
        == run.one(SECRET).state["arn"]
    )
    assert target.grant_seconds == PLAYBACK_GRANT_SECONDS_DEFAULT == 3600


# -- key delivery (M9, K3) ---------------------------------------------------------------------


def test_m9_key_delivery_runs_the_contracts_handler_in_the_vpc_with_its_own_group(run):
    function = run.one(FUNCTION).inputs
    assert (function["name"], function["handler"], function["timeout"], function["memorySize"]) == (
        "media-keys-test",
        KEYS_HANDLER,
        10,
        256,
    )
    assert function["vpcConfig"] == {
        "subnetIds": SUBNETS,
        "securityGroupIds": [run.one("aws:ec2/securityGroup:SecurityGroup").id],
    }
    assert function["kmsKeyArn"] == SECRETS_KEY
    assert run.one("aws:ec2/securityGroup:SecurityGroup").inputs["name"] == "media-keys-sg-test"


def test_m9_k3_environment_is_the_content_key_arn_and_the_key_groups_public_keys(run):
    variables = run.one(FUNCTION).inputs["environment"]["variables"]
    assert variables == {
        EnvVar.CONTENT_KEY_SECRET_ARN: CONTENT_KEY,
        EnvVar.PLAYBACK_PUBLIC_KEYS: json.dumps(
            {run.one(PUBLIC_KEY).id: run.one(PRIVATE_KEY).state["publicKeyPem"]}, sort_keys=True
        ),
        EnvVar.LOG_LEVEL: "INFO",
    }


def test_m9_k3_key_delivery_reads_exactly_the_content_key(run):
    policy = run.named("delivery-content-key")
    assert policy.inputs["role"] == run.one("aws:iam/role:Role", "delivery-role").id
    assert json.loads(policy.inputs["policy"])["Statement"] == [
        {
            "Sid": "ReadContentKey",
            "Effect": "Allow",
            "Action": ["secretsmanager:GetSecretValue"],
            "Resource": [CONTENT_KEY],
        },
        {
            "Sid": "DecryptContentKey",
            "Effect": "Allow",
            "Action": ["kms:Decrypt"],
            "Resource": [SECRETS_KEY],
            "Condition": {
                "StringEquals": {"kms:ViaService": f"secretsmanager.{REGION}.amazonaws.com"}
            },
        },
    ]
    # The function waits for the grant (a cold start must be able to read the key).
    assert policy.urn in run.one(FUNCTION).dependencies


def test_m9_k3_the_role_arn_built_ahead_for_the_content_key_policy_is_the_roles(run):
    role = run.one("aws:iam/role:Role", "delivery-role")
    assert resolved(run.holder["built_keys_role"]) == role.state["arn"]
    assert resolved(run.holder["delivery"].keys_function_role_arn) == role.state["arn"]


def test_m9_function_url_requires_iam_and_only_this_distribution_may_call_it(run):
    url = run.one("aws:lambda/functionUrl:FunctionUrl").inputs
    assert url == {"functionName": "media-keys-test", "authorizationType": "AWS_IAM"}
    source = run.one(DISTRIBUTION).state["arn"]
    assert source.startswith(f"arn:aws:cloudfront::{ACCOUNT_ID}:distribution/E")
    assert {p.name: p.inputs for p in run.of_type(PERMISSION)} == {
        "delivery-invoke-url": {
            "action": "lambda:InvokeFunctionUrl",
            "function": "media-keys-test",
            "principal": "cloudfront.amazonaws.com",
            "sourceArn": source,
            "functionUrlAuthType": "AWS_IAM",
        },
        # Function URLs made since October 2025 need both actions (Lambda "urls-auth").
        "delivery-invoke-via-url": {
            "action": "lambda:InvokeFunction",
            "function": "media-keys-test",
            "principal": "cloudfront.amazonaws.com",
            "sourceArn": source,
            "invokedViaFunctionUrl": True,
        },
    }


# -- names, destroyability, outputs (G2, G3) ---------------------------------------------------


def test_g2_every_physical_name_carries_the_suffix(run):
    names = {
        r.inputs[key]
        for r in run.resources
        for key in ("name",)
        if isinstance(r.inputs.get(key), str) and r.type != "aws:iam/role:Role"
    }
    assert names and all(n.endswith("-test") for n in names), sorted(names)


def test_g3_destroyable_by_default(run):
    assert [r.name for r in run.resources if r.protect or r.retain_on_delete] == []
    assert distribution(run)["retainOnDelete"] is False
    assert run.one(SECRET).inputs["recoveryWindowInDays"] == 0


def test_g3_data_protection_keeps_the_key_and_secret_and_only_disables_the_distribution(custom):
    guarded = {(r.type, r.name) for r in custom.resources if r.protect or r.retain_on_delete}
    assert guarded == {("aws:kms/key:Key", "delivery-edge-key-key")}
    assert distribution(custom)["retainOnDelete"] is True
    assert custom.one(SECRET).inputs["recoveryWindowInDays"] == 30
    assert custom.one("aws:kms/key:Key").inputs["deletionWindowInDays"] == 30


def test_outputs_and_type_token(run):
    component = run.one("media:delivery:MediaDistribution")
    delivery = run.holder["delivery"]
    assert resolved(delivery.distribution_id) == run.one(DISTRIBUTION).id
    assert resolved(delivery.distribution_arn) == run.one(DISTRIBUTION).state["arn"]
    assert resolved(delivery.key_group_id) == run.one(KEY_GROUP).id
    assert resolved(delivery.public_key_id) == run.one(PUBLIC_KEY).id
    assert resolved(delivery.signing_secret_arn) == run.one(SECRET).state["arn"]
    assert {r.parent_urn for r in run.resources if r.name.startswith("delivery-")} <= {
        component.urn,
        run.one("media:kms:EncryptionKey").urn,
        run.one("media:observability:AlarmTopic").urn,
    }


# -- settings and args (G8) --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"price_class": "PriceClass_50"},
            'price_class="PriceClass_50": allowed one of PriceClass_100, PriceClass_200, '
            "PriceClass_All",
        ),
        (
            {"geo_restriction": GeoRestriction.ALLOW},
            "geo_locations=[]: allowed at least one country code while geo_restriction is allow",
        ),
        (
            {"geo_restriction": GeoRestriction.DENY},
            "geo_locations=[]: allowed at least one country code while geo_restriction is deny",
        ),
        (
            {"geo_locations": ("JP",)},
            'geo_locations=["JP"]: allowed none while geo_restriction is none',
        ),
        (
            {"geo_restriction": GeoRestriction.ALLOW, "geo_locations": ("JA",)},
            'geo_locations=["JA"]: allowed distinct ISO 3166-1 alpha-2 codes',
        ),
        (
            {"geo_restriction": GeoRestriction.ALLOW, "geo_locations": ("jp",)},
            'geo_locations=["jp"]: allowed distinct ISO 3166-1 alpha-2 codes',
        ),
        (
            {"geo_restriction": GeoRestriction.ALLOW, "geo_locations": ("JP", "JP")},
            'geo_locations=["JP", "JP"]: allowed distinct ISO 3166-1 alpha-2 codes',
        ),
        ({"player_origins": ("*",)}, 'player_origins=["*"]: allowed distinct origins https://'),
        (
            {"player_origins": ("http://player.example.com",)},
            'player_origins=["http://player.example.com"]: allowed distinct origins https://',
        ),
        (
            {"player_origins": ("https://player.example.com/app",)},
            'player_origins=["https://player.example.com/app"]: allowed distinct origins',
        ),
        (
            {"domain_name": DOMAIN},
            'hosted_zone_id="": allowed the Route 53 hosted zone of domain_name',
        ),
        ({"hosted_zone_id": ZONE}, 'domain_name="": allowed a domain name while hosted_zone_id'),
        (
            {"domain_name": "Media.Example.com", "hosted_zone_id": ZONE},
            'domain_name="Media.Example.com": allowed empty or a lowercase DNS name',
        ),
        (
            {"domain_name": DOMAIN, "hosted_zone_id": "zone-1"},
            'hosted_zone_id="zone-1": allowed empty or a Route 53 hosted zone id',
        ),
        ({"grant_seconds": 60}, "grant_seconds=60: allowed 300..86400"),
        ({"playlist_ttl_seconds": 0}, "playlist_ttl_seconds=0: allowed 1..300"),
        ({"segment_ttl_seconds": 60}, "segment_ttl_seconds=60: allowed 3600..31536000"),
        ({"waf_rate_limit": 5}, "waf_rate_limit=5: allowed 10..2000000000"),
        ({"alarm_5xx_rate_percent": 0}, "alarm_5xx_rate_percent=0: allowed 1..100"),
        ({"subnet_ids": ["subnet-a"]}, "subnet_ids: 1 given, allowed at least 2"),
        ({"code_path": ""}, "code_path/code_sha256: allowed a built package"),
        ({"log_level": "LOUD"}, "log_level='LOUD': allowed one of DEBUG"),
        ({"log_retention_days": 45}, "log_retention_days=45: allowed one of 1, 3, 5"),
    ],
)
def test_g8_m7_bad_args_name_the_field_and_what_is_allowed(overrides, message):
    assert_rejected(delivery_args(**overrides), message)


def test_g8_bad_args_register_nothing():
    def program():
        MediaDistribution("delivery", delivery_args(player_origins=("*",)))

    with pytest.raises(ValueError, match="MediaDistributionArgs: ") as caught:
        run_components(program, region=REGION)
    assert caught.value.registered == []  # type: ignore[attr-defined]


def test_g8_m7_stack_config_names_the_delivery_keys():
    problems = config_problems(
        deliveryPriceClass="PriceClass_1000",
        deliveryGeoRestriction="allow",
        deliveryPlayerOrigins='["*"]',
        deliveryDomainName=DOMAIN,
    )
    assert problems == [
        'deliveryPriceClass="PriceClass_1000": allowed one of PriceClass_100, PriceClass_200, '
        "PriceClass_All",
        'deliveryPlayerOrigins=["*"]: allowed distinct origins https://host[:port] (never *)',
        "deliveryGeoLocations=[]: allowed at least one country code while "
        "deliveryGeoRestriction is allow",
        'deliveryHostedZoneId="": allowed the Route 53 hosted zone of deliveryDomainName '
        "(certificate validation)",
    ]


def test_m7_a_japan_only_catalogue_is_valid_config():
    settings = MediaDistributionSettings(
        geo_restriction=GeoRestriction.ALLOW, geo_locations=("JP",), price_class="PriceClass_200"
    )
    assert settings.tunable_problems() == []
