"""Evaluate the real `__main__.py` in-process with Pulumi's mocks — no CLI, no AWS account.

`EngineMocks` answers like the engine and the AWS provider where the program depends on it:
ids, ARNs in the configured region and account, endpoints and URLs, and look-ups
(availability zones per region, caller identity, partition, endpoint service names).
`run_stack` loads a stack file, applies overrides, runs the program and returns every
registered resource with its resolved inputs, its parent and the stack outputs. Tests and
the offline plan both use it.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import json
import logging
import os
import runpy
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pulumi.runtime import MockCallArgs, MockResourceArgs, Mocks

# The one name taken from outside `pulumi.runtime`'s exports: `set_mocks(monitor=...)` accepts a
# `MockMonitor`, and only the monitor sees a registration's parent, dependencies and options
# (`protect`, `retainOnDelete`, `ignoreChanges`) — `MockResourceArgs` carries none of them.
from pulumi.runtime import resource as pulumi_runtime_resource
from pulumi.runtime.mocks import MockMonitor
from pulumi.runtime.proto import source_pb2

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "media-pipeline"
ACCOUNT_ID = "123456789012"

# Availability zones as the regions report them (note the gaps AWS leaves in some regions).
REGION_ZONES: dict[str, tuple[str, ...]] = {
    "eu-central-1": ("eu-central-1a", "eu-central-1b", "eu-central-1c"),
    "us-east-1": (
        "us-east-1a",
        "us-east-1b",
        "us-east-1c",
        "us-east-1d",
        "us-east-1e",
        "us-east-1f",
    ),
    "ca-central-1": ("ca-central-1a", "ca-central-1b", "ca-central-1d"),
    "ap-northeast-1": ("ap-northeast-1a", "ap-northeast-1c", "ap-northeast-1d"),
    "eu-west-3": ("eu-west-3a", "eu-west-3b", "eu-west-3c"),
    "me-central-1": ("me-central-1a", "me-central-1b", "me-central-1c"),
    "us-west-1": ("us-west-1b", "us-west-1c"),
}


def _random_bytes(seed: str, length: int) -> dict[str, str]:
    """Stand-in random bytes: distinct per resource, the same on every run."""
    data = hashlib.shake_256(seed.encode()).digest(length)
    return {"base64": base64.b64encode(data).decode(), "hex": data.hex()}


def _short_hash(*parts: str) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:17]


@dataclass
class EngineMocks(Mocks):
    region: str
    account_id: str = ACCOUNT_ID
    api_logging_role: bool = True
    """Whether the account already has API Gateway's CloudWatch logging role (set by another
    stack, or by hand): what reading the account's API Gateway settings finds."""
    last: threading.local = field(default_factory=threading.local, repr=False, compare=False)
    """Per thread, the last `new_resource` call: `(args, state)`. The SDK's monitor answers a
    registration on a worker thread and calls `new_resource` on that same thread, so the
    monitor can pair its request with the inputs the mocks were given."""

    def arn(
        self, service: str, resource: str, *, regional: bool = True, region: str | None = None
    ) -> str:
        where = (region or self.region) if regional else ""
        return f"arn:aws:{service}:{where}:{self.account_id}:{resource}"

    # -- resources -----------------------------------------------------------------------
    def new_resource(self, args: MockResourceArgs) -> tuple[str, dict]:
        inputs = dict(args.inputs)
        physical = (
            inputs.get(_IDENTIFIER_INPUTS.get(args.typ, "name"))
            or inputs.get("name")
            or f"{args.name}-{_short_hash(args.name)[:7]}"
        )
        resource_id = args.resource_id or self._id_for(args.typ, args.name, inputs, physical)
        if args.resource_id and not inputs:
            return resource_id, self._read(args.typ, resource_id)
        outputs = self._computed(args.typ, resource_id, physical, inputs)
        state = {**inputs, **outputs}
        self.last.registration = (args, state)
        return resource_id, state

    def _read(self, typ: str, resource_id: str) -> dict[str, Any]:
        """The state `Resource.get` finds in the account: only what the program reads."""
        if typ == "aws:apigateway/account:Account":
            role = self.arn("iam", "role/apigateway-cloudwatch-logs", regional=False)
            return {"cloudwatchRoleArn": role if self.api_logging_role else ""}
        raise ValueError(f"the offline engine cannot read {typ} {resource_id!r}")

    def _id_for(self, typ: str, name: str, inputs: dict, physical: str) -> str:
        prefixes = {
            "aws:ec2/vpc:Vpc": "vpc-",
            "aws:ec2/subnet:Subnet": "subnet-",
            "aws:ec2/securityGroup:SecurityGroup": "sg-",
            "aws:efs/fileSystem:FileSystem": "fs-",
            "aws:efs/accessPoint:AccessPoint": "fsap-",
            "aws:ec2/natGateway:NatGateway": "nat-",
            "aws:ec2/internetGateway:InternetGateway": "igw-",
            "aws:ec2/routeTable:RouteTable": "rtb-",
            "aws:ec2/eip:Eip": "eipalloc-",
            "aws:ec2/vpcEndpoint:VpcEndpoint": "vpce-",
            "aws:ec2/networkAcl:NetworkAcl": "acl-",
        }
        if typ in prefixes:
            return prefixes[typ] + _short_hash(typ, name)
        if typ == "aws:sqs/queue:Queue":
            return f"https://sqs.{self.region}.amazonaws.com/{self.account_id}/{physical}"
        if typ == "aws:kms/key:Key":
            return _uuid_like(name)
        if typ == "aws:apigateway/restApi:RestApi":
            return _short_hash(name)[:10]
        if typ in _CLOUDFRONT_IDS:
            return _CLOUDFRONT_IDS[typ] + _short_hash(typ, name).upper()[:13]
        if typ in _CLOUDFRONT_TYPES:
            return _uuid_like(f"{typ}/{name}")
        if typ in _IDENTIFIER_INPUTS:
            return physical  # AWS uses the chosen identifier as the resource id
        return inputs.get("name") or f"{name}-id"

    def _computed(self, typ: str, rid: str, physical: str, inputs: dict) -> dict:
        # A resource given `region` (pulumi-aws v7) lives there, not in the provider's region.
        region, account = inputs.get("region") or self.region, self.account_id
        service = typ.split(":")[1].split("/")[0]

        def arn(service: str, resource: str, *, regional: bool = True) -> str:
            return self.arn(service, resource, regional=regional, region=region)

        bucket = inputs.get("bucket", rid)

        table: dict[str, dict[str, Any]] = {
            "aws:kms/key:Key": {"arn": arn("kms", f"key/{rid}"), "keyId": rid},
            "aws:kms/alias:Alias": {"arn": arn("kms", physical)},
            "aws:iam/role:Role": {
                "arn": arn("iam", f"role/{physical}", regional=False),
                "uniqueId": "AROA" + _short_hash(physical).upper(),
            },
            "aws:iam/policy:Policy": {"arn": arn("iam", f"policy/{physical}", regional=False)},
            "aws:cloudwatch/logGroup:LogGroup": {"arn": arn("logs", f"log-group:{physical}")},
            "aws:ec2/vpc:Vpc": {
                "arn": arn("ec2", f"vpc/{rid}"),
                "defaultSecurityGroupId": "sg-default",
            },
            "aws:ec2/subnet:Subnet": {"arn": arn("ec2", f"subnet/{rid}")},
            "aws:ec2/securityGroup:SecurityGroup": {"arn": arn("ec2", f"security-group/{rid}")},
            "aws:ec2/flowLog:FlowLog": {"arn": arn("ec2", f"vpc-flow-log/{rid}")},
            "aws:ec2/vpcEndpoint:VpcEndpoint": {
                "arn": arn("ec2", f"vpc-endpoint/{rid}"),
                # Gateway endpoints expose the service's managed prefix list.
                "prefixListId": "pl-" + _short_hash(str(inputs.get("serviceName")))[:8]
                if inputs.get("vpcEndpointType") == "Gateway"
                else None,
            },
            "aws:sqs/queue:Queue": {"arn": arn("sqs", physical), "url": rid},
            "aws:sns/topic:Topic": {"arn": arn("sns", physical)},
            "aws:kinesis/stream:Stream": {"arn": arn("kinesis", f"stream/{physical}")},
            "aws:secretsmanager/secret:Secret": {
                "arn": arn("secretsmanager", f"secret:{physical}-AbCdEf")
            },
            "aws:rds/cluster:Cluster": {
                "arn": arn("rds", f"cluster:{physical}"),
                "endpoint": f"{physical}.cluster-c0ffee.{region}.rds.amazonaws.com",
                "readerEndpoint": f"{physical}.cluster-ro-c0ffee.{region}.rds.amazonaws.com",
                "engineVersionActual": inputs.get("engineVersion"),
                "port": 5432,
                "clusterResourceId": "cluster-" + _short_hash(physical).upper(),
                "masterUserSecrets": [
                    {
                        "secretArn": arn("secretsmanager", f"secret:rds!cluster-{rid}-XyZ012"),
                        "kmsKeyId": inputs.get("masterUserSecretKmsKeyId", ""),
                        "secretStatus": "active",
                    }
                ],
            },
            "aws:rds/clusterInstance:ClusterInstance": {
                "arn": arn("rds", f"db:{physical}"),
                "endpoint": f"{physical}.c0ffee.{region}.rds.amazonaws.com",
            },
            "aws:elasticache/replicationGroup:ReplicationGroup": {
                "arn": arn("elasticache", f"replicationgroup:{rid}"),
                "primaryEndpointAddress": f"master.{rid}.c0ffee.{_az_code(region)}.cache."
                "amazonaws.com",
                "readerEndpointAddress": f"replica.{rid}.c0ffee.{_az_code(region)}.cache."
                "amazonaws.com",
            },
            "aws:efs/fileSystem:FileSystem": {
                "arn": arn("elasticfilesystem", f"file-system/{rid}"),
                "dnsName": f"{rid}.efs.{region}.amazonaws.com",
            },
            "aws:efs/accessPoint:AccessPoint": {
                "arn": arn("elasticfilesystem", f"access-point/{rid}")
            },
            "aws:ecs/cluster:Cluster": {"arn": arn("ecs", f"cluster/{physical}")},
            "aws:ecs/service:Service": {"arn": arn("ecs", f"service/{physical}")},
            "aws:ecs/taskDefinition:TaskDefinition": {
                "arn": arn("ecs", f"task-definition/{inputs.get('family', rid)}:1"),
                "revision": 1,
            },
            "aws:ecr/repository:Repository": {
                "arn": arn("ecr", f"repository/{physical}"),
                "repositoryUrl": f"{account}.dkr.ecr.{region}.amazonaws.com/{physical}",
                "registryId": account,
            },
            "aws:lambda/function:Function": {
                "arn": arn("lambda", f"function:{physical}"),
                "invokeArn": f"arn:aws:apigateway:{region}:lambda:path/2015-03-31/functions/"
                f"{arn('lambda', f'function:{physical}')}/invocations",
                "qualifiedArn": arn("lambda", f"function:{physical}:1"),
                "version": "1",
            },
            "aws:apigateway/restApi:RestApi": {
                "arn": f"arn:aws:apigateway:{region}::/restapis/{rid}",
                "rootResourceId": "root" + rid[:6],
                "executionArn": arn("execute-api", rid),
            },
            "aws:apigateway/stage:Stage": {
                "arn": f"arn:aws:apigateway:{region}::/restapis/{inputs.get('restApi')}"
                f"/stages/{inputs.get('stageName')}",
                "invokeUrl": f"https://{inputs.get('restApi')}.execute-api.{region}."
                f"amazonaws.com/{inputs.get('stageName')}",
                "executionArn": arn(
                    "execute-api", f"{inputs.get('restApi')}/{inputs.get('stageName')}"
                ),
            },
            "aws:apigateway/apiKey:ApiKey": {"arn": f"arn:aws:apigateway:{region}::/apikeys/{rid}"},
            "aws:wafv2/webAcl:WebAcl": {
                "arn": arn(
                    "wafv2",
                    f"{_waf_scope(inputs)}/webacl/{physical}/{_uuid_like(physical)}",
                )
            },
            "aws:s3/bucket:Bucket": {
                "arn": f"arn:aws:s3:::{bucket}",
                "bucket": bucket,
                "bucketRegionalDomainName": f"{bucket}.s3.{region}.amazonaws.com",
            },
            "aws:cloudtrail/trail:Trail": {"arn": arn("cloudtrail", f"trail/{physical}")},
            "aws:pipes/pipe:Pipe": {"arn": arn("pipes", f"pipe/{physical}")},
            "aws:cloudwatch/metricAlarm:MetricAlarm": {
                "arn": arn("cloudwatch", f"alarm:{physical}")
            },
            "random:index/randomPassword:RandomPassword": {
                "result": "x" * int(inputs.get("length", 32))
            },
            "random:index/randomString:RandomString": {
                "result": (_short_hash(physical) * 4)[: int(inputs.get("length", 8))]
            },
            "random:index/randomBytes:RandomBytes": _random_bytes(
                physical, int(inputs.get("length", 32))
            ),
        }
        if typ in _CLOUDFRONT_TYPES:
            return {
                "arn": f"arn:aws:cloudfront::{account}:{_CLOUDFRONT_TYPES[typ]}/{rid}",
                "etag": "E" + _short_hash(rid, "etag").upper()[:13],
                **_cloudfront_outputs(typ, rid),
            }
        if typ in _EDGE_TYPES:
            return _EDGE_TYPES[typ](self, region, rid, physical, inputs)
        if typ == "tls:index/privateKey:PrivateKey":
            return _private_key_outputs(physical)
        if typ == "docker-build:index:Image":
            # pulumi-docker-build: the pushed manifest digest, and the first tag pinned to it.
            return _image_outputs(inputs)
        if typ in table:
            return table[typ]
        if typ.startswith("aws:"):
            return {"arn": arn(service, f"{typ.split(':')[-1].lower()}/{rid}")}
        return {}

    # -- invokes -------------------------------------------------------------------------
    def call(self, args: MockCallArgs) -> dict:
        token, call_args = args.token, args.args
        if token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            zones = REGION_ZONES.get(self.region, ())
            return {
                "names": list(zones),
                "zoneIds": [f"{_az_code(self.region)}-az{i + 1}" for i in range(len(zones))],
                "id": self.region,
            }
        if token == "aws:rds/getEngineVersion:getEngineVersion":
            return _engine_version(call_args)
        if token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {
                "accountId": self.account_id,
                "id": self.account_id,
                "arn": f"arn:aws:sts::{self.account_id}:assumed-role/deployer/ci",
                "userId": "AIDACI",
            }
        if token == "aws:iam/getSessionContext:getSessionContext":
            # As for an assumed-role session: the issuer is the role behind the session.
            return {
                "arn": call_args["arn"],
                "id": call_args["arn"],
                "issuerArn": f"arn:aws:iam::{self.account_id}:role/deployer",
                "issuerName": "deployer",
                "issuerId": "AROADEPLOYER",
                "sessionName": "ci",
            }
        if token == "aws:index/getPartition:getPartition":
            return {
                "partition": "aws",
                "dnsSuffix": "amazonaws.com",
                "reverseDnsPrefix": "com.amazonaws",
                "id": "aws",
            }
        if token == "aws:index/getRegion:getRegion":
            return {
                "region": self.region,
                "id": self.region,
                "endpoint": f"ec2.{self.region}.amazonaws.com",
            }
        if token == "aws:ec2/getVpcEndpointService:getVpcEndpointService":
            service = call_args["service"]
            return {
                "serviceName": f"com.amazonaws.{self.region}.{service}",
                "serviceType": call_args.get("serviceType", "Interface"),
                "id": service,
            }
        if token == "aws:ecr/getAuthorizationToken:getAuthorizationToken":
            registry = call_args.get("registryId") or self.account_id
            return {
                "userName": "AWS",
                "password": "mock-ecr-token",
                "authorizationToken": "QVdTOm1vY2stZWNyLXRva2Vu",
                "proxyEndpoint": f"https://{registry}.dkr.ecr.{self.region}.amazonaws.com",
                "expiresAt": "2030-01-01T00:00:00Z",
                "id": self.region,
            }
        if token == "aws:cloudfront/getCachePolicy:getCachePolicy":
            return _managed_cache_policy(call_args["name"])
        raise NotImplementedError(f"EngineMocks has no answer for invoke {token}")


