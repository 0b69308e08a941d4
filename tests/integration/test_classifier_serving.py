"""The classifier's serving paths: POST /v1/classify, degraded mode, and hot model swaps."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.helpers import received, small_examples
from tests.kafkatools import collect, produce
from tests.stack import Stack
from triage_classifier.app import create_app
from triage_classifier.settings import Settings
from triage_contracts import topics
from triage_ml import model as model_lib
from triage_runtime.blobstore import LocalBlobStore
from triage_runtime.kafka import encode_event


@pytest.fixture(scope="module")
def second_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another small model, a different version from ``small_model``."""
    pipeline, metadata, *_ = model_lib.train(small_examples(per_label=25), seed=3)
    return model_lib.save(pipeline, metadata, out_dir=tmp_path_factory.mktemp("models2"))


def _settings(stack: Stack, tmp_path: Path, model_path: Path, **extra: object) -> Settings:
    values: dict[str, object] = {
        "kafka_bootstrap": stack.kafka_bootstrap,
        "topic_prefix": stack.topic_prefix,
        "blob_dir": tmp_path / "blobs",
        "model_path": model_path,
        "group_id": "it-serving",
        "extraction_workers": 1,
        "require_api_key": False,  # the functional tests; API keys: the test below
        **extra,
    }
    return Settings.model_validate(values)


@pytest.fixture
def client(isolated: Stack, tmp_path: Path, small_model: Path) -> Iterator[TestClient]:
    with TestClient(create_app(_settings(isolated, tmp_path, small_model))) as test_client:
        yield test_client


def test_classify_answers_with_the_streaming_contract(
    client: TestClient, small_model: Path
) -> None:
    response = client.post(
        "/v1/classify",
        json={"text": "the invoice payment is overdue, refund the charge", "document_id": None},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == {"version": small_model.name, "role": "champion"}
    assert body["prediction"]["label"] == "billing"
    assert body["extraction"]["status"] == "ok"
    prediction = body["prediction"]
    expected = "route" if prediction["confidence"] >= prediction["threshold"] else "review"
    assert prediction["action"] == expected
    assert body["latency_ms"] > 0
    # The same explanation the Kafka path carries: the label's words, the runner-up's other.
    explanation = body["explanation"]
    assert explanation["label"] == "billing" and explanation["versus"] != "billing"
    assert {t["term"] for t in explanation["terms"] if t["weight"] > 0} >= {"invoice", "refund"}


def test_low_confidence_is_200_with_action_review(client: TestClient) -> None:
    body = client.post("/v1/classify", json={"text": "hello, any news?"}).json()
    assert body["prediction"]["action"] == "review"
    assert body["prediction"]["confidence"] < body["prediction"]["threshold"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "text"),
        ({"text": ""}, "text"),
        ({"text": "x" * 200_001}, "text"),
        ({"text": "fine", "surprise": 1}, "surprise"),
        ({"text": "fine", "document_id": "not-an-id"}, "document_id"),
        ({"text": "   \n\t "}, "text"),
    ],
)
def test_invalid_input_is_422_with_field_errors(
    client: TestClient, payload: dict[str, object], field: str
) -> None:
    response = client.post("/v1/classify", json=payload)
    assert response.status_code == 422
    locations = [error["loc"] for error in response.json()["detail"]]
    assert any(loc[-1] == field for loc in locations), locations


