"""Property-based fuzzing of the app config loader (``stream.config.load_config``) with hypothesis.

Random YAML of the right shape (known sections and keys with values of every type and size),
of the wrong shape (unknown keys, sections that are not mappings, top levels that are lists or
scalars) and random text. Every file either loads into an ``AppConfig`` or raises
``ConfigError`` with one line naming the file, never another exception. Derandomised.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.config import SECTIONS, AppConfig, ConfigError, load_config
from tests.fuzz.cases import ErrorRecords, scaled
from tests.fuzz.test_fuzz_signalling import FUZZ_SETTINGS

# Cases per shape (see test_fuzz_signalling.py for the budget).
STRUCTURED_CASES = scaled(2500)
TEXT_CASES = scaled(1500)

KEYS = {section: [field.name for field in dataclasses.fields(cls)] for section, cls in SECTIONS.items()}
# Drawn from fixed pools where possible: hypothesis spends far more time building a nested value
# than the loader spends refusing it.
ODD_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    1,
    -1,
    2,
    8,
    640,
    65535,
    65536,
    2**64,
    -(2**63),
    0.0,
    0.5,
    1.0,
    -0.5,
    1e-9,
    1e9,
    1e308,
    math.inf,
    -math.inf,
    math.nan,
    "",
    "auto",
    "torch",
    "0",
    "demo",
    "rtsp://x",
    "../../etc/passwd",
    "null",
    "yes",
    "é\u202e",
    "a\nb",
    [],
    [1, 2, 3],
    [0.6, 0.7, 0.7],
    [0.6, "x", 0.7],
    [[1]],
    {},
    {"door": "rtsp://cam"},
    {"bad name": "x"},
    {"door": 5},
    {"door": ""},
    {"a": {"b": []}},
]
scalars = st.sampled_from(ODD_VALUES) | st.integers(min_value=-(2**66), max_value=2**66) | st.floats()
names = st.sampled_from(["", "x", "door", "bad name", "é", "a\nb", "0"])
values = (
    scalars
    | st.text(max_size=12)
    | st.lists(scalars, max_size=3)
    | st.dictionaries(names, scalars, max_size=2)
)


@st.composite
def sections(draw: st.DrawFn) -> Any:
    """A document of known sections and keys (sometimes an unknown one) with arbitrary values,
    or a wrongly shaped document."""
    shape = draw(st.sampled_from(["mapping"] * 8 + ["list", "scalar", "section-not-mapping"]))
    if shape == "list":
        return draw(st.lists(scalars, max_size=3))
    if shape == "scalar":
        return draw(scalars)
    document: dict[Any, Any] = {}
    for section in draw(st.lists(st.sampled_from(sorted(KEYS)), min_size=1, max_size=3, unique=True)):
        if shape == "section-not-mapping":
            document[section] = draw(scalars)
            continue
        keys = draw(st.lists(st.sampled_from(KEYS[section]), max_size=4, unique=True))
        document[section] = {key: draw(values) for key in keys}
        if draw(st.integers(0, 9)) == 0:
            document[section][draw(names | st.text(max_size=10))] = draw(scalars)
    if draw(st.integers(0, 9)) == 0:
        document[draw(names | st.integers())] = {}
    return document


YAML_PIECES = [
    "server:",
    "pipeline:",
    "tracker:",
    "source:",
    "alerts:",
    "scorer:",
    "nonsense:",
    "\n",
    "\n  ",
    " ",
    "threshold: ",
    "sources: ",
    "max_age_frames: ",
    "0.5",
    "-1",
    "1e400",
    ".nan",
    ".inf",
    "null",
    "~",
    "true",
    "[",
    "]",
    "{",
    "}",
    ",",
    ":",
    "- ",
    "&a ",
    "*a",
    "!!python/object/apply:os.system ['true']",
    "!!binary AAAA",
    "'",
    '"',
    "#",
    "|",
    ">",
    "? ",
    "---",
    "...",
    "\t",
    "%YAML 1.1",
    "\ufeff",
    "é",
    "{x: y",
]
yaml_text = st.lists(st.sampled_from(YAML_PIECES), max_size=24).map("".join)


def check_file(path: Path) -> str:
    """Load ``path``; returns "loaded" or "refused", failing on any other outcome."""
    try:
        config = load_config(path)
    except ConfigError as error:
        message = str(error)
        assert "\n" not in message, message
        assert message.startswith(str(path)) or str(path) in message, message
        return "refused"
    assert isinstance(config, AppConfig)
    return "loaded"


@pytest.mark.parametrize("shape", ["structured", "text"])
def test_random_config_files_load_or_are_refused_in_one_line(tmp_path: Path, shape: str) -> None:
    path = tmp_path / "fuzz.yaml"
    outcomes = {"loaded": 0, "refused": 0}
    errors = ErrorRecords()
    examples = STRUCTURED_CASES if shape == "structured" else TEXT_CASES

    def dump(document: Any) -> str:
        return yaml.safe_dump(document, allow_unicode=True)

    strategy = sections().map(dump) if shape == "structured" else yaml_text

    @settings(max_examples=examples, **FUZZ_SETTINGS)
    @given(text=strategy)
    def one(text: str) -> None:
        path.write_text(text, encoding="utf-8")
        outcomes[check_file(path)] += 1

    with errors.watching():
        one()
    errors.assert_none()
    assert sum(outcomes.values()) >= examples
    # Both outcomes occur: the generator reaches the valid configs as well as the refusals.
    assert outcomes["loaded"] > 0 and outcomes["refused"] > 0, outcomes


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # Found by fuzzing: the key was echoed raw, newline and all.
        ('crop:\n  "bad\\nkey": 1\n', "unknown key 'crop.bad\\nkey', expected one of"),
        # Found by fuzzing: AlertConfig called .lower() on a mapping (AttributeError).
        (
            "alerts:\n  webhook_url: {a: 1}\n",
            "bad value for 'alerts.webhook_url': expected a string or null, got dict",
        ),
        (
            "tracker:\n  detect_every_n_frames: true\n",
            "'tracker.detect_every_n_frames': expected an integer, got bool",
        ),
        ("crop:\n  mode: round\n", "'crop.mode': expected one of 'box', 'aligned', got str 'round'"),
    ],
)
def test_wrong_keys_and_types_are_one_line_config_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert message in str(refused.value) and "\n" not in str(refused.value)
