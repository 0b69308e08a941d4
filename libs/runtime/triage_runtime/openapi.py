"""How an HTTP API's refusals are described in its OpenAPI document: the JSON body every
refusal has, and the headers some must carry."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Refusal(BaseModel):
    """A refused request: why, in words."""

    detail: str


class Invalid(BaseModel):
    """A request that is not valid: why, in words, or FastAPI's list of the fields that
    failed validation."""

    detail: str | list[dict[str, Any]] = Field(
        description="A sentence, or one entry per field that failed (loc, msg, type)"
    )


INTERNAL_ERROR = "An error in the service itself (a bug; logged with its traceback)"

RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    }
}
WWW_AUTHENTICATE = {
    "WWW-Authenticate": {
        "description": "The scheme the API wants: ApiKey (the X-API-Key header)",
        "required": True,
        "schema": {"type": "string"},
    }
}


def refusal(
    description: str, *, headers: dict[str, Any] | None = None, model: type[BaseModel] = Refusal
) -> dict[str, Any]:
    """One entry of a route's ``responses=``: a JSON refusal, with the headers it carries."""
    entry: dict[str, Any] = {"description": description, "model": model}
    if headers:
        entry["headers"] = headers
    return entry
