"""The model-backed analyzer against the loopback fake, alone and on the whole job path."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import structlog
from pytest_aiohttp import AiohttpServer

from service.analysis import llm, llm_client
from service.analysis.chapters import split_chapters
from service.analysis.llm import LlmAnalyzer, Registry, chunk_chars, plan_chunks
from service.analysis.llm_prompts import PROMPT_VERSION, CharacterReply
from service.errors import BlobNotFound, JobError
from service.jobs import Job, JobStatus
from service.logs import configure_logging
from service.ports import NovelText
from service.runtime import Runtime, open_runtime
from service.settings import Settings
from service.storyboard import NARRATOR, UNKNOWN, ShotType, Storyboard
from service.text import load_novel_bytes
from service.uploads import store_novel
from tests.conftest import SettingsFactory, corpus_file, prepare
from tests.fake_llm import FakeLlm, Reply, Rule, Seen, error, ok, smart_cast, start_fake_llm
from tests.waiting import job_finished

KEY = "sk-test"
ROMAN = ["I", "II", "III", "IV", "V", "VI"]
Progress = list[tuple[float, str]]


def make_novel(chapters: int, paragraphs: int = 3) -> str:
    """A small English novel; with the test settings each 3-paragraph chapter is a chunk."""
    return _novel([paragraphs] * chapters)


def _novel(paragraphs: list[int]) -> str:
    """Chapters of about 210 characters per paragraph, ``paragraphs[n]`` in chapter n + 1."""
    parts = []
    for n, count in enumerate(paragraphs):
        parts.append(f"CHAPTER {ROMAN[n]}. Day {n + 1}")
        parts.extend(
            f"Alice walked by the river on day {n + 1}, hour {p + 1}, and met the White Rabbit "
            f"near the mill. 'Oh dear, I shall be late,' said the White Rabbit. 'Where are "
            f"you going?' said Alice."
            for p in range(count)
        )
    return "\n\n".join(parts)


class MemoryBlobs:
    """A blob store in a dict."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    async def put(self, key: str, data: bytes, *, content_type: str) -> None:
        self.data[key] = data

    async def get(self, key: str) -> bytes:
        try:
            return self.data[key]
        except KeyError:
            raise BlobNotFound(key) from None

    async def delete(self, key: str) -> None:
        self.data.pop(key, None)

    def checkpoints(self) -> list[str]:
        return sorted(k for k in self.data if k.startswith("checkpoints/"))


def llm_settings(fake: FakeLlm, **overrides: Any) -> Settings:
    """Small chunks (750 characters), no retries and tiny backoff, for fast tests."""
    values: dict[str, Any] = {
        "backend": "local",
        "llm_base_url": fake.base_url,
        "STORYBOARD_LLM_API_KEY": KEY,
        "llm_max_output_tokens": 256,
        "llm_max_retries": 0,
        "llm_backoff_base_s": 0.001,
        "llm_backoff_max_s": 0.01,
    }
    values.update(overrides)
    return Settings(**values)


MakeAnalyzer = Callable[..., LlmAnalyzer]


@pytest.fixture
async def fake(aiohttp_server: AiohttpServer) -> AsyncIterator[FakeLlm]:
    fake = await start_fake_llm(aiohttp_server)
    yield fake
    fake.release()


@pytest.fixture
async def blobs() -> MemoryBlobs:
    return MemoryBlobs()


@pytest.fixture
async def make_analyzer(fake: FakeLlm, blobs: MemoryBlobs) -> AsyncIterator[MakeAnalyzer]:
    made: list[LlmAnalyzer] = []

    def make(**overrides: Any) -> LlmAnalyzer:
        analyzer = LlmAnalyzer.from_settings(llm_settings(fake, **overrides), blobs)
        made.append(analyzer)
        return analyzer

    yield make
    for analyzer in made:
        await analyzer.aclose()