# Resources whose physical name (and id) is an identifier input rather than `name`.
_IDENTIFIER_INPUTS = {
    "aws:rds/cluster:Cluster": "clusterIdentifier",
    "aws:rds/clusterInstance:ClusterInstance": "identifier",
    "aws:elasticache/replicationGroup:ReplicationGroup": "replicationGroupId",
    "aws:s3/bucket:Bucket": "bucket",
}


# CloudFront (global: no region in its ARNs) resource types -> the ARN's resource word.
_CLOUDFRONT_TYPES = {
    "aws:cloudfront/distribution:Distribution": "distribution",
    "aws:cloudfront/publicKey:PublicKey": "public-key",
    "aws:cloudfront/keyGroup:KeyGroup": "key-group",
    "aws:cloudfront/originAccessControl:OriginAccessControl": "origin-access-control",
    "aws:cloudfront/cachePolicy:CachePolicy": "cache-policy",
    "aws:cloudfront/originRequestPolicy:OriginRequestPolicy": "origin-request-policy",
    "aws:cloudfront/responseHeadersPolicy:ResponseHeadersPolicy": "response-headers-policy",
}
# Ids CloudFront gives in its own form (a letter and 13 more); the policies' ids are UUIDs.
_CLOUDFRONT_IDS = {
    "aws:cloudfront/distribution:Distribution": "E",
    "aws:cloudfront/publicKey:PublicKey": "K",
    "aws:cloudfront/originAccessControl:OriginAccessControl": "E",
}
# The managed cache policies' ids, the same in every account (AWS's managed-policy page).
MANAGED_CACHE_POLICIES = {
    "Managed-CachingDisabled": "4135ea2d-6df8-44a3-9df3-4b5a84be39ad",
    "Managed-CachingOptimized": "658327ea-f89d-4fab-a63d-7e88639e58f6",
}
CLOUDFRONT_HOSTED_ZONE = "Z2FDTNDATAQYW2"  # every distribution's alias target zone


