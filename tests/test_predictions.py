"""Per-example predictions of a run's last evaluation: they agree with the stored accuracy exactly, and name each
example the same way wherever the data lies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from fake_trees import make_vtab

from pacebench.data import READERS, DataRequest
from pacebench.plan.planner import PlanRequest, plan
from pacebench.training import Environment, train_run

CPU = Environment(device=torch.device("cpu"), data_root=Path("data"), num_workers=0)


def test_a_runs_predictions_give_its_accuracy_exactly(results):
    [spec] = plan(PlanRequest(suite="demo", methods=["pace"], train={"epochs": 2, "batch_size": 32}))
    result = train_run(spec, CPU, lambda *_: None)
    [(name, p)] = result.predictions.items()
    assert name == "test" and len(p.ids) == len(set(p.ids)) == len(p.predicted) == len(p.target) > 100
    assert p.ids[0].startswith("digit-") and p.correct.dtype == bool
    assert 100.0 * p.correct.sum() / len(p.correct) == result.metrics["test_acc"]  # the same number, not close
    assert np.array_equal(p.correct, p.predicted == p.target)


def test_image_examples_are_named_by_their_path_inside_the_image_folder(tmp_path):
    for root in (tmp_path / "a" / "cifar", tmp_path / "elsewhere" / "cifar"):
        make_vtab(root, sizes={"train800val200": 6, "test": 4})
        splits = READERS.get("vtab")(DataRequest(root, "cifar", "final", 3, image_size=16))
        ids = splits.example_ids["test"]
        assert ids == ["test/test0.jpg", "test/test1.jpg", "test/test2.png", "test/test3.png"], ids