async def analyze(
    analyzer: LlmAnalyzer, text: str, job_id: str = "job-1", title: str = "A Tale"
) -> tuple[Storyboard, Progress]:
    progress: Progress = []

    async def on_progress(fraction: float, stage: str) -> None:
        progress.append((fraction, stage))

    board = await analyzer.analyze(NovelText("novel-1", title, text, job_id), on_progress)
    return board, progress


def _chunks(text: str, size: int = 750) -> list[llm.Chunk]:
    return plan_chunks(split_chapters(text), size, "A Tale")


def _fail_once(kind: str, part: int, reply: Reply) -> Rule:
    """A rule failing the first request of pass ``kind`` for chunk ``part`` (1-based)."""
    failed: list[bool] = []

    def rule(seen: Seen) -> Reply | None:
        if not failed and seen.kind == kind and f"Part {part} of" in seen.prompt:
            failed.append(True)
            return reply
        return None

    return rule


# --------------------------------------------------------------------------- chunking


@pytest.mark.parametrize(
    ("context", "output", "chars_per_token", "expected"),
    [
        (131_072, 8192, 1.5, 24_000),  # the defaults: bound by the reply budget and the cap
        (32_768, 8192, 1.5, 24_000),
        (16_384, 4096, 1.0, 9216),  # (16384 - 4096 - 3072) * 1.0: bound by the context
        (2048, 256, 1.5, 750),  # 256 / 256 * 750: the smallest settings allowed
    ],
)
def test_chunk_size_arithmetic(
    context: int, output: int, chars_per_token: float, expected: int
) -> None:
    settings = Settings(
        backend="local",
        llm_context_tokens=context,
        llm_max_output_tokens=output,
        llm_chars_per_token=chars_per_token,
    )
    assert chunk_chars(settings) == expected


def test_chunks_pack_whole_chapters_and_split_long_ones() -> None:
    chapters = split_chapters(_novel([1, 1, 9, 1]))
    chunks = plan_chunks(chapters, 750, "A Tale")
    assert all(len(chunk.text) <= 750 for chunk in chunks)
    assert chunks[0].chapters == [1, 2]  # two short chapters share a chunk
    pieces = [s for c in chunks for s in c.segments if s.chapter == 3]
    assert len(pieces) == 3
    assert [s.continued for s in pieces] == [False, True, True]
    assert chunks[-1].chapters == [3, 4]  # the last piece shares with the next chapter
    # Nothing but whitespace is lost where a chapter is cut.
    assert " ".join(s.text for s in pieces).split() == chapters[2].body.split()


# --------------------------------------------------------------------------- registry


def test_registry_merges_characters_by_name_and_alias() -> None:
    registry = Registry()
    rabbit = registry.merge(CharacterReply(name="White Rabbit", aliases=["Rabbit"]))
    alice = registry.merge(CharacterReply(name="Alice"))
    assert (rabbit, alice) == ("c1", "c2")
    assert registry.merge(CharacterReply(name="the Rabbit", appearance="pink eyes")) == "c1"
    assert registry.merge(CharacterReply(name="Mr. Rabbit", aliases=["WHITE RABBIT"])) == "c1"
    assert registry.merge(CharacterReply(name="Narrator")) is None
    assert registry.resolve("rabbit") == registry.resolve("Mr. Rabbit") == "c1"
    assert registry.resolve("旁白") == registry.resolve("The Narrator") == NARRATOR
    assert (
        registry.resolve("Unknown") == registry.resolve("未知") == registry.resolve("?") == UNKNOWN
    )
    assert registry.merge(CharacterReply(name="unknown")) is None
    assert registry.resolve("Bill") is None
    assert registry.resolve_or_add("Bill") == "c3"
    queen = registry.merge(CharacterReply(name="Queen", aliases=["Majesty"]))
    king = registry.merge(CharacterReply(name="King", aliases=["Majesty"]))
    assert registry.resolve("Majesty") == queen != king  # a taken alias stays with its owner
    rabbit_character = registry.characters(Counter())[0]
    assert rabbit_character.aliases == ["Rabbit", "Mr. Rabbit"]  # "the Rabbit" is "Rabbit"
    assert rabbit_character.description == "pink eyes"