def _cloudfront_outputs(typ: str, rid: str) -> dict[str, Any]:
    if typ != "aws:cloudfront/distribution:Distribution":
        return {}
    return {
        "domainName": f"d{_short_hash(rid, 'domain')[:13]}.cloudfront.net",
        "hostedZoneId": CLOUDFRONT_HOSTED_ZONE,
        "status": "Deployed",
    }


def _managed_cache_policy(name: str) -> dict[str, Any]:
    if name not in MANAGED_CACHE_POLICIES:
        raise ValueError(f"no CloudFront cache policy named {name!r}")
    return {"id": MANAGED_CACHE_POLICIES[name], "name": name, "etag": "E1MANAGED"}


def _waf_scope(inputs: dict) -> str:
    return "global" if inputs.get("scope") == "CLOUDFRONT" else "regional"


def _function_url(mocks: EngineMocks, region: str, rid: str, physical: str, inputs: dict) -> dict:
    url_id = _short_hash(str(inputs.get("functionName")), "url") * 2
    return {
        "functionUrl": f"https://{url_id[:32]}.lambda-url.{region}.on.aws/",
        "urlId": url_id[:32],
        "functionArn": mocks.arn("lambda", f"function:{inputs.get('functionName')}", region=region),
    }


def _certificate(mocks: EngineMocks, region: str, rid: str, physical: str, inputs: dict) -> dict:
    domain = inputs.get("domainName", "")
    token = _short_hash(domain, "acm")
    return {
        "arn": mocks.arn("acm", f"certificate/{_uuid_like(domain)}", region=region),
        "domainValidationOptions": [
            {
                "domainName": domain,
                "resourceRecordName": f"_{token}.{domain}.",
                "resourceRecordType": "CNAME",
                "resourceRecordValue": f"_{token[::-1]}.acm-validations.aws.",
            }
        ],
    }


