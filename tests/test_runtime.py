"""The runtime on the real demo models: backends, streaming, and the ModelManager's guarantees."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest

from lqmf.base.errors import ContextOverflow, InsufficientMemory, ModelLoadError, ModelNotFound, QueueFull
from lqmf.base.generation import GenerationParams
from lqmf.base.settings import Settings
from server.runtime.budget import estimate_bytes
from server.runtime.manager import ModelManager

GREEDY = GenerationParams(max_tokens=48, temperature=0)
CHAT = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "What does shuffle do?"}]
ALL_FORMATS = ["demo-f16", "demo-q8_0", "demo-q4_k_m", "demo-gptq-4bit", "demo-bnb-nf4", "demo-bnb-int8", "demo-hf"]
# A generation that runs until stopped: no EOS, the whole context.
ENDLESS = GenerationParams(max_tokens=100_000, temperature=0, ignore_eos=True)


def make_manager(models: Path, tmp_path: Path, **overrides) -> ModelManager:
    return ModelManager(Settings(home=tmp_path, models_dir_override=models, **overrides))


def subset(demo_dir: Path, tmp_path: Path, *names: str) -> Path:
    """A models folder holding only some demo models (copies, so a test may break them)."""
    folder = tmp_path / "models"
    folder.mkdir()
    for name in names:
        src = demo_dir / name if (demo_dir / name).is_dir() else demo_dir / f"{name}.gguf"
        if src.is_dir():
            shutil.copytree(src, folder / src.name)
        else:
            shutil.copy2(src, folder / src.name)
    return folder


def hold(manager: ModelManager, name: str):
    """Occupy a model's worker until the returned event is set (a request that is 'generating')."""
    release, started = threading.Event(), threading.Event()

    def work(backend, cancel):
        started.set()
        release.wait(30)
        yield "released"

    job = manager.submit(name, work)
    assert started.wait(30)
    return job, release


@pytest.fixture(scope="module")
def manager(demo_dir, tmp_path_factory):
    m = make_manager(demo_dir, tmp_path_factory.mktemp("runtime-home"), keep_alive_s=-1)
    yield m
    m.close()


@pytest.mark.parametrize("name", ALL_FORMATS)
def test_every_format_chats_streams_and_counts(manager, name):
    stream_job = manager.stream(name, CHAT, GREEDY)
    chunks = list(stream_job)
    final = chunks[-1]
    assert final.finish_reason in {"stop", "length"} and final.timings is not None
    streamed_ids = [t for c in chunks for t in c.token_ids]
    text = "".join(c.text for c in chunks)
    assert text.strip(), f"{name} said nothing"
    assert final.timings.completion_tokens == len(streamed_ids) > 0
    backend = manager.get(name).backend
    template = backend.apply_chat_template(CHAT)
    assert "You are terse." in template and template.rstrip().endswith("assistant")
    assert final.timings.prompt_tokens == len(backend.tokenize(template, add_special=False))
    # Incremental decoding gives exactly the full decode of the same ids.
    assert text == backend.detokenize(streamed_ids)
    # Non-streaming is the same generation.
    result = manager.generate(name, CHAT, GREEDY)
    assert result.text == text and result.token_ids == streamed_ids
    assert len(chunks) >= 2  # it really streamed


def test_gguf_and_hf_share_tokenizer_and_template(manager):
    gguf = manager.call("demo-f16", lambda b: (b.apply_chat_template(CHAT), b.chat_prompt_ids(CHAT)))
    hf = manager.call("demo-hf", lambda b: (b.apply_chat_template(CHAT), b.chat_prompt_ids(CHAT)))
    assert gguf == hf


