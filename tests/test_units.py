"""lqmf.base.units.format_bytes: the one byte formatter every face and report uses."""

from __future__ import annotations

import pytest

from lqmf.base.units import format_bytes

MIB = 2**20


@pytest.mark.parametrize(
    "n,text",
    [
        (0, "0 B"),
        (1, "1 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (int(1.5 * MIB), "1.5 MiB"),
        (1.5 * MIB, "1.5 MiB"),
        (2 * 2**30, "2.0 GiB"),
        (3 * 2**40, "3.0 TiB"),
        (2000 * 2**40, "2,000.0 TiB"),
        (-1536, "-1.5 KiB"),
        (-5, "-5 B"),
        (None, "-"),
        (float("nan"), "nan"),
        (float("inf"), "∞"),
        (float("-inf"), "−∞"),
    ],
)
def test_format_bytes(n, text):
    assert format_bytes(n) == text


def test_empty_text_for_none_is_the_callers():
    assert format_bytes(None, empty="—") == "—"
    assert format_bytes(0, empty="—") == "0 B"  # zero is a size, not a missing one


@pytest.mark.parametrize(
    "n,text",
    [
        (400 * MIB, "400.0"),
        (5 * MIB, "5.00"),
        (300_000, "0.286"),
        (1234 * 4 * MIB, "4,936.0"),
        (0, "0.000"),
        (float("nan"), "nan"),
        (None, "-"),
    ],
)
def test_a_fixed_unit_for_a_column_keeps_small_sizes_apart(n, text):
    assert format_bytes(n, unit="MiB", small=True) == text


def test_fixed_unit_without_small_keeps_one_decimal():
    assert format_bytes(300_000, unit="MiB") == "0.3"
    assert format_bytes(3 * 2**30, unit="GiB") == "3.0"
    assert format_bytes(1023, unit="B") == "1023"


def test_small_in_the_chosen_unit():
    assert format_bytes(300_000, small=True) == "293.0 KiB"  # 100 units or more: one decimal is enough
    assert format_bytes(40_000, small=True) == "39.06 KiB"
    assert format_bytes(400 * MIB, small=True) == "400.0 MiB"
