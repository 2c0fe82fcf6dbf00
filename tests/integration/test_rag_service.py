"""The RAG service as a real process: ingest, query, restart, re-ingest, bad input, load."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fpdf import FPDF

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
KNOWLEDGE = ROOT / "knowledge"
KNOWN_DOCS = ("ops-circuit-breakers.md", "nova-voice.md", "redis-basics.md")

LIGHTHOUSE = """# The Lighthouse Keeper's Almanac

## Fog signals

The keeper sounds the foghorn every forty seconds while visibility stays under one nautical
mile. The horn on Gull Rock has a lower pitch than the one on Heron Point, so sailors can
tell them apart at night.

## Lamp care

The brass lamp is polished on Tuesdays. Its wick is trimmed each evening before sunset.
"""


def write_pdf(path: Path) -> None:
    pdf = FPDF()
    pdf.set_title("Orchard Pruning Notes")
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.multi_cell(
        0,
        8,
        "Apple trees in the north orchard are pruned in late February, while they are "
        "dormant. Cuts are made just above an outward-facing bud so the canopy stays open.",
    )
    pdf.output(str(path))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    for name in KNOWN_DOCS:
        shutil.copy(KNOWLEDGE / name, folder / name)
    (folder / "lighthouse.md").write_text(LIGHTHOUSE)
    write_pdf(folder / "orchard.pdf")
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    return folder


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, corpus, rag_ingest) -> Path:
    data = tmp_path_factory.mktemp("index")
    out = rag_ingest(data, corpus)
    assert "5 documents" in out
    assert "1 failed" in out
    return data


@pytest.fixture(scope="module")
def service(rag_service, data_dir):
    """One service for the tests that only read."""
    return rag_service(data_dir).start()


def ask(url: str, question: str, **extra) -> httpx.Response:
    return httpx.post(url + "/query", json={"question": question, **extra}, timeout=30)


def top_source(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return Path(response.json()["sources"][0]["source"]).name


def test_query_finds_the_right_source_and_says_how_it_answered(service):
    response = ask(service.url, "How often does the foghorn sound when it's misty?")
    assert top_source(response) == "lighthouse.md"
    body = response.json()
    assert "forty seconds" in body["answer"]
    assert body["answered_by"] == "extractive"
    assert body["fallback_reason"] is None
    assert body["took_ms"] > 0
    assert set(body["sources"][0]) == {"source", "title", "heading", "score", "text"}
    assert body["sources"][0]["title"] == "The Lighthouse Keeper's Almanac"
    assert body["sources"][0]["heading"] == "Fog signals"
    assert len(body["sources"]) == 4
    assert len(ask(service.url, "foghorn", top_k=2).json()["sources"]) == 2

    assert top_source(ask(service.url, "When should apple trees be cut back?")) == "orchard.pdf"
    unrelated = ask(service.url, "Who won the football world cup in 1998?").json()
    assert unrelated["answered_by"] == "none"
    assert unrelated["sources"] == []


def test_health_reports_the_index_and_model(service):
    body = httpx.get(service.url + "/health", timeout=10).json()
    assert body["status"] == "ok"
    assert body["documents"] == 5
    assert body["chunks"] > 5
    assert body["retrieval"] == "hybrid"
    assert body["embedding_model"]["dim"] == 384
    assert "MiniLM" in body["embedding_model"]["name"]
    assert body["index"]["type"] == "IndexFlatIP"
    assert body["index"]["age_s"] >= 0
    assert body["llm"] is None


def test_a_restart_keeps_the_index(rag_service, data_dir):
    service = rag_service(data_dir).start()
    before = ask(service.url, "How often does the foghorn sound?").json()
    service.stop(signal.SIGKILL)
    service.start()
    after = ask(service.url, "How often does the foghorn sound?").json()
    assert after["answer"] == before["answer"]
    assert after["sources"] == before["sources"]


@pytest.mark.parametrize(
    ("body", "headers", "status", "words"),
    [
        (b'{"question": ""}', {}, 422, "must not be empty"),
        (b'{"question": "   \\n\\t "}', {}, 422, "must not be empty"),
        (b'{"question": "' + b"x" * 2001 + b'"}', {}, 422, "limit is 2000"),
        (b'{"question": "hi", "top_k": 0}', {}, 422, "between 1 and 20"),
        (b'{"question": "hi", "top_k": 21}', {}, 422, "between 1 and 20"),
        (b'{"question": "hi", "top_k": "3"}', {}, 422, "whole number"),
        (b'{"question": 42}', {}, 422, "must be a string"),
        (b'{"top_k": 3}', {}, 422, "question is required"),
        (b'{"question": "hi", "colour": "red"}', {}, 422, "unknown field"),
        (b'{"question": ', {}, 400, "not valid JSON"),
        (b"\xff\xfe\x00garbage", {}, 400, "not valid JSON"),
        (b'["question"]', {}, 400, "JSON object"),
        (b'{"question": "hi"}', {"content-type": "text/plain"}, 415, "application/json"),
        (b'{"question": "' + b"y" * 70_000 + b'"}', {}, 413, "over 65536 bytes"),
    ],
)
def test_bad_input_gets_a_clear_4xx(service, body, headers, status, words):
    response = httpx.post(
        service.url + "/query",
        content=body,
        headers={"content-type": "application/json", **headers},
        timeout=10,
    )
    assert response.status_code == status
    assert words in response.json()["error"]
    assert "Traceback" not in response.text


def test_unknown_routes_and_methods_answer_in_json(service):
    missing = httpx.get(service.url + "/nope", timeout=10)
    assert missing.status_code == 404
    assert missing.json() == {"error": "Not Found"}
    wrong = httpx.get(service.url + "/query", timeout=10)
    assert wrong.status_code == 405
    assert "error" in wrong.json()


async def test_50_concurrent_queries_are_all_answered(service):
    questions = [
        "How often does the foghorn sound?",
        "When are apple trees pruned?",
        "How many failures open the rag_api breaker?",
        "Can I speak to Nova?",
        "Does Redis keep data after a restart?",
    ]
    async with httpx.AsyncClient(base_url=service.url, timeout=60) as client:
        responses = await asyncio.gather(
            *(client.post("/query", json={"question": questions[i % 5]}) for i in range(50))
        )
    assert [r.status_code for r in responses] == [200] * 50
    answers = {r.json()["answer"] for r in responses}
    assert len(answers) == 5  # the same question always gets the same answer


def test_reingest_updates_changed_and_drops_deleted_files_live(
    rag_service, corpus, tmp_path, rag_ingest
):
    folder = tmp_path / "docs"
    shutil.copytree(corpus, folder)
    (folder / "broken.pdf").unlink()
    data = tmp_path / "index"
    rag_ingest(data, folder)
    service = rag_service(data).start()
    assert top_source(ask(service.url, "When are apple trees pruned?")) == "orchard.pdf"
    generation = httpx.get(service.url + "/health", timeout=10).json()["index"]["path"]

    (folder / "lighthouse.md").write_text(
        LIGHTHOUSE.replace("every forty seconds", "every ninety seconds")
    )
    (folder / "orchard.pdf").unlink()
    out = rag_ingest(data, folder)
    assert "1 updated" in out
    assert "1 removed" in out
    assert "3 unchanged" in out

    deadline = time.monotonic() + 30
    while httpx.get(service.url + "/health", timeout=10).json()["index"]["path"] == generation:
        assert time.monotonic() < deadline, "the service never switched to the new index"
        time.sleep(0.1)
    assert (
        "ninety seconds" in ask(service.url, "How often does the foghorn sound?").json()["answer"]
    )
    sources = {
        Path(s["source"]).name
        for s in ask(service.url, "When are apple trees pruned?", top_k=20).json()["sources"]
    }
    assert "orchard.pdf" not in sources
    assert httpx.get(service.url + "/health", timeout=10).json()["documents"] == 4


def serve_fails(data_dir: Path, *extra: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "rag", "--data-dir", str(data_dir), "serve", "--port", "0", *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    return result.stderr


def test_a_missing_index_names_the_file_and_the_fix(tmp_path):
    message = serve_fails(tmp_path / "empty")
    assert str(tmp_path / "empty" / "CURRENT") in message
    assert "python -m rag ingest" in message


def test_a_corrupt_index_names_the_file_and_the_fix(tmp_path, data_dir):
    broken = tmp_path / "broken"
    shutil.copytree(data_dir, broken)
    faiss_file = next(broken.glob("gen-*/index.faiss"))
    faiss_file.write_bytes(faiss_file.read_bytes()[:100])
    message = serve_fails(broken)
    assert "index.faiss" in message
    assert "python -m rag ingest" in message


def test_a_lite_index_serves_bm25_without_the_model(tmp_path, corpus, rag_service, rag_ingest):
    data = tmp_path / "lite"
    out = rag_ingest(data, corpus / "lighthouse.md", extra=("--no-embeddings",))
    assert "0 chunks embedded" in out
    assert "NOVA_RAG_RETRIEVAL=bm25" in serve_fails(data)
    service = rag_service(data, NOVA_RAG_RETRIEVAL="bm25").start()
    assert top_source(ask(service.url, "foghorn lighthouse keeper")) == "lighthouse.md"
    health = httpx.get(service.url + "/health", timeout=10).json()
    assert health["embedding_model"] is None
    assert health["retrieval"] == "bm25"
