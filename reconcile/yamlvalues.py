"""Parsing a config file with ruamel.yaml, and the located problems a config
check reports. Positions are 0-based (line, column) pairs, as ruamel.yaml
keeps them (providers/backup/values.py reads them); a Problem shows them
1-based, as editors do.
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError


@dataclass(frozen=True)
class Problem:
    """One located config error; line and column are 1-based."""

    file: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


class ConfigError(Exception):
    """The config file is invalid; `problems` holds every error found."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(problem) for problem in problems))
        self.problems = problems


def parse_yaml(text: str, path: str) -> Any:
    yaml = YAML(typ="rt")
    # Read integers of any length, so that an absurd one is reported at its
    # key like any other bad value; the limit only guards str <-> int.
    digits_limit = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        with warnings.catch_warnings():
            # A reused anchor is legal YAML (the later one wins): no warning.
            warnings.simplefilter("ignore")
            return yaml.load(text)
    except MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = " ".join(part for part in (error.context, error.problem) if part)
        raise ConfigError([Problem(path, line, column, f"YAML syntax: {message}")]) from None
    except YAMLError as error:
        raise ConfigError([Problem(path, 1, 1, f"YAML syntax: {error}")]) from None
    except RecursionError:
        raise ConfigError([Problem(path, 1, 1, "YAML nesting is too deep")]) from None
    except (AttributeError, TypeError, ValueError, KeyError) as error:
        # ruamel.yaml fails this way on some odd documents (recursive merge
        # keys, !!set of a scalar).
        raise ConfigError([Problem(path, 1, 1, f"YAML cannot be read: {error}")]) from None
    finally:
        sys.set_int_max_str_digits(digits_limit)
