"""The app config: configs/default.yaml in sync with the dataclasses; bad files name key and file."""

from __future__ import annotations

import dataclasses
import re

import pytest
import yaml

from engine.scorer_config import ScorerConfig
from stream.config import SECTIONS, AppConfig, ConfigError, load_config
from tests.conftest import REPO_ROOT

DEFAULT_YAML = REPO_ROOT / "configs" / "default.yaml"


def test_default_yaml_equals_the_built_in_defaults():
    loaded = load_config(DEFAULT_YAML)
    defaults = AppConfig()
    for section in (
        "source",
        "detector",
        "tracker",
        "crop",
        "encoder",
        "model",
        "pipeline",
        "alerts",
        "output",
    ):
        assert getattr(loaded, section) == getattr(defaults, section), section
    # The scorer keys it sets are ScorerConfig's own defaults, so the checkpoint's windowing stays.
    scorer_defaults = ScorerConfig()
    assert loaded.scorer_overrides
    for key, value in loaded.scorer_overrides.items():
        assert getattr(scorer_defaults, key) == value, key
    assert "window_size" not in loaded.scorer_overrides and "sample_rate_hz" not in loaded.scorer_overrides


def test_default_yaml_lists_every_key_once_with_a_comment():
    text = DEFAULT_YAML.read_text()
    raw = yaml.safe_load(text)
    assert set(raw) == set(SECTIONS)
    for section, cls in SECTIONS.items():
        names = {f.name for f in dataclasses.fields(cls)}
        given = set(raw[section])
        if section == "scorer":
            # The checkpoint's windowing is documented in a comment instead of set.
            assert given == names - {"window_size", "sample_rate_hz", "min_samples"}
            assert "window_size and sample_rate_hz come from the checkpoint" in text
        else:
            assert given == names, section
    key_lines = [line for line in text.splitlines() if re.match(r"^  [a-z_]+:", line)]
    assert key_lines
    for line in key_lines:
        assert re.search(r"#\s*\S", line), f"no comment on: {line}"


def test_partial_file_keeps_other_defaults(tmp_path):
    path = tmp_path / "partial.yaml"
    path.write_text("tracker:\n  detect_every_n_frames: 5\npipeline:\n  threshold: 0.7\n")
    config = load_config(path)
    assert config.tracker.detect_every_n_frames == 5
    assert config.tracker.min_hits == AppConfig().tracker.min_hits
    assert config.pipeline.threshold == 0.7
    assert config.alerts == AppConfig().alerts


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        ("tracker:\n  detect_every_n: 5\n", r"bad\.yaml: unknown key 'tracker\.detect_every_n'"),
        ("trackers:\n  min_hits: 2\n", r"bad\.yaml: unknown section 'trackers'"),
        (
            "pipeline:\n  uncertain_margin: 0.7\n",
            r"bad\.yaml: bad value for 'pipeline\.uncertain_margin'.*0\.7",
        ),
        ("detector:\n  thresholds: [0.6, 0.7]\n", r"bad\.yaml: bad value for 'detector\.thresholds'"),
        ("alerts:\n  sustain_s: soon\n", r"bad\.yaml: bad value for 'alerts\.sustain_s'"),
        ("alerts:\n  webhook_url: ftp://x\n", r"bad\.yaml: bad value for 'alerts\.webhook_url'"),
        ("source:\n  open_timeout_s: 0\n", r"bad\.yaml: bad value for 'source\.open_timeout_s'"),
        ("scorer:\n  ema_alpha: 2\n", r"bad\.yaml: bad value for 'scorer\.ema_alpha'"),
        ("output:\n  show: maybe\n", r"bad\.yaml: bad value for 'output\.show'"),
        ("model:\n  reference: alice.jpg\n", r"'model\.reference': expected a list of a string"),
        ("model:\n  reference: [a.jpg, 3]\n", r"'model\.reference': expected a list of a string"),
        ("pipeline: [1, 2]\n", r"bad\.yaml: section 'pipeline' must be a mapping"),
        ("tracker: {min_hits: 2\n", r"bad\.yaml: not valid YAML"),
        ("- 1\n- 2\n", r"bad\.yaml: expected a mapping of sections, got list"),
    ],
)
def test_bad_files_name_the_file_and_key(tmp_path, content, pattern):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError, match=pattern):
        load_config(path)


def test_cross_field_error_names_the_section(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("tracker:\n  max_age_frames: 4\n  detect_every_n_frames: 5\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: bad value for section 'tracker'.*max_age_frames"):
        load_config(path)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"cannot read config .*nope\.yaml"):
        load_config(tmp_path / "nope.yaml")


def test_scorer_window_without_min_samples_is_accepted(tmp_path):
    path = tmp_path / "window.yaml"
    path.write_text("scorer:\n  window_size: 8\n")
    assert load_config(path).scorer_overrides == {"window_size": 8}


def test_reference_photos_come_from_the_file_and_a_flag_wins(tmp_path):
    from stream.config import with_model

    path = tmp_path / "ref.yaml"
    path.write_text("model:\n  reference: [alice.jpg, alice2.png]\n")
    config = load_config(path)
    assert config.model.reference == ("alice.jpg", "alice2.png")
    assert with_model(config, None, None).model.reference == ("alice.jpg", "alice2.png")
    flagged = with_model(config, "other.pt", ["bob.jpg"])
    assert flagged.model.reference == ("bob.jpg",) and flagged.model.checkpoint == "other.pt"
