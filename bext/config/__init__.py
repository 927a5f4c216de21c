"""bext's configuration: `bext.config.toml` read into frozen, validated dataclasses.

`load_config(path)` is the front door; it raises `ConfigError` listing every problem. The
schema (what can be configured, and the defaults) lives in `bext.config.schema`.
"""

from bext.config.errors import ConfigError
from bext.config.load import DEFAULT_CONFIG_PATH, load_config, parse_config
from bext.config.schema import Config

__all__ = ["DEFAULT_CONFIG_PATH", "Config", "ConfigError", "load_config", "parse_config"]
