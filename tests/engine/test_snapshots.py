"""Resuming training: a run stopped after 2 epochs and resumed ends where an uninterrupted one does."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from engine.snapshots import ResumeError, RunFolder, config_differences, random_state, restore_random_state
from engine.training import train_head
from tests.engine.test_training import FAST, synthetic_videos

FOUR_EPOCHS = replace(FAST, max_epochs=4)
STEPS_PER_EPOCH = FAST.windows_per_epoch // FAST.batch_size  # 256 / 32 = 8


class Interrupted(Exception):
    """Stands in for Ctrl-C or a killed job."""


class StopAfterSaves:
    """A run folder whose run is stopped right after its ``saves``-th snapshot is written."""

    def __init__(self, folder: RunFolder, saves: int) -> None:
        self.folder, self.left = folder, saves

    def load(self, name: str) -> dict[str, Any] | None:
        return self.folder.load(name)

    def save(self, name: str, state: dict[str, Any]) -> None:
        self.folder.save(name, state)
        self.left -= 1
        if self.left == 0:
            raise Interrupted


def test_a_resumed_head_equals_an_uninterrupted_one(tmp_path: Path) -> None:
    videos = synthetic_videos()
    config = {"head": "test", "epochs": 4}
    straight = train_head(videos, [], FOUR_EPOCHS, progress=False)

    folder = RunFolder(tmp_path / "run", config, resume=False)
    with pytest.raises(Interrupted):
        train_head(videos, [], FOUR_EPOCHS, progress=False, snapshots=StopAfterSaves(folder, 2))
    saved = folder.load("head")
    assert saved is not None and saved["epoch"] == 2 and saved["finished"] is False
    assert [state["step"] for state in saved["optimiser"]["state"].values()] == [2.0 * STEPS_PER_EPOCH] * len(
        saved["optimiser"]["state"]
    )

    resumed_folder = RunFolder(tmp_path / "run", config, resume=True)
    resumed = train_head(videos, [], FOUR_EPOCHS, progress=False, snapshots=resumed_folder)
    assert [record["epoch"] for record in resumed.history] == [1.0, 2.0, 3.0, 4.0]
    assert [record["loss"] for record in resumed.history] == [record["loss"] for record in straight.history]
    for name, value in straight.head.state_dict().items():
        torch.testing.assert_close(resumed.head.state_dict()[name], value, rtol=0, atol=1e-6)
    final = resumed_folder.load("head")
    assert final is not None and final["finished"] is True and final["epoch"] == 4

    # A finished snapshot is not trained again: the same weights come back at once.
    again = train_head(videos, [], FOUR_EPOCHS, progress=False, snapshots=resumed_folder)
    for name, value in straight.head.state_dict().items():
        torch.testing.assert_close(again.head.state_dict()[name], value, rtol=0, atol=1e-6)


def test_resuming_with_another_config_names_the_difference(tmp_path: Path) -> None:
    RunFolder(tmp_path / "run", {"seed": 0, "head": {"window": 16, "epochs": 30}}, resume=False)
    with pytest.raises(ResumeError) as error:
        RunFolder(tmp_path / "run", {"seed": 0, "head": {"window": 8, "epochs": 30}}, resume=True)
    assert str(error.value) == (
        f"cannot resume the run in {tmp_path / 'run'} with another configuration: "
        "head.window: 16 (run) vs 8 (now)"
    )
    with pytest.raises(ResumeError, match=r"nothing to resume: no run in .*elsewhere"):
        RunFolder(tmp_path / "elsewhere", {"seed": 0}, resume=True)


def test_starting_over_clears_the_previous_run(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path / "run", {"seed": 0}, resume=False)
    folder.save("head", {"epoch": 3})
    assert folder.load("head") == {"epoch": 3}
    fresh = RunFolder(tmp_path / "run", {"seed": 1}, resume=False)
    assert fresh.load("head") is None
    with pytest.raises(ValueError, match="plain file name"):
        fresh.save("../escape", {})
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(ResumeError, match="is not a run folder"):
        RunFolder(tmp_path / "mine", {"seed": 0}, resume=False)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


def test_config_differences_lists_every_leaf() -> None:
    assert config_differences({"a": 1, "b": {"c": 2}}, {"a": 1, "b": {"c": 3}, "d": 4}) == [
        "b.c: 2 (run) vs 3 (now)",
        "d: absent (run) vs 4 (now)",
    ]
    assert config_differences({"a": [1, 2]}, {"a": [1, 2]}) == []


def test_random_state_round_trip() -> None:
    generator = np.random.default_rng(5)
    torch.manual_seed(5)
    state = random_state(generator)
    expected = (generator.random(3), torch.rand(3))
    restore_random_state(generator, state)
    np.testing.assert_array_equal(generator.random(3), expected[0])
    torch.testing.assert_close(torch.rand(3), expected[1], rtol=0, atol=0)


def test_resumed_finetuning_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    from engine.finetune import FinetuneConfig, build_model, finetune_encoder
    from engine.inception_resnet_v1 import InceptionResnetV1

    torch.manual_seed(0)
    base_state = InceptionResnetV1().state_dict()
    # Block8's input is 1792 x 3 x 3 for a 160 px crop; random maps stand in for cached features.
    features = torch.randn(16, 1792, 3, 3, generator=torch.Generator().manual_seed(1)).half()
    labels = np.repeat([0, 1], 8)
    video_ids = np.repeat(np.arange(4), 4)
    train_mask = np.ones(16, bool)  # no validation: four full epochs
    config = FinetuneConfig(train_from="block8", max_epochs=4, steps_per_epoch=2, batch_size=4)

    def run(snapshots: Any = None) -> Any:
        model = build_model(base_state)
        return finetune_encoder(
            model, features, labels, video_ids, train_mask, config, progress=False, snapshots=snapshots
        )

    straight = run()
    folder = RunFolder(tmp_path / "run", {"finetune": "test"}, resume=False)
    with pytest.raises(Interrupted):
        run(StopAfterSaves(folder, 2))
    saved = folder.load("finetune")
    assert saved is not None and saved["epoch"] == 2
    assert {state["step"].item() for state in saved["optimiser"]["state"].values()} == {4.0}
    resumed = run(RunFolder(tmp_path / "run", {"finetune": "test"}, resume=True))
    assert [record["epoch"] for record in resumed.history] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert set(resumed.overrides) == set(straight.overrides)
    for name, value in straight.overrides.items():
        torch.testing.assert_close(resumed.overrides[name], value, rtol=0, atol=1e-6)