def test_pass_b_is_shown_the_characters_named_in_its_chunk() -> None:
    registry = Registry()
    for name in ("Cat", "刘备", "Alice", "Hatter"):
        registry.merge(CharacterReply(name=name))
    cast = registry.cast_for("She tried to catch it. 刘备曰：善。", ids=["c4"])
    assert [entry.name for entry in cast] == ["刘备", "Hatter"]  # no Cat in "catch"


def test_appearance_notes_stop_growing_at_a_bound() -> None:
    registry = Registry()
    for n in range(100):
        registry.merge(CharacterReply(name="Alice", appearance=f"note {n} " + "x" * 40))
    (alice,) = registry.characters(Counter())
    assert 700 < len(alice.description) <= llm.MAX_DESCRIPTION_CHARS


# --------------------------------------------------------------------------- the analyzer


async def test_a_novel_through_the_smart_fake(fake: FakeLlm, make_analyzer: MakeAnalyzer) -> None:
    text = make_novel(4)
    chunks = _chunks(text)
    assert len(chunks) == 4
    board, progress = await analyze(make_analyzer(), text)

    again = Storyboard.model_validate(board.to_doc())  # re-runs every reference check
    assert again == board
    assert [c.id for c in board.characters] == [
        f"c{i}" for i in range(1, len(board.characters) + 1)
    ]
    assert {c.name for c in board.characters} == {"White Rabbit", "Alice"}
    assert [s.id for s in board.scenes] == [f"s{i}" for i in range(1, len(board.scenes) + 1)]
    panels = [p for s in board.scenes for p in s.panels]
    assert [p.id for p in panels] == [f"p{i}" for i in range(1, len(panels) + 1)]
    assert [s.chapter_index for s in board.scenes] == [1, 2, 3, 4]
    assert board.scenes[0].chapter_title == "CHAPTER I. Day 1"
    speakers = {line.speaker_id for p in panels for line in p.dialogue}
    assert speakers
    assert speakers <= {c.id for c in board.characters} | {NARRATOR}

    meta = board.meta
    assert (meta.analyzer, meta.model, meta.chunk_count, meta.chapter_count) == (
        "llm",
        "qwen-plus",
        4,
        4,
    )
    assert meta.usage["requests"] == 8 == fake.calls()
    assert meta.usage["inputTokens"] > 0
    assert meta.usage["outputTokens"] > 0
    assert set(meta.timings) == {"charactersS", "panelsS", "analyzeS"}
    assert meta.job_id == "job-1"
    assert meta.created_at is not None
    assert meta.analyzer_version == LlmAnalyzer.version
    assert meta.prompt_version == PROMPT_VERSION
    doc = board.to_doc()["meta"]
    assert {"jobId", "createdAt", "analyzer", "analyzerVersion", "model", "promptVersion"} <= set(
        doc
    )

    # One report when planned, then one per chunk of each pass, always moving forward.
    fractions = [f for f, _ in progress]
    assert fractions == sorted(fractions)
    assert len(set(fractions)) == len(progress) == 1 + 2 * 4
    assert progress[0] == (0.0, "chunks planned: 4")
    assert progress[-1] == (1.0, "panels 4/4")
    stages = [stage for _, stage in progress]
    assert stages[1:5] == [f"characters {i}/4" for i in range(1, 5)]
    assert stages[5:] == [f"panels {i}/4" for i in range(1, 5)]


async def test_every_request_asks_for_json_with_the_key(
    fake: FakeLlm, make_analyzer: MakeAnalyzer
) -> None:
    text = make_novel(2)
    await analyze(make_analyzer(), text)
    assert fake.calls("cast") == fake.calls("storyboard") == 2
    for seen in fake.requests:
        assert seen.body["response_format"] == {"type": "json_object"}
        assert seen.body["max_tokens"] == 256
        assert seen.headers["Authorization"] == f"Bearer {KEY}"
        assert all("JSON" in m["content"] for m in seen.messages)