def test_oversize_requests_are_413(client: TestClient) -> None:
    response = client.post(
        "/v1/classify",
        content=b'{"text": "' + b"x" * (1024 * 1024) + b'"}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413


def test_without_a_model_http_is_503_and_the_stream_uses_rules(
    isolated: Stack, tmp_path: Path
) -> None:
    settings = _settings(isolated, tmp_path, tmp_path / "no-model", model_refresh_seconds=60)
    blobs = LocalBlobStore(settings.blob_dir)
    event = received(blobs.put(b"Invoice INV-12345: the payment of $300 is overdue, refund"))
    with TestClient(create_app(settings)) as client:
        response = client.post("/v1/classify", json={"text": "an invoice"})
        assert response.status_code == 503
        assert response.headers["retry-after"] == "60"
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["model"] == "failing"
        asyncio.run(
            produce(
                isolated.kafka_bootstrap,
                isolated.topic(topics.DOCUMENTS),
                encode_event(event),
                key=event.document_id.encode(),
            )
        )
        [scored] = asyncio.run(
            collect(
                isolated.kafka_bootstrap,
                [isolated.topic(topics.CLASSIFIED)],
                until=lambda ms: len(ms) >= 1,
            )
        )
    assert scored["value"]["model"] == {"version": "rules-default-1", "role": "rules"}
    assert scored["headers"]["triage-model-role"] == "rules"
    assert scored["value"]["prediction"]["label"] == "billing"


def test_a_new_model_behind_the_link_serves_without_a_restart(
    isolated: Stack, tmp_path: Path, small_model: Path, second_model: Path
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    for artifact in (small_model, second_model):
        (models / artifact.name).symlink_to(artifact, target_is_directory=True)
    link = models / "champion"
    link.symlink_to(small_model.name)
    settings = _settings(isolated, tmp_path, link, model_refresh_seconds=0.2)
    with TestClient(create_app(settings)) as client:
        first = client.post("/v1/classify", json={"text": "invoice refund"}).json()
        assert first["model"]["version"] == small_model.name
        swap = models / ".champion.tmp"
        swap.symlink_to(second_model.name)
        swap.replace(link)
        deadline = time.monotonic() + 10
        version = first["model"]["version"]
        while time.monotonic() < deadline and version != second_model.name:
            time.sleep(0.1)
            version = client.post("/v1/classify", json={"text": "invoice refund"}).json()["model"][
                "version"
            ]
        assert version == second_model.name
        metrics = client.get("/metrics").text
    assert f'model_version="{second_model.name}"}} 1.0' in metrics
    assert f'model_version="{small_model.name}"}} 0.0' in metrics


def test_a_promotion_and_a_rollback_reach_the_running_classifier(
    isolated: Stack, clean_db: str, tmp_path: Path, small_model: Path, second_model: Path
) -> None:
    from triage_runtime.db.engine import make_async_engine
    from triage_runtime.registry import LocalArtifactStore, ModelRegistry

    store_dir = tmp_path / "store"

    async def registry_do(action: str) -> None:
        engine = make_async_engine(clean_db)
        registry = ModelRegistry(engine, LocalArtifactStore(store_dir))
        try:
            if action == "setup":
                for artifact in (small_model, second_model):
                    await registry.register(artifact, actor="test")
                await registry.move_alias(
                    "champion", small_model.name, actor="test", action="promote"
                )
            elif action == "promote":
                await registry.move_alias(
                    "champion", second_model.name, actor="test", action="promote"
                )
            elif action == "clear":
                await registry.clear("champion", actor="test", reason="switch to rules")
            elif action == "restore":
                await registry.move_alias(
                    "champion", small_model.name, actor="test", action="promote"
                )
            else:
                await registry.rollback("champion", actor="test", reason="bad model")
        finally:
            await engine.dispose()

    def serving_version(client: TestClient, want: str) -> str:
        deadline = time.monotonic() + 15
        version = ""
        while time.monotonic() < deadline:
            answer = client.post("/v1/classify", json={"text": "invoice"}).json()
            version = answer["model"]["version"] if "model" in answer else "(none: 503)"
            if version == want:
                break
            time.sleep(0.1)
        return version

    asyncio.run(registry_do("setup"))
    settings = _settings(
        isolated,
        tmp_path,
        tmp_path / "unused",
        database_url=clean_db,
        model_alias="champion",
        model_store_url=str(store_dir),
        model_cache_dir=tmp_path / "cache",
        model_refresh_seconds=0.3,
    )
    with TestClient(create_app(settings)) as client:
        assert serving_version(client, small_model.name) == small_model.name
        asyncio.run(registry_do("promote"))
        assert serving_version(client, second_model.name) == second_model.name
        asyncio.run(registry_do("rollback"))
        assert serving_version(client, small_model.name) == small_model.name

        # Clearing the alias switches to the rules (degraded mode: 503 on the HTTP path).
        asyncio.run(registry_do("clear"))
        deadline = time.monotonic() + 15
        while client.post("/v1/classify", json={"text": "invoice"}).status_code != 503:
            assert time.monotonic() < deadline, "clearing the alias did not switch to rules"
            time.sleep(0.1)
        assert client.get("/readyz").json()["checks"]["model"] == "failing"
        asyncio.run(registry_do("restore"))
        assert serving_version(client, small_model.name) == small_model.name


def test_classify_wants_a_live_api_key(
    isolated: Stack, clean_db: str, tmp_path: Path, small_model: Path
) -> None:
    from triage_runtime.apikeys import ApiKeys
    from triage_runtime.db.engine import make_async_engine

    async def keys() -> tuple[str, str]:
        engine = make_async_engine(clean_db)
        store = ApiKeys(engine)
        live = str(await store.create("caller"))
        revoked = str(await store.create("gone"))
        await store.revoke("gone")
        await engine.dispose()
        return live, revoked

    live, revoked = asyncio.run(keys())
    settings = _settings(
        isolated, tmp_path, small_model, database_url=clean_db, require_api_key=True
    )
    body = {"text": "the invoice payment is overdue"}
    with TestClient(create_app(settings)) as client:
        missing = client.post("/v1/classify", json=body)
        wrong = client.post("/v1/classify", json=body, headers={"X-API-Key": revoked})
        ok = client.post("/v1/classify", json=body, headers={"X-API-Key": live})
        health = client.get("/healthz")
    assert (missing.status_code, wrong.status_code, ok.status_code) == (401, 401, 200)
    assert missing.headers["www-authenticate"] == "ApiKey"
    assert ok.json()["prediction"]["label"] == "billing"
    assert health.status_code == 200