def _certificate_validation(
    mocks: EngineMocks, region: str, rid: str, physical: str, inputs: dict
) -> dict:
    return {"certificateArn": inputs.get("certificateArn")}


def _record(mocks: EngineMocks, region: str, rid: str, physical: str, inputs: dict) -> dict:
    return {"fqdn": str(inputs.get("name", "")).rstrip(".")}


def _log_delivery_part(word: str):
    def outputs(mocks: EngineMocks, region: str, rid: str, physical: str, inputs: dict) -> dict:
        return {"arn": mocks.arn("logs", f"{word}:{physical}", region=region)}

    return outputs


_EDGE_TYPES = {
    "aws:lambda/functionUrl:FunctionUrl": _function_url,
    "aws:acm/certificate:Certificate": _certificate,
    "aws:acm/certificateValidation:CertificateValidation": _certificate_validation,
    "aws:route53/record:Record": _record,
    "aws:cloudwatch/logDeliverySource:LogDeliverySource": _log_delivery_part("delivery-source"),
    "aws:cloudwatch/logDeliveryDestination:LogDeliveryDestination": _log_delivery_part(
        "delivery-destination"
    ),
}


@functools.cache
def _private_key_outputs(seed: str) -> dict[str, Any]:
    """A real RSA 2048 key pair, as pulumi_tls's PrivateKey reports it; one per resource name
    and process (RSA generation cannot be seeded, so runs in other processes differ)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key()
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    openssh = public.public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode()
    return {
        "algorithm": "RSA",
        "rsaBits": 2048,
        "privateKeyPem": key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        ).decode(),
        "privateKeyPemPkcs8": key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
        "publicKeyPem": public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode(),
        "publicKeyOpenssh": openssh + "\n",
        "publicKeyFingerprintSha256": "SHA256:" + hashlib.sha256(der).hexdigest(),
    }


def _image_outputs(inputs: dict) -> dict[str, Any]:
    tags = inputs.get("tags") or []
    digest = "sha256:" + hashlib.sha256(json.dumps(tags).encode()).hexdigest()
    ref = f"{tags[0].rsplit(':', 1)[0]}@{digest}" if tags else ""
    return {"digest": digest, "ref": ref, "contextHash": _short_hash(json.dumps(tags))}


def _uuid_like(seed: str) -> str:
    h = _short_hash(seed, "uuid") + _short_hash("k", seed)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def _az_code(region: str) -> str:
    parts = region.split("-")
    return parts[0] + "".join(p[0] for p in parts[1:-1]) + parts[-1]


# ---------------------------------------------------------------------------------------


@dataclass
class Registered:
    """One registered resource: type token, logical name, parent URN and resolved inputs."""

    urn: str
    id: str
    type: str
    name: str
    parent_urn: str
    custom: bool
    inputs: dict[str, Any]
    state: dict[str, Any]
    dependencies: list[str] = field(default_factory=list)
    """URNs the engine is told to create first (`depends_on` and input references)."""
    ignore_changes: list[str] = field(default_factory=list)
    """Properties the engine keeps out of diffs (`ignore_changes`)."""
    retain_on_delete: bool = False
    """Whether `pulumi destroy` leaves the cloud resource in place (`retain_on_delete`)."""
    protect: bool = False
    """Whether the engine refuses to delete or replace the resource (`protect`)."""


class RecordingMonitor(MockMonitor):
    """The SDK's mock monitor, also remembering each registration's inputs, parent and options.

    Inputs and state are the ones `EngineMocks.new_resource` received and returned (public
    `MockResourceArgs`); the request adds what only the resource-monitor protocol carries."""

    def __init__(self, mocks: EngineMocks):
        super().__init__(mocks)
        self.engine_mocks = mocks
        self.registered: list[Registered] = []

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            args, state = self.engine_mocks.last.registration
            self.registered.append(
                Registered(
                    urn=response.urn,
                    id=response.id,
                    type=request.type,
                    name=request.name,
                    parent_urn=request.parent,
                    custom=request.custom,
                    inputs=args.inputs,
                    state=state,
                    dependencies=list(request.dependencies),
                    ignore_changes=list(request.ignoreChanges),
                    retain_on_delete=bool(request.retainOnDelete),
                    protect=bool(request.protect),
                )
            )
        return response


@dataclass
class ProgramRun:
    stack: str
    region: str
    config: dict[str, str]
    resources: list[Registered]
    outputs: dict[str, Any]
    secret_outputs: set[str]
    warnings: list[str] = field(default_factory=list)

    def of_type(self, type_token: str) -> list[Registered]:
        return [r for r in self.resources if r.type == type_token]

    def one(self, type_token: str, name: str | None = None) -> Registered:
        found = [r for r in self.of_type(type_token) if name is None or r.name == name]
        if len(found) != 1:
            raise AssertionError(
                f"expected one {type_token} {name or ''}, found {[r.name for r in found]}"
            )
        return found[0]

    def named(self, name: str) -> Registered:
        found = [r for r in self.resources if r.name == name]
        if len(found) != 1:
            raise AssertionError(f"expected one resource named {name}, found {len(found)}")
        return found[0]


class _WarningCollector(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def stack_config(stack: str) -> dict[str, Any]:
    """The `config:` block of `Pulumi.<stack>.yaml`."""
    document = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text()) or {}
    return document.get("config", {}) or {}


def to_engine_value(value: Any) -> str:
    """Config values reach the program as strings, structured values as JSON (as the CLI does)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


