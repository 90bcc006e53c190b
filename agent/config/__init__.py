"""Configuration: one YAML file, validated completely before anything starts.

- :mod:`agent.config.schema`: the pydantic models (``extra="forbid"``, frozen);
- :mod:`agent.config.loader`: YAML with the line of every key, ``${ENV}`` expansion,
  validation, secret files;
- :mod:`agent.config.errors`: every problem as ``file:line: field.path: what is wrong,
  what is expected`` (the CLI exits with code 2);
- :mod:`agent.config.values` and :mod:`agent.config.vocab`: value parsers and the CBV
  vocabulary the schema checks against.

This package is the bottom layer: it imports nothing else from ``agent``.
"""

from agent.config.errors import ConfigError, ConfigIssue, iter_issues
from agent.config.loader import (
    Loc,
    line_of,
    load_config,
    load_config_lines,
    parse_config,
    parse_config_lines,
    read_secret_file,
)
from agent.config.schema import (
    DRIVER_TAGS,
    MISSING_HINTS,
    AgentConfig,
    AntennaMapping,
    AnyReaderConfig,
    BarcodeConfig,
    BrokerAddress,
    BufferConfig,
    ChafonConfig,
    CommandsConfig,
    Dbm,
    EstConfig,
    GatewayConfig,
    HidReaderConfig,
    HttpConfig,
    LlrpConfig,
    LlrpReportConfig,
    MqttConfig,
    OnDepartConfig,
    PresenceConfig,
    R2000Config,
    ReaderConfig,
    SigningConfig,
    StatusConfig,
    ThingMagicReaderConfig,
    TlsConfig,
    UplinkConfig,
    is_loopback,
)
from agent.config.values import parse_size, parse_terminator

__all__ = [
    "DRIVER_TAGS",
    "MISSING_HINTS",
    "AgentConfig",
    "AntennaMapping",
    "AnyReaderConfig",
    "BarcodeConfig",
    "BrokerAddress",
    "BufferConfig",
    "ChafonConfig",
    "CommandsConfig",
    "ConfigError",
    "ConfigIssue",
    "Dbm",
    "EstConfig",
    "GatewayConfig",
    "HidReaderConfig",
    "HttpConfig",
    "LlrpConfig",
    "LlrpReportConfig",
    "Loc",
    "MqttConfig",
    "OnDepartConfig",
    "PresenceConfig",
    "R2000Config",
    "ReaderConfig",
    "SigningConfig",
    "StatusConfig",
    "ThingMagicReaderConfig",
    "TlsConfig",
    "UplinkConfig",
    "is_loopback",
    "iter_issues",
    "line_of",
    "load_config",
    "load_config_lines",
    "parse_config",
    "parse_config_lines",
    "parse_size",
    "parse_terminator",
    "read_secret_file",
]
