"""Logic around the backends, tested alone: stop strings, sampling, chat templates, parameters."""

from __future__ import annotations

import pytest

from lqmf.base.generation import GenerationParams
from server.runtime.backends.base import StopMatcher
from server.runtime.backends.chat import FALLBACK_TEMPLATE, render_chat, validate_messages


def feed_all(stops, pieces):
    matcher = StopMatcher(stops)
    out = []
    for piece in pieces:
        text, stopped = matcher.feed(piece)
        out.append(text)
        if stopped:
            return "".join(out), True
    out.append(matcher.flush())
    return "".join(out), False


@pytest.mark.parametrize(
    "stops,pieces,expected,stopped",
    [
        ((), ["a", "b"], "ab", False),
        (("END",), ["hello E", "N", "D more"], "hello ", True),
        (("END",), ["hello E", "N", "x"], "hello ENx", False),  # a false start is released
        (("\n\n", "##"), ["one\n", "\ntwo"], "one", True),
        (("##",), ["a#", "b#", "#c"], "a#b", True),
        (("stop",), ["sto"], "sto", False),  # held back, then flushed at the end
    ],
)
def test_stop_matcher(stops, pieces, expected, stopped):
    assert feed_all(stops, pieces) == (expected, stopped)


def test_stop_matcher_holds_back_only_possible_prefixes():
    matcher = StopMatcher(["</s>"])
    assert matcher.feed("abc<") == ("abc", False)
    assert matcher.feed("/x") == ("</x", False)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"temperature": -1}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"top_k": -1}, "top_k"),
        ({"min_p": 1.0}, "min_p"),
        ({"repeat_penalty": 0}, "repeat_penalty"),
    ],
)
def test_bad_parameters_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GenerationParams(**kwargs)


def test_sampling_filters():
    import torch

    from server.runtime.backends.transformers_backend import sample_next

    logits = torch.tensor([0.0, 5.0, 4.9, -3.0])
    seen = torch.tensor([], dtype=torch.long)
    gen = torch.Generator().manual_seed(0)
    assert sample_next(logits.clone(), GenerationParams(temperature=0), seen, gen) == 1
    top1 = GenerationParams(temperature=1.0, top_k=1, min_p=0.0)
    assert {sample_next(logits.clone(), top1, seen, gen) for _ in range(20)} == {1}
    top2 = GenerationParams(temperature=1.0, top_k=2, min_p=0.0)
    assert {sample_next(logits.clone(), top2, seen, gen) for _ in range(200)} == {1, 2}
    nucleus = GenerationParams(temperature=1.0, top_k=0, top_p=0.5, min_p=0.0)
    assert {sample_next(logits.clone(), nucleus, seen, gen) for _ in range(50)} == {1}
    # The repeat penalty pushes an already-seen favourite below the runner-up.
    penalised = GenerationParams(temperature=0, repeat_penalty=1.5)
    assert sample_next(logits.clone(), penalised, torch.tensor([1]), gen) == 2


def test_fallback_template_is_chatml():
    text = render_chat(None, [{"role": "user", "content": "hi"}])
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert "im_start" in FALLBACK_TEMPLATE


def test_template_errors_and_bad_messages_are_clear():
    refusing = "{{ raise_exception('system messages are not supported') }}"
    with pytest.raises(ValueError, match="system messages are not supported"):
        render_chat(refusing, [{"role": "system", "content": "x"}])
    with pytest.raises(ValueError, match="empty"):
        validate_messages([])
    with pytest.raises(ValueError, match="role"):
        validate_messages([{"role": "wizard", "content": "x"}])
    with pytest.raises(ValueError, match="content"):
        validate_messages([{"role": "user"}])
