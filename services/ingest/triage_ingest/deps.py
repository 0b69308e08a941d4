"""Request dependencies: the caller behind the API key, and what ``create_app`` put on app.state."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyHeader

from triage_ingest.intake import Intake
from triage_ingest.settings import Settings
from triage_ingest.store import IngestStore
from triage_runtime.apikeys import ApiKeys, KeyHolder
from triage_runtime.blobstore import BlobStore
from triage_runtime.http import app_state

UNAUTHORIZED = "a valid X-API-Key header is required"
API_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key")


SettingsDep = Annotated[Settings, app_state("settings")]
StoreDep = Annotated[IngestStore, app_state("store")]
IntakeDep = Annotated[Intake, app_state("intake")]
BlobsDep = Annotated[BlobStore, app_state("blobs")]
ApiKeysDep = Annotated[ApiKeys, app_state("api_keys")]


async def key_holder(settings: Settings, api_keys: ApiKeys, key: str | None) -> KeyHolder | None:
    """Who holds ``key``: a live key's holder, anyone when keys are off, otherwise None."""
    if not settings.require_api_key:
        return KeyHolder(0, settings.source_name)
    return await api_keys.holder(key) if key else None


async def current_caller(
    request: Request,
    settings: SettingsDep,
    api_keys: ApiKeysDep,
    key: Annotated[str | None, Depends(API_KEY_HEADER)],
) -> KeyHolder:
    """Who is calling: the holder of a live API key (401 otherwise)."""
    # An upload's key was already checked by the UploadGate, before its body was read.
    checked = getattr(request.state, "caller", None)
    holder = checked if checked is not None else await key_holder(settings, api_keys, key)
    if holder is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, UNAUTHORIZED, headers={"WWW-Authenticate": "ApiKey"}
        )
    return holder


Caller = Annotated[KeyHolder, Depends(current_caller)]
