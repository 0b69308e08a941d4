"""Extraction pool: hostile PDFs time out, hit the memory cap or kill a worker, never the service.

These tests start real worker processes and feed them real hostile PDFs built here.
"""

from __future__ import annotations

import asyncio
import os
import random
import resource
import signal
import time
import zlib
from functools import cache
from typing import Any

import pytest

from scripts.pdfgen import make_image_pdf, make_pdf, make_pdf_pages
from triage_contracts import ExtractionStatus
from triage_text.extract import ExtractedText, extract_text
from triage_text.pool import ExtractionLimits, ExtractionPool, PoolClosedError

PDF = "application/pdf"
MIB = 1024**2


def _pdf_with_content(content_stream: bytes) -> bytes:
    """Return a one-page PDF whose page draws the given stream object (dictionary and data)."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842]"
        b" /Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        content_stream,
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref_at = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref_at,
    )
    return bytes(out)


def _flate_stream(compressed: bytes) -> bytes:
    return b"<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream" % (
        len(compressed),
        compressed,
    )


@cache
def slow_pdf(operators: int = 500_000) -> bytes:
    """A 24 KB PDF whose page runs half a million no-op graphics operators.

    In process, pdfminer needs 20-25 s for it (on one core of a 2024 laptop-class CPU) with a
    peak RSS under 80 MB: slow but lean, so it tests the time limit and nothing else.
    """
    compressor = zlib.compressobj(9)
    chunk = b"q 1 0 0 1 0 0 cm Q\n" * 1000
    data = b"".join(compressor.compress(chunk) for _ in range(operators // 1000))
    return _pdf_with_content(_flate_stream(data + compressor.flush()))


@cache
def flate_bomb(mib: int = 512) -> bytes:
    """A 0.5 MB PDF whose content stream inflates to ``mib`` MiB of zeros.

    In process (no cap) the 512 MiB one peaks at about 1.1 GB RSS and pdfminer is still
    scanning the zeros after 90 s; under a 256 MiB cap inflating fails within ~0.3 s.

    The stream repeats one deflate segment that ends in a full flush (so each copy stands
    alone); the Adler-32 of n zeros is simply (n mod 65521) << 16 | 1. That builds it in
    milliseconds instead of the seconds zlib takes to compress 512 MiB.
    """
    segment_size = 16 * MIB
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    segment = compressor.compress(bytes(segment_size)) + compressor.flush(zlib.Z_FULL_FLUSH)
    total = mib * MIB
    checksum = ((total % 65521) << 16) | 1
    deflated = segment * (total // segment_size) + compressor.flush()
    return _pdf_with_content(_flate_stream(b"\x78\xda" + deflated + checksum.to_bytes(4, "big")))


def normal_pdf(number: int = 0) -> bytes:
    return make_pdf(f"Invoice number {number}\n\nPlease pay 42 EUR by Friday.", title="Invoice")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _peak_rss_mib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def test_the_flate_bomb_inflates_to_what_it_claims() -> None:
    bomb = flate_bomb()
    start = bomb.index(b"stream\n") + len(b"stream\n")
    stream = bomb[start : bomb.rindex(b"\nendstream")]
    inflater, inflated = zlib.decompressobj(), 0
    while stream:  # in bounded pieces: the test process must not inflate it whole
        inflated += len(inflater.decompress(stream, 64 * MIB))
        stream = inflater.unconsumed_tail
    assert inflater.eof  # the checksum matched
    assert len(bomb) < 600_000
    assert inflated == 512 * MIB


@pytest.mark.parametrize(
    "limits",
    [
        {"timeout_seconds": 0},
        {"memory_bytes": 0},
        {"max_bytes": -1},
    ],
)
def test_limits_reject_nonsense(limits: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        ExtractionLimits(**limits)


def test_a_pool_needs_a_worker() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ExtractionPool(workers=0)


async def test_pdfs_extract_exactly_as_in_process() -> None:
    documents = [
        normal_pdf(),
        make_pdf_pages(["Page one: the contract.", "Page two: signatures."], title="Contract"),
        make_pdf("Grüße aus Köln \u2013 €100 (fees) \\ done"),
        make_image_pdf([b"\xff\x00"] * 16, 16),  # a scan without a text layer: EMPTY
        b"%PDF-1.4\nthis is not a PDF at all",  # CORRUPT
    ]
    async with ExtractionPool(workers=2) as pool:
        results = await pool.extract_many([(data, PDF) for data in documents])
        stats = pool.stats
    # Same function on both sides, so training (in process) and serving (pool) agree.
    assert results == [extract_text(data, PDF) for data in documents]
    assert [result.status for result in results] == [
        ExtractionStatus.OK,
        ExtractionStatus.OK,
        ExtractionStatus.OK,
        ExtractionStatus.EMPTY,
        ExtractionStatus.CORRUPT,
    ]
    assert "Page two: signatures." in results[1].text and results[1].pages == 2
    assert stats["worker_tasks"] == 5 and stats["in_process"] == 0


async def test_text_and_html_never_reach_a_worker() -> None:
    limits = ExtractionLimits(max_bytes=200_000)
    documents = [
        (b"Please pay invoice 42.", "text/plain"),
        (b"<p>Pay <b>now</b></p><script>x()</script>", "text/html; charset=utf-8"),
        (("Long letter. " * 8000).encode(), "text/plain"),  # over the inline size: a thread
        (b"PK\x03\x04", "application/zip"),  # unsupported: refused without parsing
        (b"%PDF-" + bytes(300_000), PDF),  # over max_bytes: refused without parsing
    ]
    pool = ExtractionPool(workers=1, limits=limits)
    try:
        results = await pool.extract_many(documents)
        stats, pids = pool.stats, pool.worker_pids()
    finally:
        pool.close()
    assert results == [extract_text(data, kind, max_bytes=200_000) for data, kind in documents]
    assert [result.status for result in results] == [
        ExtractionStatus.OK,
        ExtractionStatus.OK,
        ExtractionStatus.OK,
        ExtractionStatus.UNSUPPORTED,
        ExtractionStatus.TOO_LARGE,
    ]
    assert pids == []
    assert stats["in_process"] == 5 and stats["completed"] == 5
    assert stats["worker_tasks"] == 0 and stats["workers_started"] == 0


async def test_slow_pdf_times_out_and_only_its_worker_is_killed() -> None:
    limits = ExtractionLimits(timeout_seconds=1.0)
    async with ExtractionPool(workers=2, limits=limits) as pool:
        before = set(pool.worker_pids())
        started = time.monotonic()
        results = await pool.extract_many(
            [(slow_pdf(), PDF)] + [(normal_pdf(number), PDF) for number in range(1, 4)]
        )
        elapsed = time.monotonic() - started
        survivors = set(pool.worker_pids())
        # Two at once, so one of them lands on the slot whose worker was killed.
        after = await pool.extract_many([(normal_pdf(8), PDF), (normal_pdf(9), PDF)])
        stats = pool.stats

    assert results[0] == ExtractedText(ExtractionStatus.TIMEOUT)
    assert 1.0 <= elapsed < 3.0
    # The other worker carried on with the rest while the stuck one was killed.
    for number, result in enumerate(results[1:], start=1):
        assert result.status is ExtractionStatus.OK and f"number {number}" in result.text
    [killed] = before - survivors
    assert len(survivors) == 1 and not _alive(killed)
    # The pool keeps working, with a fresh worker in place of the killed one.
    assert [result.status for result in after] == [ExtractionStatus.OK] * 2
    assert "number 9" in after[1].text
    assert stats["timeouts"] == 1 and stats["worker_restarts"] == 1
    assert stats["worker_deaths"] == 0


async def test_memory_bomb_hits_the_cap_in_the_worker_not_here() -> None:
    limits = ExtractionLimits(timeout_seconds=10.0, memory_bytes=256 * MIB)
    peak_before = _peak_rss_mib()
    async with ExtractionPool(workers=1, limits=limits) as pool:
        [bombed] = pool.worker_pids()
        result = await pool.extract(flate_bomb(), PDF)
        after = await pool.extract(normal_pdf(), PDF)
        [replacement] = pool.worker_pids()
        stats = pool.stats

    # Inflating 512 MiB under a 256 MiB cap fails within ~0.3 s: TOO_LARGE. TIMEOUT is also
    # a correct answer, for a host so slow that pdfminer is still at it after 10 s; what
    # must not happen is OK/CORRUPT, or the 512 MiB being inflated in the test process.
    assert result.status in {ExtractionStatus.TOO_LARGE, ExtractionStatus.TIMEOUT}
    assert stats["memory_errors"] + stats["timeouts"] == 1
    assert _peak_rss_mib() - peak_before < 200
    assert replacement != bombed and not _alive(bombed)
    assert stats["worker_restarts"] == 1
    assert after == extract_text(normal_pdf(), PDF)


async def test_worker_killed_from_outside_loses_only_its_document() -> None:
    async with ExtractionPool(workers=1, limits=ExtractionLimits(timeout_seconds=20.0)) as pool:
        [victim] = pool.worker_pids()
        working = asyncio.create_task(pool.extract(slow_pdf(), PDF))
        await asyncio.sleep(0.5)  # the worker has long had the document and is parsing it
        assert not working.done()
        os.kill(victim, signal.SIGKILL)  # what the OOM killer would do
        result = await asyncio.wait_for(working, 5)
        after = await pool.extract(normal_pdf(), PDF)
        [replacement] = pool.worker_pids()
        stats = pool.stats

    assert result == ExtractedText(ExtractionStatus.CORRUPT)
    assert after.status is ExtractionStatus.OK
    assert replacement != victim
    assert stats["worker_deaths"] == 1 and stats["worker_restarts"] == 1


async def test_cancelled_caller_frees_its_worker_at_once() -> None:
    async with ExtractionPool(workers=1, limits=ExtractionLimits(timeout_seconds=20.0)) as pool:
        [worker] = pool.worker_pids()
        working = asyncio.create_task(pool.extract(slow_pdf(), PDF))
        await asyncio.sleep(0.3)
        working.cancel()
        with pytest.raises(asyncio.CancelledError):
            await working
        started = time.monotonic()
        after = await pool.extract(normal_pdf(), PDF)  # needs the one worker slot back
        waited = time.monotonic() - started
        stats = pool.stats

    assert after.status is ExtractionStatus.OK
    assert waited < 3.0  # not the 20 s the abandoned document could have had
    assert not _alive(worker)
    assert stats["abandoned"] == 1 and stats["timeouts"] == 0 and stats["worker_restarts"] == 1


def fuzzed_pdfs(seed: int = 20240607) -> list[bytes]:
    """Thirty damaged copies of a valid PDF: 24 with random bytes changed, 6 truncated."""
    rng = random.Random(seed)
    base = make_pdf_pages(["Invoice 42. " * 20, "Terms and conditions. " * 20], title="Invoice")
    variants = []
    for _ in range(24):
        damaged = bytearray(base)
        for _ in range(rng.randint(1, 24)):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        variants.append(bytes(damaged))
    variants += [base[: rng.randrange(len(base))] for _ in range(6)]
    return variants


async def test_fuzzed_pdfs_always_come_back_with_a_status() -> None:
    documents = fuzzed_pdfs()
    async with ExtractionPool(workers=2, limits=ExtractionLimits(timeout_seconds=10.0)) as pool:
        results = await pool.extract_many([(data, PDF) for data in documents])
        stats = pool.stats
    assert len(results) == 30
    assert all(isinstance(result.status, ExtractionStatus) for result in results)
    assert results == [extract_text(data, PDF) for data in documents]
    assert len({result.status for result in results}) > 1  # the damage did bite somewhere
    assert stats["worker_deaths"] == stats["timeouts"] == 0


async def test_extract_many_keeps_order_with_bounded_workers() -> None:
    documents = [(normal_pdf(number), PDF) for number in range(8)]
    async with ExtractionPool(workers=2) as pool:
        results = await pool.extract_many(documents)
        stats, pids = pool.stats, pool.worker_pids()
    assert len(results) == 8
    for number, result in enumerate(results):
        assert result.status is ExtractionStatus.OK
        assert f"Invoice number {number}\n" in result.text
    assert len(pids) == 2 and stats["workers_started"] == 2
    assert stats["worker_tasks"] == 8 and stats["completed"] == 8


async def test_closing_stops_in_flight_work_at_once() -> None:
    pool = ExtractionPool(workers=1, limits=ExtractionLimits(timeout_seconds=20.0))
    await pool.start()
    [worker] = pool.worker_pids()
    working = asyncio.create_task(pool.extract(slow_pdf(), PDF))
    await asyncio.sleep(0.3)
    started = time.monotonic()
    pool.close()
    with pytest.raises(PoolClosedError):
        await asyncio.wait_for(working, 5)
    assert time.monotonic() - started < 5
    assert not _alive(worker) and pool.worker_pids() == []
    with pytest.raises(PoolClosedError):
        await pool.extract(b"too late", "text/plain")
