"""Durations and sizes."""

from __future__ import annotations

import pytest

from bext.config.units import format_duration, format_size, parse_duration, parse_size


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (0, 0.0),
        (30, 30.0),
        (1.5, 1.5),
        ("250ms", 0.25),
        ("30s", 30.0),
        ("1.5s", 1.5),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1d", 86400.0),
        (" 10 s ", 10.0),
    ],
)
def test_durations(value: object, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["30 seconds", "30", "-1s", "1w", "", "s", "30S", True, -1, [1]])
def test_bad_durations(value: object) -> None:
    with pytest.raises(ValueError, match=r'expected a duration such as "30s" or "500ms", got'):
        parse_duration(value)


def test_bad_duration_message_quotes_value() -> None:
    with pytest.raises(ValueError) as info:
        parse_duration("30 seconds")
    assert str(info.value) == 'expected a duration such as "30s" or "500ms", got "30 seconds"'


def test_nan_and_infinity_are_not_durations() -> None:
    for value in (float("nan"), float("inf")):
        with pytest.raises(ValueError):
            parse_duration(value)


@pytest.mark.parametrize(
    ("value", "size"),
    [
        (0, 0),
        (512, 512),
        ("512", 512),
        ("512B", 512),
        ("16K", 16384),
        ("16KB", 16384),
        ("16KiB", 16384),
        ("16kb", 16384),
        ("100MB", 100 * 1024 * 1024),
        ("1GB", 1024**3),
        ("1.5K", 1536),
        ("2 MiB", 2 * 1024 * 1024),
    ],
)
def test_sizes(value: object, size: int) -> None:
    assert parse_size(value) == size


@pytest.mark.parametrize("value", ["lots", "16 kilobytes", "16iB", "-1K", "", -1, 1.5, True])
def test_bad_sizes(value: object) -> None:
    with pytest.raises(ValueError, match=r'expected a size such as "16KB" or "100MB", got'):
        parse_size(value)


def test_fractional_bytes_are_refused() -> None:
    with pytest.raises(ValueError, match="not a whole number of bytes"):
        parse_size("0.1K")


def test_formatting() -> None:
    assert format_size(16384) == "16KiB"
    assert format_size(100 * 1024 * 1024) == "100MiB"
    assert format_size(512) == "512 bytes"
    assert format_size(0) == "0 bytes"
    assert format_duration(0.25) == "250ms"
    assert format_duration(30) == "30s"
    assert format_duration(300) == "5m"
    assert format_duration(1.5) == "1.5s"
