"""Stage timing: seconds accumulate per name, survive the trip from a worker as pairs, and add up."""

from __future__ import annotations

import time

import pytest

from wsi_screen.timing import Stages, read_stage


def test_stages_accumulate_per_name_in_first_run_order():
    stages = Stages()
    for _ in range(2):
        with stages.time("unet"):
            time.sleep(0.01)
    with pytest.raises(ValueError), stages.time("instances"):
        raise ValueError  # a failing stage still counts its time
    assert list(stages.seconds) == ["unet", "instances"]
    assert stages.seconds["unet"] >= 0.02 and stages.seconds["instances"] >= 0


def test_worker_pairs_add_up_on_the_client():
    client = Stages({"unet": 1.0})
    client.add((("unet", 0.5), (read_stage("tile", 2), 0.25)))
    client.add(Stages({"unet": 0.5}).items())
    assert client.seconds == {"unet": 2.0, "tile read (level 2)": 0.25} and client.total() == 2.25