async def test_pass_b_gets_the_cast_and_the_previous_summary(
    fake: FakeLlm, make_analyzer: MakeAnalyzer
) -> None:
    text = make_novel(3)
    chunks = _chunks(text)
    await analyze(make_analyzer(), text)
    boards = {s.prompt.split("Part ")[1][0]: s for s in fake.requests if s.kind == "storyboard"}
    assert "beginning of the novel" in boards["1"].prompt
    for part in (2, 3):
        summary = smart_cast(chunks[part - 2].text)["summary"]
        assert summary in boards[str(part)].prompt
        assert boards[str(part)].cast_names == ["White Rabbit", "Alice"]


SCRIPTED_CAST = {
    "characters": [
        {"name": "White Rabbit", "aliases": ["Rabbit"], "appearance": "pink eyes"},
        {"name": "Alice", "aliases": None, "appearance": None},
        {"name": "Narrator"},
    ],
    "summary": "Alice follows the Rabbit.",
}
SCRIPTED_PANEL = {
    "shotType": "Close Up",
    "description": "The Rabbit checks his watch.",
    "characters": ["the rabbit", "ALICE"],
    "dialogue": [
        {"speaker": "Rabbit", "text": "Oh dear!"},
        {"speaker": "Narrator", "text": "And so it began."},
        {"speaker": "Bill the Lizard", "text": "Who is there?"},
    ],
    "narration": "",
}
SCRIPTED_SCENE = {"location": "bank", "characters": "Alice", "panels": [SCRIPTED_PANEL]}


async def test_names_resolve_through_the_alias_table(
    fake: FakeLlm, make_analyzer: MakeAnalyzer
) -> None:
    fake.enqueue(ok(SCRIPTED_CAST), ok({"scenes": [SCRIPTED_SCENE]}))
    board, _ = await analyze(make_analyzer(), make_novel(1))

    names = [(c.id, c.name) for c in board.characters]
    assert names == [("c1", "White Rabbit"), ("c2", "Alice"), ("c3", "Bill the Lizard")]
    assert board.characters[0].description == "pink eyes"
    assert [c.mentions for c in board.characters] == [1, 1, 1]
    (made,) = board.scenes[0].panels
    assert made.character_ids == ["c1", "c2", "c3"]
    assert [line.speaker_id for line in made.dialogue] == ["c1", NARRATOR, "c3"]
    assert made.shot_type is ShotType.CLOSE_UP
    assert made.narration is None
    assert made.image_prompt  # filled in when the model left it out
    assert board.scenes[0].chapter_index == 1
    assert board.scenes[0].character_ids == ["c2", "c1", "c3"]


async def test_an_invalid_reply_is_repaired_once(
    fake: FakeLlm, make_analyzer: MakeAnalyzer
) -> None:
    fake.enqueue(ok("{not json"))
    board, _ = await analyze(make_analyzer(), make_novel(1))
    repair = fake.requests[1]
    assert repair.is_repair
    assert repair.messages[-2] == {"role": "assistant", "content": "{not json"}
    assert "not valid JSON" in repair.messages[-1]["content"]
    assert board.meta.usage["requests"] == 3


async def test_a_wrong_chapter_number_is_sent_back_for_repair(
    fake: FakeLlm, make_analyzer: MakeAnalyzer
) -> None:
    text = make_novel(3, paragraphs=1)
    assert _chunks(text)[0].chapters == [1, 2, 3]
    wrong = {"scenes": [{"chapter": 9, "panels": [{"shotType": "wide", "description": "x"}]}]}
    fake.rules.append(lambda s: ok(wrong) if s.kind == "storyboard" and not s.is_repair else None)
    board, _ = await analyze(make_analyzer(), text)
    (repair,) = [s for s in fake.requests if s.is_repair]
    assert "must be one of [1, 2, 3]" in repair.messages[-1]["content"]
    assert [s.chapter_index for s in board.scenes] == [1, 2, 3]


