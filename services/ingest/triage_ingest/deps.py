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
from triage_runtime.http import RateLimiter

API_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key")


async def get_settings(request: Request) -> Settings:
    """The service's settings."""
    settings: Settings = request.app.state.settings
    return settings


async def get_store(request: Request) -> IngestStore:
    """Ingest's tables: documents, idempotency records."""
    store: IngestStore = request.app.state.store
    return store


async def get_intake(request: Request) -> Intake:
    """The one way in: store the bytes, record the document, publish it once."""
    intake: Intake = request.app.state.intake
    return intake


async def get_blobs(request: Request) -> BlobStore:
    """The blob store the Intake writes to."""
    blobs: BlobStore = request.app.state.blobs
    return blobs


async def get_limiter(request: Request) -> RateLimiter:
    """The per-API-key upload rate limiter."""
    limiter: RateLimiter = request.app.state.limiter
    return limiter


async def get_api_keys(request: Request) -> ApiKeys:
    """The API keys callers present."""
    api_keys: ApiKeys = request.app.state.api_keys
    return api_keys


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[IngestStore, Depends(get_store)]
IntakeDep = Annotated[Intake, Depends(get_intake)]
BlobsDep = Annotated[BlobStore, Depends(get_blobs)]
LimiterDep = Annotated[RateLimiter, Depends(get_limiter)]
ApiKeysDep = Annotated[ApiKeys, Depends(get_api_keys)]


async def current_caller(
    settings: SettingsDep,
    api_keys: ApiKeysDep,
    key: Annotated[str | None, Depends(API_KEY_HEADER)],
) -> KeyHolder:
    """Who is calling: the holder of a live API key (401 otherwise)."""
    if not settings.require_api_key:
        return KeyHolder(0, settings.source_name)
    holder = await api_keys.holder(key) if key else None
    if holder is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "a valid X-API-Key header is required",
            headers={"WWW-Authenticate": "ApiKey"},
        )
    return holder


Caller = Annotated[KeyHolder, Depends(current_caller)]
