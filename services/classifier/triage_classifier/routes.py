"""POST /v1/classify: text scored now, with the same model and contract as the Kafka path.

Its dependencies read what ``create_app`` put on ``app.state`` (``use``); tests put fakes there.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Annotated, Protocol

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, status
from fastapi.security import APIKeyHeader

from triage_classifier.metrics import CLASSIFY_REQUESTS, CLASSIFY_SECONDS
from triage_classifier.model_source import Models
from triage_classifier.settings import Settings
from triage_contracts import Extraction, ExtractionStatus, ModelRef
from triage_contracts.inference import ClassifyRequestV1, ClassifyResponseV1
from triage_ml.model_thread import ModelThread
from triage_runtime.apikeys import KeyHolder
from triage_runtime.http import app_state
from triage_text.extract import extract_text

API_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key")


class KeyHolders(Protocol):
    """Who holds an API key (``triage_runtime.apikeys.ApiKeys``)."""

    async def holder(self, key: str) -> KeyHolder | None:
        """The holder of a live key, or None."""
        ...


def use(
    app: FastAPI,
    *,
    settings: Settings,
    api_keys: KeyHolders,
    models: Models,
    model_thread: ModelThread,
) -> None:
    """Serve POST /v1/classify on ``app`` with these dependencies."""
    app.state.settings = settings
    app.state.api_keys = api_keys
    app.state.models = models
    app.state.model_thread = model_thread
    app.include_router(router)


SettingsDep = Annotated[Settings, app_state("settings")]
ModelsDep = Annotated[Models, app_state("models")]
ModelThreadDep = Annotated[ModelThread, app_state("model_thread")]


async def current_caller(
    request: Request, settings: SettingsDep, key: Annotated[str | None, Depends(API_KEY_HEADER)]
) -> KeyHolder | None:
    """Who calls POST /v1/classify: the holder of a live API key (401 otherwise)."""
    if not settings.require_api_key:
        return None
    api_keys: KeyHolders = request.app.state.api_keys
    holder = await api_keys.holder(key) if key else None
    if holder is None:
        CLASSIFY_REQUESTS.labels("401").inc()
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "a valid X-API-Key header is required",
            headers={"WWW-Authenticate": "ApiKey"},
        )
    return holder


Caller = Annotated[KeyHolder | None, Depends(current_caller)]

router = APIRouter()


@router.post(
    "/v1/classify",
    response_model=ClassifyResponseV1,
    summary="Classify text now, with the same model and contract as the Kafka path",
    responses={
        413: {"description": "The request body is over the size limit"},
        422: {"description": "Invalid input; field errors say which"},
        401: {"description": "No valid X-API-Key"},
        503: {"description": "No trained model is loaded; retry after Retry-After seconds"},
    },
)
async def classify(
    request: ClassifyRequestV1,
    _who: Caller,
    settings: SettingsDep,
    models: ModelsDep,
    model_thread: ModelThreadDep,
) -> ClassifyResponseV1:
    started = time.perf_counter()
    serving = models.serving
    if serving is None or serving.degraded:
        CLASSIFY_REQUESTS.labels("503").inc()
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "no trained model is loaded",
            headers={"Retry-After": str(max(1, round(settings.model_refresh_seconds)))},
        )
    text = extract_text(request.text.encode(), "text/plain")
    if text.status is not ExtractionStatus.OK:
        CLASSIFY_REQUESTS.labels("422").inc()
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            [
                {
                    "loc": ["body", "text"],
                    "msg": "no text is left after normalisation",
                    "type": "value_error.empty_text",
                }
            ],
        )
    [(prediction, explanation)] = await model_thread.run(
        partial(serving.model.predict_explained, [text.text])
    )
    prediction = models.policy.apply(serving.model.version, prediction)
    elapsed = time.perf_counter() - started
    CLASSIFY_SECONDS.observe(elapsed)
    CLASSIFY_REQUESTS.labels("200").inc()
    return ClassifyResponseV1(
        document_id=request.document_id,
        model=ModelRef(version=serving.model.version, role=serving.role),
        extraction=Extraction(status=text.status, chars=len(text.text), pages=None),
        prediction=prediction,
        latency_ms=round(elapsed * 1000, 3),
        explanation=explanation,
    )