AURORA_NEWEST_MINORS = {"13": "13.21", "14": "14.18", "15": "15.13", "16": "16.9", "17": "17.5"}
"""The mocks' stand-in for what RDS offers per Aurora PostgreSQL major (`latest=True`)."""


def _engine_version(call_args: dict) -> dict:
    """rds.getEngineVersion as the provider answers it: `versionActual` is the full version."""
    version = str(call_args.get("version", ""))
    major = version.split(".")[0]
    actual = version if "." in version else AURORA_NEWEST_MINORS[major]
    return {
        "engine": call_args.get("engine"),
        "version": version,
        "versionActual": actual,
        "parameterGroupFamily": f"aurora-postgresql{major}",
        "id": actual,
    }


def qualify(key: str) -> str:
    return key if ":" in key else f"{PROJECT}:{key}"


def project_defaults() -> dict[str, Any]:
    """Defaults declared in `Pulumi.yaml`; the CLI passes them to the program like set values."""
    document = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    return {
        key: spec["default"]
        for key, spec in document.get("config", {}).items()
        if isinstance(spec, dict) and "default" in spec
    }


def run_stack(
    stack: str = "dev",
    overrides: dict[str, Any] | None = None,
    *,
    preview: bool = False,
    account_id: str = ACCOUNT_ID,
    api_logging_role: bool = True,
) -> ProgramRun:
    """Run `__main__.py` for `Pulumi.<stack>.yaml` (+ overrides) under mocks, as if deployed
    into `account_id` (G1: nothing may depend on which account that is), whose API Gateway
    settings hold a logging role or not (`api_logging_role`)."""
    raw = {qualify(k): v for k, v in project_defaults().items()}
    raw.update({qualify(k): v for k, v in stack_config(stack).items()})
    for key, value in (overrides or {}).items():
        if value is None:
            raw.pop(qualify(key), None)
        else:
            raw[qualify(key)] = value
    config = {k: to_engine_value(v) for k, v in raw.items()}
    region = config.get("aws:region", "")
    return run_program(
        stack,
        config,
        region,
        preview=preview,
        account_id=account_id,
        api_logging_role=api_logging_role,
    )


