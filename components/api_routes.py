"""The video API's routes as plain data (A1, A3, A7).

The resource tree, the request validators, each method's parameters and body model, and how
every method is authorised. Pure: `PublicApi` turns each route into a method, a Lambda proxy
integration and an invoke permission, and hashes `api_definition` into the deployment's
redeploy trigger.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from services.contract import (
    CREATE_VIDEO_MODEL,
    CREATE_VIDEO_SCHEMA,
    UPLOAD_PARTS_MODEL,
    UPLOAD_PARTS_SCHEMA,
)


class ApiAuth(StrEnum):
    API_KEY = "API_KEY"
    IAM = "IAM"


# Request validators: name -> (validate body, validate parameters).
VALIDATORS = {
    "body-and-parameters": (True, True),
    "parameters-only": (False, True),
}


@dataclass(frozen=True)
class Route:
    """One method of the API."""

    key: str
    """Stable logical-name part, e.g. `create-video`."""
    path: str
    """Resource path, e.g. `/videos/{videoId}`."""
    http_method: str
    validator: str
    query_parameters: tuple[str, ...] = ()
    path_parameters: tuple[str, ...] = ()
    body_model: str | None = None
    cacheable: bool = True
    """False: never answered from the stage cache, as for a response that holds a grant."""

    def request_parameters(self) -> dict[str, bool]:
        """API Gateway's `method.request.*` map: path parameters required, queries optional."""
        params = {f"method.request.path.{p}": True for p in self.path_parameters}
        params.update({f"method.request.querystring.{q}": False for q in self.query_parameters})
        return params

    def cache_key_parameters(self) -> list[str]:
        """Every declared parameter keys the stage cache, so `?status=A` never answers `B`."""
        return sorted(self.request_parameters())

    def method_path(self) -> str:
        """The method's key in a stage's method settings: `videos/{videoId}/playback/GET`."""
        return f"{self.path.lstrip('/')}/{self.http_method}"

    def arn_path(self) -> str:
        """The method's part of an execute-api ARN: `GET/videos/*` for `/videos/{videoId}`."""
        parts = ["*" if p.startswith("{") else p for p in self.path.strip("/").split("/")]
        return f"{self.http_method}/" + "/".join(parts)


# Resource path -> (path part, parent path); "/" is the API's root resource.
RESOURCES = {
    "/videos": ("videos", "/"),
    "/videos/{videoId}": ("{videoId}", "/videos"),
    "/videos/{videoId}/upload": ("upload", "/videos/{videoId}"),
    "/videos/{videoId}/upload/parts": ("parts", "/videos/{videoId}/upload"),
    "/videos/{videoId}/upload/complete": ("complete", "/videos/{videoId}/upload"),
    "/videos/{videoId}/playback": ("playback", "/videos/{videoId}"),
}
VIDEO_ID = ("videoId",)
ROUTES = (
    Route(
        "list-videos",
        "/videos",
        "GET",
        "parameters-only",
        query_parameters=("status", "limit", "cursor"),
    ),
    Route("create-video", "/videos", "POST", "body-and-parameters", body_model=CREATE_VIDEO_MODEL),
    Route("get-video", "/videos/{videoId}", "GET", "parameters-only", path_parameters=VIDEO_ID),
    # The upload (M1): part URLs in batches, completion (no body), abort.
    Route(
        "upload-parts",
        "/videos/{videoId}/upload/parts",
        "POST",
        "body-and-parameters",
        path_parameters=VIDEO_ID,
        body_model=UPLOAD_PARTS_MODEL,
    ),
    Route(
        "upload-complete",
        "/videos/{videoId}/upload/complete",
        "POST",
        "parameters-only",
        path_parameters=VIDEO_ID,
    ),
    Route(
        "upload-abort",
        "/videos/{videoId}/upload",
        "DELETE",
        "parameters-only",
        path_parameters=VIDEO_ID,
    ),
    # Signed playback (M8): a fresh grant per call, never a cached one.
    Route(
        "get-playback",
        "/videos/{videoId}/playback",
        "GET",
        "parameters-only",
        path_parameters=VIDEO_ID,
        cacheable=False,
    ),
)


def create_video_schema(max_bytes: int, content_types: tuple[str, ...]) -> dict[str, Any]:
    """The contract's CreateVideo model narrowed to this stack's upload limits (pure): the
    largest size it accepts and its content types as an enum."""
    schema = copy.deepcopy(CREATE_VIDEO_SCHEMA)
    properties = schema["properties"]
    properties["size_bytes"]["maximum"] = max_bytes
    properties["content_type"] = {"type": "string", "enum": list(content_types)}
    return schema


def request_models(max_bytes: int, content_types: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Every body model of the API by name."""
    return {
        CREATE_VIDEO_MODEL: create_video_schema(max_bytes, content_types),
        UPLOAD_PARTS_MODEL: UPLOAD_PARTS_SCHEMA,
    }


def method_authorization(auth: ApiAuth) -> dict[str, Any]:
    if auth is ApiAuth.IAM:
        return {"authorization": "AWS_IAM", "api_key_required": False}
    return {"authorization": "NONE", "api_key_required": True}


def api_definition(
    auth: ApiAuth, models: Mapping[str, Mapping[str, Any]], routes: Sequence[Route] = ROUTES
) -> dict[str, Any]:
    """Everything a deployment snapshots, as plain data (pure; the redeploy trigger's input)."""
    return {
        "endpoint": "REGIONAL",
        "resources": {path: list(spec) for path, spec in sorted(RESOURCES.items())},
        "validators": {n: list(v) for n, v in sorted(VALIDATORS.items())},
        "models": {name: models[name] for name in sorted(models)},
        "methods": [
            _method_definition(auth, r)
            for r in sorted(routes, key=lambda r: (r.path, r.http_method))
        ],
    }


def _method_definition(auth: ApiAuth, route: Route) -> dict[str, Any]:
    return {
        "path": route.path,
        "httpMethod": route.http_method,
        **method_authorization(auth),
        "validator": route.validator,
        "requestParameters": route.request_parameters(),
        "requestModels": {"application/json": route.body_model} if route.body_model else {},
        "integration": {
            "type": "AWS_PROXY",
            "httpMethod": "POST",
            "cacheKeyParameters": route.cache_key_parameters(),
        },
    }


def redeploy_hash(definition: Mapping[str, Any], integration_uri: str) -> str:
    """SHA-256 of the definition and the backend it calls, serialised deterministically."""
    document = json.dumps(
        {"definition": definition, "integrationUri": integration_uri},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(document.encode()).hexdigest()