def test_stop_strings_and_length(manager):
    # ignore_eos: 40 tokens to cut, whenever this machine's demo model would have ended its answer.
    free = manager.generate("demo-q8_0", "def ", GenerationParams(max_tokens=40, temperature=0, ignore_eos=True))
    assert len(free.text) > 4
    stop = free.text[2:4]
    cut = manager.generate("demo-q8_0", "def ", GenerationParams(max_tokens=40, temperature=0, ignore_eos=True,
                                                                 stop=(stop,)))
    assert stop not in cut.text and free.text.startswith(cut.text) and cut.finish_reason == "stop"
    short = manager.generate("demo-q8_0", "def ", GenerationParams(max_tokens=3, temperature=0, ignore_eos=True))
    assert short.finish_reason == "length" and short.completion_tokens == 3


def test_seeded_sampling_repeats(manager):
    params = GenerationParams(max_tokens=24, temperature=0.9, top_k=50, top_p=0.95, seed=7)
    for name in ("demo-q4_k_m", "demo-hf"):
        first = manager.generate(name, "import ", params).text
        assert first == manager.generate(name, "import ", params).text


def test_prompt_longer_than_context_is_refused_with_numbers(manager):
    long_prompt = "word " * 3000
    with pytest.raises(ContextOverflow, match=r"the prompt is \d+ tokens .* holds 1024"):
        manager.generate("demo-q4_k_m", long_prompt, GREEDY)
    assert manager.generate("demo-q4_k_m", "ok", GREEDY).completion_tokens > 0  # still serving


def test_unknown_model_suggests_names(manager):
    with pytest.raises(ModelNotFound, match="demo-q4-k-m") as info:
        manager.load("demo-q4-k-m")
    assert "demo-q4_k_m" in info.value.hint


