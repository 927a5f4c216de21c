"""[static] and [compression]."""

from __future__ import annotations

from pathlib import Path

import pytest

from bext.config import ConfigError, parse_config
from bext.config.schema import COMPRESSIBLE_TYPES


def load(text: str) -> object:
    import tomllib

    return parse_config(tomllib.loads(text), base_dir=Path("/srv/app"))


def test_defaults() -> None:
    config = load("")
    assert config.static.max_age == 0.0  # type: ignore[attr-defined]
    assert config.static.max_cached_file == 256 * 1024  # type: ignore[attr-defined]
    assert config.compression.enabled  # type: ignore[attr-defined]
    assert config.compression.types == COMPRESSIBLE_TYPES  # type: ignore[attr-defined]


def test_values() -> None:
    config = load(
        '[static]\nmax_age = "10m"\nmemory_cache = "8MB"\n'
        '[compression]\nenabled = false\ntypes = ["text/*", "Application/JSON"]\n'
        "brotli_quality = 5\nmin_size = 2048\n"
    )
    assert config.static.max_age == 600  # type: ignore[attr-defined]
    assert config.static.memory_cache == 8 * 1024 * 1024  # type: ignore[attr-defined]
    assert not config.compression.enabled  # type: ignore[attr-defined]
    assert config.compression.types == ("text/*", "application/json")  # type: ignore[attr-defined]
    assert config.compression.brotli_quality == 5  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('[static]\nmax_age = "soon"', "static.max_age"),
        ('[static]\nmax_cached_file = "1GB"', "static.max_cached_file"),
        ("[static]\nmaxage = 1", 'static.maxage: unknown key (did you mean "max_age"?)'),
        ("[compression]\nbrotli_quality = 12", "compression.brotli_quality"),
        ("[compression]\ngzip_level = 0", "compression.gzip_level"),
        ('[compression]\ntypes = ["text html"]', "compression.types"),
        ('[compression]\ntypes = "text/*"', "compression.types"),
    ],
)
def test_bad_values(text: str, where: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(text)
    assert where in str(info.value)