def run_program(
    stack: str,
    config: dict[str, str],
    region: str,
    *,
    preview: bool = False,
    account_id: str = ACCOUNT_ID,
    api_logging_role: bool = True,
) -> ProgramRun:
    return run_under_mocks(
        lambda: runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__"),
        stack=stack,
        config=config,
        region=region,
        preview=preview,
        account_id=account_id,
        api_logging_role=api_logging_role,
    )


def run_components(
    build: Callable[[], Any], *, region: str = "eu-central-1", stack: str = "test"
) -> ProgramRun:
    """Run `build` (which creates components) under the same mocks as a whole program."""
    return run_under_mocks(build, stack=stack, config={"aws:region": region}, region=region)


@contextlib.contextmanager
def _without_source_positions() -> Iterator[None]:
    """Pulumi walks the Python stack at every registration to tell the engine where in the
    program the resource was declared (about a tenth of an evaluation's time here). These
    mocks record no source positions, so the walk is skipped while they run; a real
    `pulumi preview` or `up` never passes through here."""
    original = getattr(pulumi_runtime_resource, "_get_stack_trace", None)
    if original is None:  # a future SDK without it: nothing to skip
        yield
        return
    pulumi_runtime_resource._get_stack_trace = source_pb2.StackTrace
    try:
        yield
    finally:
        pulumi_runtime_resource._get_stack_trace = original