def test_concurrent_first_requests_load_once(demo_dir, tmp_path):
    m = make_manager(subset(demo_dir, tmp_path, "demo-q4_k_m"), tmp_path)
    try:
        barrier = threading.Barrier(8)
        results: list = [None] * 8

        def request(i: int) -> None:
            barrier.wait()
            results[i] = m.generate("demo-q4_k_m", CHAT, GREEDY)

        threads = [threading.Thread(target=request, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert m.loads() == {"demo-q4_k_m": 1}
        assert all(r is not None and r.text == results[0].text for r in results)
    finally:
        m.close()


def test_requests_on_one_model_run_fifo(manager):
    jobs = [manager.stream("demo-q4_k_m", f"def f{i}(", GREEDY) for i in range(8)]
    outputs: list = [None] * 8

    def consume(i: int) -> None:
        outputs[i] = list(jobs[i])

    threads = [threading.Thread(target=consume, args=(i,)) for i in reversed(range(8))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(o and o[-1].finish_reason in {"stop", "length"} for o in outputs)
    starts = [job.started_at for job in jobs]
    assert starts == sorted(starts)


def test_cancel_frees_the_worker_within_a_second(manager):
    job = manager.stream("demo-hf", "def ", ENDLESS)
    iterator = iter(job)
    next(iterator)
    start = time.perf_counter()
    job.cancel()
    rest = list(iterator)
    stopped = time.perf_counter() - start
    assert rest[-1].finish_reason == "cancelled" and stopped < 1.0
    follow = manager.generate("demo-hf", "ok", GREEDY)  # the worker is free again
    assert follow.completion_tokens > 0


def test_a_consumer_that_goes_away_cancels(manager):
    job = manager.stream("demo-hf", "def ", ENDLESS)
    iterator = iter(job)
    next(iterator)
    iterator.close()  # what a disconnected HTTP client does
    assert job.done.wait(1.0) and job.cancel_event.is_set()
    left = []
    while not job.outputs.empty():
        left.append(job.outputs.get_nowait())
    assert left[-2].finish_reason == "cancelled"  # then the end marker


def test_queue_full_is_an_error_not_a_wait(demo_dir, tmp_path):
    m = make_manager(subset(demo_dir, tmp_path, "demo-q4_k_m"), tmp_path, queue_size=1, parallel=1)
    try:
        running, release = hold(m, "demo-q4_k_m")
        waiting = m.stream("demo-q4_k_m", "x", GREEDY)  # fills the queue
        with pytest.raises(QueueFull, match="requests waiting"):
            m.stream("demo-q4_k_m", "y", GREEDY)
        release.set()
        assert running.result() == ["released"]
        assert waiting.result()[-1].finish_reason in {"stop", "length"}
    finally:
        m.close()


def test_different_models_generate_in_parallel(manager):
    manager.load("demo-hf")
    manager.load("demo-bnb-int8")
    a = manager.stream("demo-hf", "def ", ENDLESS)
    b = manager.stream("demo-bnb-int8", "def ", ENDLESS)
    ra, rb = a.result(), b.result()
    assert ra[-1].timings.completion_tokens > 500 and rb[-1].timings.completion_tokens > 500
    # The two generations overlapped in time: neither waited for the other.
    assert a.started_at < b.finished_at and b.started_at < a.finished_at
    assert b.started_at < a.started_at + 0.5 * (a.finished_at - a.started_at)


def test_eviction_picks_the_lru_idle_model_never_a_busy_one(demo_dir, tmp_path):
    models = subset(demo_dir, tmp_path, "demo-q4_k_m", "demo-q8_0", "demo-f16")
    m = make_manager(models, tmp_path, max_models=2, keep_alive_s=-1)
    try:
        m.generate("demo-q4_k_m", "a", GREEDY)
        m.generate("demo-q8_0", "a", GREEDY)
        m.generate("demo-q4_k_m", "b", GREEDY)  # q8_0 is now the least recently used
        m.load("demo-f16")
        assert {x["name"] for x in m.loaded()} == {"demo-q4_k_m", "demo-f16"}
        # Make the least recently used model busy: the other one must go instead.
        busy, release = hold(m, "demo-q4_k_m")
        m.generate("demo-f16", "c", GREEDY)
        m.load("demo-q8_0")
        assert {x["name"] for x in m.loaded()} == {"demo-q4_k_m", "demo-q8_0"}
        assert not busy.done.is_set()
        # Every loaded model busy: a third is refused, not forced in.
        busy2, release2 = hold(m, "demo-q8_0")
        with pytest.raises(InsufficientMemory, match="every loaded model is busy"):
            m.load("demo-f16")
        release.set()
        release2.set()
        assert busy.result() == busy2.result() == ["released"]
    finally:
        m.close()


def test_over_budget_load_is_refused_with_the_estimate(demo_dir, tmp_path):
    models = subset(demo_dir, tmp_path, "demo-hf")
    probe = make_manager(models, tmp_path, context_length=1024)
    need = estimate_bytes(probe.record("demo-hf"), 1024)
    probe.close()
    tight = make_manager(models, tmp_path, context_length=1024, max_memory_mb=need // 2**20 - 1)
    try:
        with pytest.raises(InsufficientMemory, match=rf"needs about {need / 2**20:.0f} MiB .* budget is"):
            tight.load("demo-hf")
        assert tight.loaded() == []
    finally:
        tight.close()
    roomy = make_manager(models, tmp_path, context_length=1024, max_memory_mb=need // 2**20 + 1)
    try:
        assert roomy.load("demo-hf").estimate_bytes == need
    finally:
        roomy.close()


def test_truncated_gguf_fails_to_load_while_others_serve(demo_dir, tmp_path):
    models = subset(demo_dir, tmp_path, "demo-q4_k_m")
    data = (demo_dir / "demo-f16.gguf").read_bytes()
    (models / "broken.gguf").write_bytes(data[: int(len(data) * 0.9)])
    m = make_manager(models, tmp_path)
    try:
        running, release = hold(m, "demo-q4_k_m")
        with pytest.raises(ModelLoadError, match="broken"):
            m.load("broken")
        release.set()
        assert running.result() == ["released"]
        assert m.generate("demo-q4_k_m", CHAT, GREEDY).completion_tokens > 0
        assert [x["name"] for x in m.loaded()] == ["demo-q4_k_m"]
    finally:
        m.close()


def test_keep_alive_unloads_idle_models(demo_dir, tmp_path):
    m = make_manager(subset(demo_dir, tmp_path, "demo-q4_k_m", "demo-q8_0"), tmp_path, keep_alive_s=0.5)
    try:
        m.generate("demo-q4_k_m", "a", GREEDY)
        m.generate("demo-q8_0", "a", GREEDY, keep_alive_s=-1)  # forever
        assert m.is_loaded("demo-q4_k_m")
        deadline = time.monotonic() + 3
        while m.is_loaded("demo-q4_k_m") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not m.is_loaded("demo-q4_k_m") and m.is_loaded("demo-q8_0")
        m.generate("demo-q4_k_m", "a", GREEDY, keep_alive_s=0)  # unload right after the request
        deadline = time.monotonic() + 1
        while m.is_loaded("demo-q4_k_m") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not m.is_loaded("demo-q4_k_m")
    finally:
        m.close()


def test_unusable_model_gives_a_clear_load_error(demo_dir, tmp_path):
    models = tmp_path / "m"
    models.mkdir()
    (models / "junk.gguf").write_bytes(b"not a gguf at all")
    m = make_manager(models, tmp_path)
    try:
        with pytest.raises(ModelLoadError, match="magic"):
            m.load("junk")
    finally:
        m.close()


def test_full_logits_agree_with_greedy_decoding(manager):
    import numpy as np

    from lqmf.base.errors import ContextOverflow

    ids = manager.call("demo-hf", lambda b: b.chat_prompt_ids(CHAT))
    logits = manager.call("demo-hf", lambda b: b.logits(ids))
    assert logits.shape == (len(ids), 2048) and np.isfinite(logits).all()
    first = manager.generate("demo-hf", ids, GenerationParams(max_tokens=1, temperature=0, ignore_eos=True))
    assert first.token_ids == [int(np.argmax(logits[-1]))]
    # GGUF: a logits_all context made for the call; its last row is what greedy decoding picks too.
    gguf = manager.call("demo-q4_k_m", lambda b: b.logits(ids))
    assert gguf.shape == (len(ids), 2048) and np.isfinite(gguf).all()
    first = manager.generate("demo-q4_k_m", ids, GenerationParams(max_tokens=1, temperature=0, ignore_eos=True))
    assert first.token_ids == [int(np.argmax(gguf[-1]))]
    with pytest.raises(ContextOverflow):
        manager.call("demo-q4_k_m", lambda b: b.logits([1] * (b.context_length + 2)))


def test_fast_streams_are_handed_over_in_batches_slow_ones_at_once(demo_dir, tmp_path):
    m = make_manager(subset(demo_dir, tmp_path, "demo-q4_k_m"), tmp_path, stream_batch_ms=50)
    try:
        def fast(backend, cancel):
            yield from range(200)

        def slow(backend, cancel):
            for i in range(5):
                time.sleep(0.03)  # slower than 50 ms / 4: nothing may wait for a batch
                yield i

        for work, most_deliveries, least_deliveries in ((fast, 10, 2), (slow, 6, 6)):
            job = m.submit("demo-q4_k_m", work)
            assert job.done.wait(10)
            deliveries = []
            while not job.outputs.empty():
                deliveries.append(job.outputs.get_nowait())
            assert least_deliveries <= len(deliveries) <= most_deliveries, deliveries
            assert deliveries[0] == 0  # the first output never waits
            flat = [x for d in deliveries[:-1] for x in (d if isinstance(d, list) else [d])]
            assert flat == list(range(200 if work is fast else 5))
        # The consumer still sees every output, in order.
        assert m.submit("demo-q4_k_m", fast).result() == list(range(200))
    finally:
        m.close()
