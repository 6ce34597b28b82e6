"""llama.cpp's `llama-perplexity --kl-divergence` as a second yardstick: built with the other tools, fed LQMF's
own windows, and agreeing with LQMF's fidelity on the demo models (the real program, the real models)."""

from __future__ import annotations

import struct

import pytest

from agents.measure.experiments import heldout_text
from agents.measure.fidelity import scoring_chunks
from agents.measure.llama_perplexity import base_header, kld_against, kld_base, kld_text, lost_tail, parse_kld_output
from lqmf.base.errors import LQMFError
from lqmf.base.settings import Settings
from lqmf.base.tools import PERPLEXITY, TARGETS, LlamaTools, tools_folder

# A real run's output (demo-q4_k_m against demo-f16 on the held-out text, 8 windows of 512) as printed, less its
# per-window table and some percentile lines.
CAPTURED = """\
0.00.101.702 I kl_divergence: computing over 8 chunks, n_ctx=512, batch_size=2048, n_seq=4
0.02.140.699 I kl_divergence: 2.04 seconds per pass - ETA 0.07 minutes


====== Perplexity statistics ======
Mean PPL(Q)                   :  91.128331 ±   4.937204
Mean PPL(base)                :  90.880405 ±   4.932251
Cor(ln(PPL(Q)), ln(PPL(base))):  99.98%
Mean ln(PPL(Q)/PPL(base))     :   0.002724 ±   0.001171
Mean PPL(Q)/PPL(base)         :   1.002728 ±   0.001174
Mean PPL(Q)-PPL(base)         :   0.247926 ±   0.106351

====== KL divergence statistics ======
Mean    KLD:   0.001377 ±   0.000047
Maximum KLD:   0.039160
99.9%   KLD:   0.028137
Median  KLD:   0.000818
Minimum KLD:   0.000004

====== Token probability statistics ======
Mean    Δp: -0.047 ± 0.011 %
RMS Δp    :  0.510 ± 0.032 %
Same top p: 96.029 ± 0.432 %
"""


@pytest.fixture(scope="module")
def tools() -> LlamaTools:
    found = LlamaTools.in_folder(tools_folder(Settings()))
    if not found.ready():
        pytest.skip(f"llama.cpp's tools with {PERPLEXITY} are not built in {found.folder} (`make tools`)")
    return found


@pytest.fixture(scope="module")
def measured(demo_dir, tools, tmp_path_factory):
    """llama-perplexity's figures for demo-q4_k_m against demo-f16, and LQMF's own over the same text."""
    from lqmf.api import Library

    home = tmp_path_factory.mktemp("kld-home")
    settings = Settings(home=home, models_dir_override=demo_dir, keep_alive_s=-1)
    text, _ = heldout_text()
    base = kld_base(demo_dir / "demo-f16.gguf", text, home / "demo-f16.kld", settings=settings)
    theirs = kld_against(demo_dir / "demo-q4_k_m.gguf", base, settings=settings)
    with Library(settings) as library:
        ours = library.fidelity("demo-q4_k_m", "demo-f16", text=text).row("demo-q4_k_m").fidelity
    return theirs, ours, base


def test_the_parser_reads_every_figure_of_a_real_run(tmp_path):
    got = parse_kld_output(CAPTURED, tmp_path / "run.log", wall_time_s=4.6543)
    assert (got.kld_mean, got.kld_mean_error, got.kld_median) == (0.001377, 0.000047, 0.000818)
    assert got.same_top == pytest.approx(0.96029) and got.same_top_error == pytest.approx(0.00432)
    assert (got.ppl_q, got.ppl_q_error, got.ppl_base, got.ppl_base_error) == (91.128331, 4.937204, 90.880405,
                                                                               4.932251)
    assert (got.ln_ppl_ratio, got.ln_ppl_ratio_error) == (0.002724, 0.001171)
    assert (got.chunks, got.tokens, got.wall_time_s) == (8, 8 * 255, 4.654)


@pytest.mark.parametrize("line", ["Mean    KLD", "Median  KLD", "Same top p", "Mean PPL(base)",
                                  "Mean ln(PPL(Q)/PPL(base))"])
def test_a_missing_figure_is_named_with_the_log(tmp_path, line):
    log_path = tmp_path / "run.log"
    output = "\n".join(row for row in CAPTURED.splitlines() if not row.startswith(line))
    with pytest.raises(LQMFError, match=rf"no '{line.replace('(', '.').replace(')', '.')}' line .see {log_path}"):
        parse_kld_output(output, log_path)