def run_under_mocks(
    program: Callable[[], Any],
    *,
    stack: str,
    config: dict[str, str],
    region: str,
    preview: bool = False,
    account_id: str = ACCOUNT_ID,
    api_logging_role: bool = True,
) -> ProgramRun:
    mocks = EngineMocks(region=region, account_id=account_id, api_logging_role=api_logging_role)
    monitor = RecordingMonitor(mocks)
    logger = logging.getLogger(f"offline.{stack}")
    logger.propagate = False
    collector = _WarningCollector()
    logger.handlers = [collector]
    # A fresh root stack per run: `set_mocks` only creates one when none is set, and
    # `reset_options` is the public way to drop the previous run's (and its exports).
    pulumi.runtime.reset_options(
        project=PROJECT, stack=stack, root_directory=str(ROOT), preview=preview
    )
    pulumi.runtime.set_mocks(
        mocks, project=PROJECT, stack=stack, preview=preview, logger=logger, monitor=monitor
    )
    pulumi.runtime.set_all_config(config)
    os.environ.pop("PULUMI_CONFIG", None)
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        # `pulumi.runtime.test` runs a function the way the engine runs a program: it waits
        # for every registration and output the function started, then re-raises its error.
        with _without_source_positions():
            pulumi.runtime.test(lambda: _run_discarding_result(program))()
        outputs: dict[str, Any] = {}
        secret: set[str] = set()
        pulumi.runtime.test(lambda: _resolve_outputs(outputs, secret))()
    except Exception as error:
        # Lets callers check what was registered before the failure (G8 expects nothing).
        error.registered = monitor.registered  # type: ignore[attr-defined]
        raise
    finally:
        os.chdir(cwd)
    return ProgramRun(
        stack=stack,
        region=region,
        config=config,
        resources=monitor.registered,
        outputs=outputs,
        secret_outputs=secret,
        warnings=collector.messages,
    )


