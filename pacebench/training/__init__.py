"""Training: one epoch loop (`loop`) and a trainer per kind of task, registered by kind (`image`, `text`)."""

from pacebench.training import image, text  # noqa: F401  (registration)
from pacebench.training.loop import TRAINERS, Environment, TrainResult, train_run

__all__ = ["TRAINERS", "Environment", "TrainResult", "train_run"]