def test_a_folder_built_before_llama_perplexity_is_not_ready(tmp_path):
    """`make tools` rebuilds a folder made by an older LQMF: ready() is what ensure_llama_tools asks."""
    assert PERPLEXITY in TARGETS
    for name in TARGETS:
        program = tmp_path / name
        program.write_text("#!/bin/sh\n")
        program.chmod(0o755)
    assert LlamaTools.in_folder(tmp_path).ready()
    (tmp_path / PERPLEXITY).unlink()
    assert not LlamaTools.in_folder(tmp_path).ready()


def test_the_text_gives_llama_perplexity_lqmfs_windows(demo_dir):
    """llama.cpp overwrites each window's first token with BOS: a separator there keeps LQMF's tokens in place."""
    import llama_cpp

    text, _ = heldout_text()
    laid = kld_text(demo_dir / "demo-f16.gguf", text, chunk=512, chunks=8)
    assert laid.aligned and laid.separator is not None and (laid.chunk, laid.windows) == (512, 8)
    vocab = llama_cpp.Llama(str(demo_dir / "demo-f16.gguf"), vocab_only=True, verbose=False)
    try:
        ids = vocab.tokenize(text.encode(), add_bos=False, special=True)
        bos = vocab.token_bos()
        windows = scoring_chunks(ids, 512, bos)[:8]

        def as_llama_perplexity_sees(data: bytes) -> list[list[int]]:
            tokens = vocab.tokenize(data, add_bos=True, special=False)
            return [[bos, *tokens[k * 512 + 1:(k + 1) * 512]] for k in range(8)]

        assert as_llama_perplexity_sees(laid.data) == [w for w, _ in windows]
        # The plain text, as llama-perplexity would cut it: from the second window on, a token short.
        assert as_llama_perplexity_sees(text.encode())[1:] != [w for w, _ in windows][1:]
    finally:
        vocab.close()


def test_llama_perplexity_and_lqmf_agree_on_the_demo_quant(measured):
    theirs, ours, base = measured
    assert base_header(base) == (512, 2048, 8)
    assert theirs.tokens == ours.tokens == 8 * 255 and theirs.chunks == 8
    assert theirs.kld_mean == pytest.approx(ours.kld_mean, rel=0.05)  # the bar
    # The same tokens at the same positions: the reference's perplexity is the same number (llama.cpp's
    # 16-bit log-probabilities cost a few millionths), which the plain text's shifted windows miss by 0.7%.
    assert theirs.ppl_base == pytest.approx(ours.ppl_ref, rel=1e-4)
    assert theirs.ppl_q == pytest.approx(ours.ppl_test, rel=1e-3)
    assert theirs.kld_mean == pytest.approx(ours.kld_mean, rel=0.01)
    assert theirs.kld_median == pytest.approx(ours.kld_median, rel=0.05)
    assert abs(theirs.same_top - ours.top1_agreement) <= 2 / ours.tokens  # a near tie may flip on float noise
    assert theirs.log_path.is_file() and "--kl-divergence" in theirs.log_path.read_text().splitlines()[0]


def test_a_run_whose_log_stops_short_of_the_statistics_is_told_apart(measured):
    """llama.cpp's logger thread is never joined: a loaded machine may lose the last lines. A run that scored every
    chunk but lacks a statistic is run again (lost_tail); one that scored nothing is not (its text is too short)."""
    theirs, _, _ = measured
    full = theirs.log_path.read_text(encoding="utf-8")
    assert not lost_tail(full)
    assert lost_tail(full[:full.index("Maximum KLD")])  # as CI once saw it: cut after "Mean KLD"
    assert not lost_tail(full[:full.index("chunk ")])  # nothing scored yet: no rerun can help


def test_bad_inputs_say_what_to_do(demo_dir, tools, tmp_path, measured):
    settings = Settings(home=tmp_path)
    not_a_base = tmp_path / "not-a-base.kld"
    not_a_base.write_bytes(b"hello, world, not logits")
    with pytest.raises(LQMFError, match="not a llama-perplexity --kl-divergence-base file"):
        kld_against(demo_dir / "demo-q4_k_m.gguf", not_a_base, settings=settings)
    with pytest.raises(LQMFError, match="fewer than llama-perplexity's two windows"):
        kld_base(demo_dir / "demo-f16.gguf", "too short", tmp_path / "short.kld", settings=settings)
    assert not (tmp_path / "short.kld").exists()
    with pytest.raises(LQMFError, match="no GGUF file"):
        kld_text(tmp_path / "missing.gguf", "text")
    # A base from another vocabulary (its header says 4096 tokens): llama-perplexity only logs that and reads
    # on; here the run is refused.
    other = tmp_path / "other-vocabulary.kld"
    data = bytearray(measured[2].read_bytes())
    data[12:16] = struct.pack("<i", 4096)
    other.write_bytes(bytes(data))
    with pytest.raises(LQMFError, match="not made with the same vocabulary"):
        kld_against(demo_dir / "demo-q4_k_m.gguf", other, settings=settings)
