"""The bundled examples (examples/): where they are, and their systemd
units parsed as systemd reads them."""

from __future__ import annotations

import configparser
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(EXAMPLES / "systemd" / name)
    return parser