async def test_a_second_invalid_reply_fails_the_job_for_good(
    fake: FakeLlm, make_analyzer: MakeAnalyzer
) -> None:
    fake.enqueue(ok({"characters": "nobody"}), ok({"characters": []}))
    with pytest.raises(JobError) as caught:
        await analyze(make_analyzer(), make_novel(1))
    assert (caught.value.code, caught.value.transient) == ("llm_invalid_output", False)
    assert "summary" in caught.value.message
    assert fake.calls() == 2


async def test_empty_text_is_rejected_without_a_request(
    fake: FakeLlm, make_analyzer: MakeAnalyzer
) -> None:
    with pytest.raises(JobError) as caught:
        await analyze(make_analyzer(), " \n ")
    assert caught.value.code == "empty_text"
    assert fake.calls() == 0


# --------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize(("kind", "part"), [("cast", 3), ("storyboard", 4)])
async def test_a_retry_pays_only_for_the_chunks_not_yet_done(
    fake: FakeLlm, make_analyzer: MakeAnalyzer, blobs: MemoryBlobs, kind: str, part: int
) -> None:
    text, chunks = make_novel(5), 5
    assert len(_chunks(text)) == chunks
    fake.rules.append(_fail_once(kind, part, error(500, "InternalError")))
    analyzer = make_analyzer(llm_job_concurrency=1)
    with pytest.raises(JobError) as caught:
        await analyze(analyzer, text, job_id="job-resume")
    assert (caught.value.code, caught.value.transient) == ("llm_unavailable", True)
    done = part - 1  # chunks of the failing pass finished before the failure
    saved = [
        f"checkpoints/job-resume/a-{i}.json" for i in range(chunks if kind != "cast" else done)
    ]
    saved += [f"checkpoints/job-resume/b-{i}.json" for i in range(done if kind != "cast" else 0)]
    assert blobs.checkpoints() == sorted(saved)

    first_run = fake.calls()
    board, progress = await analyze(analyzer, text, job_id="job-resume")
    second_run = fake.calls() - first_run
    remaining = (chunks - done) + chunks if kind == "cast" else chunks - done
    assert second_run == remaining
    assert board.meta.usage["reusedChunks"] == 2 * chunks - remaining
    assert progress[-1] == (1.0, f"panels {chunks}/{chunks}")
    assert blobs.checkpoints() == []  # cleared once the storyboard is built

    fresh, _ = await analyze(analyzer, text, job_id="job-fresh")
    assert (board.characters, board.scenes) == (fresh.characters, fresh.scenes)


async def test_without_a_job_id_nothing_is_checkpointed(
    make_analyzer: MakeAnalyzer, blobs: MemoryBlobs
) -> None:
    await analyze(make_analyzer(), make_novel(2), job_id="")
    assert blobs.data == {}


# --------------------------------------------------------------------------- limits and logs


async def test_process_limit_holds_across_concurrent_jobs(
    fake: FakeLlm, make_analyzer: MakeAnalyzer
) -> None:
    fake.latency_s = 0.05
    analyzer = make_analyzer(llm_process_concurrency=2, llm_job_concurrency=4)
    text = make_novel(4)
    await asyncio.gather(*(analyze(analyzer, text, job_id=f"job-{n}") for n in range(3)))
    assert fake.calls() == 3 * 8
    assert fake.peak_in_flight == 2


async def test_job_limit_holds_within_a_job(fake: FakeLlm, make_analyzer: MakeAnalyzer) -> None:
    fake.latency_s = 0.05
    await analyze(make_analyzer(llm_job_concurrency=3), make_novel(6))
    assert fake.peak_in_flight == 3


