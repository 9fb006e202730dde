"""The one parser for training settings and method hyperparameters: the same spelling means the same value."""

from __future__ import annotations

import pytest

from pacebench.choices import Precision
from pacebench.core.methods import METHODS
from pacebench.errors import UsageError
from pacebench.plan.spec import TrainConfig, coerce_train
from pacebench.plan.suites import load_suite


@pytest.mark.parametrize("text", ["2", "2.0", "2e0", 2, 2.0])
def test_a_whole_number_is_an_int_for_training_settings_and_hyperparameters_alike(text):
    assert coerce_train({"epochs": text}) == {"epochs": 2} and isinstance(coerce_train({"epochs": text})["epochs"], int)
    cfg = METHODS.get("pace_lazy").make_config({"interval": text})
    assert cfg.interval == 2 and isinstance(cfg.interval, int)


@pytest.mark.parametrize("text", ["2.5", 2.5, "two"])
def test_a_fraction_or_a_word_is_refused_for_an_int(text):
    with pytest.raises(UsageError, match="epochs"):
        coerce_train({"epochs": text})
    with pytest.raises(UsageError, match="interval"):
        METHODS.get("pace_lazy").make_config({"interval": text})


@pytest.mark.parametrize("text", ["inf", "-inf", "nan", "Infinity", float("inf"), float("nan")])
def test_non_finite_numbers_are_refused_everywhere(text):
    with pytest.raises(UsageError, match="finite"):
        coerce_train({"lr": text})
    with pytest.raises(UsageError, match="finite"):
        METHODS.get("pace").make_config({"sigma": text})
    with pytest.raises(UsageError, match="finite"):
        load_suite("vtab").resolve_train(load_suite("vtab").dataset("cifar"), {"weight_decay": text})


def test_floats_parse_from_any_spelling_and_booleans_are_not_numbers():
    assert coerce_train({"lr": "1e-3", "weight_decay": 0}) == {"lr": 1e-3, "weight_decay": 0.0}
    assert isinstance(coerce_train({"weight_decay": 0})["weight_decay"], float)
    with pytest.raises(UsageError):
        coerce_train({"lr": True})
    with pytest.raises(UsageError, match="adapter must be a string"):
        coerce_train({"adapter": 3})


def test_precision_is_an_enum_read_back_from_its_string():
    assert TrainConfig(precision="bf16").precision is Precision.bf16  # type: ignore[arg-type]
    assert coerce_train({"precision": "fp32"}) == {"precision": Precision.fp32}
    with pytest.raises(UsageError, match="one of auto, fp32, bf16"):
        coerce_train({"precision": "fp16"})


def test_unknown_names_are_listed_with_the_known_ones():
    with pytest.raises(UsageError, match="unknown training setting 'learning_rate'; known: epochs"):
        coerce_train({"learning_rate": "1"})
    known = "schedule, noise_group, sigma, lam"
    with pytest.raises(UsageError, match=f"unknown method pace hyperparameter 'lamda'; known: {known}"):
        METHODS.get("pace").make_config({"lamda": 1})


def test_every_schedule_format_and_table_layout_choice_has_exactly_one_implementation():
    from pacebench.choices import Format, Schedule, TableLayout
    from pacebench.core.noise import SCHEDULES
    from pacebench.report.render import FORMATS
    from pacebench.report.tables.paper import LAYOUTS

    assert list(SCHEDULES.names()) == list(Schedule)
    assert sorted(FORMATS.names()) == sorted(Format)
    assert sorted(LAYOUTS.names()) == sorted(TableLayout)


def test_canonical_json_is_the_bytes_run_keys_hash():
    from pathlib import Path

    from pacebench.values import canonical_json

    assert canonical_json({"b": 1, "a": [1.5, None], "c": Path("x")}) == '{"a":[1.5,null],"b":1,"c":"x"}'