def _run_discarding_result(program: Callable[[], Any]) -> None:
    # `test` would await whatever the function returns as an Output; a program's result (the
    # module's globals, a component) is not a stack output.
    program()


def _resolve_outputs(values: dict[str, Any], secret: set[str]) -> pulumi.Output[list[Any]]:
    """Fill `values` with each stack export's value (None while unknown, as in a preview) and
    `secret` with the names of secret ones; the returned Output completes when both are full.

    The exports are read from the root stack's `outputs`: the SDK has no public accessor for a
    stack's exports, and under mocks they are never sent to the monitor (`set_mocks` registers
    the root stack's outputs before the program runs)."""
    root = pulumi.runtime.get_root_resource()
    pending = []
    for name, value in getattr(root, "outputs", {}).items():
        output = pulumi.Output.from_input(value)
        values[name] = None
        pending.append(output.apply(functools.partial(values.__setitem__, name)))
        # `Output.is_secret()` is the only way to read the flag; lifted into an Output so that
        # `test` awaits it like the values.
        flag = pulumi.Output.from_input(output.is_secret())
        pending.append(flag.apply(functools.partial(_add_if, secret, name)))
    return pulumi.Output.all(*pending)


def _add_if(names: set[str], name: str, flag: bool) -> None:
    if flag:
        names.add(name)