async def test_the_key_never_reaches_the_logs(
    fake: FakeLlm, make_analyzer: MakeAnalyzer, monkeypatch: pytest.MonkeyPatch
) -> None:
    saved = structlog.get_config()
    configure_logging("debug", "json")
    # Fresh loggers, so ones cached under an earlier configuration cannot hide debug lines.
    for module in (llm, llm_client):
        monkeypatch.setattr(module, "log", structlog.get_logger(module.__name__))
    echo = f"Incorrect API key provided: {KEY}."
    try:
        with structlog.testing.capture_logs() as logs:
            fake.enqueue(error(429, "Throttling", headers={"Retry-After": "0"}), ok("{bad"))
            await analyze(make_analyzer(llm_max_retries=2), make_novel(2))
            fake.enqueue(error(401, "invalid_api_key", echo))
            with pytest.raises(JobError) as caught:
                await analyze(make_analyzer(), make_novel(1), job_id="job-2")
    finally:
        structlog.configure(**saved)
    assert {entry["log_level"] for entry in logs} >= {"debug", "info", "warning"}
    assert KEY not in json.dumps(logs, default=str)
    assert KEY not in caught.value.message
    assert caught.value.code == "llm_auth_failed"


# --------------------------------------------------------------------------- the whole path


async def _submit_and_wait(runtime: Runtime, text: str) -> Job:
    novel = await store_novel(runtime.backend, "local", "A Tale", text)
    submitted = await runtime.producer.submit(novel.novel_id, "local")
    return await job_finished(runtime.backend.jobs, submitted.job_id)


def _job_settings(make_settings: SettingsFactory, fake: FakeLlm) -> Settings:
    return make_settings(
        llm_base_url=fake.base_url,
        STORYBOARD_LLM_API_KEY=KEY,
        llm_max_output_tokens=256,
        receive_wait_s=0.5,
        visibility_timeout_s=5,
    )


async def test_a_job_runs_end_to_end_on_the_fake_model(
    make_settings: SettingsFactory, fake: FakeLlm
) -> None:
    settings = await prepare(_job_settings(make_settings, fake))
    assert settings.resolved_analyzer == "llm"
    async with open_runtime(settings) as runtime:
        assert isinstance(runtime.analyzer, LlmAnalyzer)
        job = await _submit_and_wait(runtime, make_novel(3))
        assert job.result_key is not None
        data = await runtime.backend.blobs.get(job.result_key)
    assert job.status is JobStatus.COMPLETED
    assert (job.attempts, job.progress.percentage) == (1, 100)
    board = Storyboard.model_validate_json(data)
    assert board.meta.analyzer == "llm"
    assert board.meta.job_id == job.job_id
    assert board.meta.prompt_version == PROMPT_VERSION
    assert board.meta.usage["inputTokens"] > 0
    assert board.meta.usage["requests"] == fake.calls() == 6
    assert [s.chapter_index for s in board.scenes] == [1, 2, 3]
    assert all(seen.headers["Authorization"] == f"Bearer {KEY}" for seen in fake.requests)


async def test_a_moderation_refusal_fails_the_job_at_once(
    make_settings: SettingsFactory, fake: FakeLlm
) -> None:
    refusal = error(400, "data_inspection_failed", "Input data may contain inappropriate content.")
    fake.rules.append(lambda _: refusal)
    settings = await prepare(_job_settings(make_settings, fake))
    async with open_runtime(settings) as runtime:
        job = await _submit_and_wait(runtime, make_novel(1))
    assert job.status is JobStatus.FAILED
    assert job.error is not None
    assert job.error.code == "content_rejected"
    assert job.attempts == 1
    assert fake.calls() == 1


async def test_alice_through_the_smart_fake(fake: FakeLlm, make_analyzer: MakeAnalyzer) -> None:
    text = load_novel_bytes(corpus_file("alice-in-wonderland.txt").read_bytes())
    analyzer = make_analyzer(llm_max_output_tokens=8192)
    board, _ = await analyze(analyzer, text, title="Alice's Adventures in Wonderland")
    assert analyzer.options.chunk_chars == 24_000
    assert board.meta.chapter_count == 12
    assert board.meta.chunk_count == fake.calls("cast") == fake.calls("storyboard")
    assert {s.chapter_index for s in board.scenes} == set(range(1, 13))
    assert board.scenes[0].chapter_title == "CHAPTER I. Down the Rabbit-Hole"
    names = {c.name for c in board.characters}
    assert {"Alice", "Hatter", "Queen"} <= names
    assert Storyboard.model_validate(board.to_doc()) == board
