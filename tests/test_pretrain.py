"""The demo backbone's pre-training: --threads honoured, progress reported, trained once however many runs start."""

from __future__ import annotations

import threading
import time

import torch

import pacebench.training.pretrain as pretrain


def test_it_uses_the_runs_threads_reports_each_epoch_and_restores_the_threads(tmp_path, monkeypatch):
    monkeypatch.setenv("PACEBENCH_RESULTS", str(tmp_path))
    seen, real = [], pretrain._train

    def train(*args):
        seen.append(torch.get_num_threads())
        real(*args)

    monkeypatch.setattr(pretrain, "_train", train)
    torch.set_num_threads(2)
    epochs: list[tuple[int, int]] = []
    path = pretrain.pretrain_demo_backbone(epochs=2, threads=1, progress=lambda *e: epochs.append(e))
    assert path.is_file() and seen == [1] and epochs == [(1, 2), (2, 2)]
    assert torch.get_num_threads() == 2
    assert pretrain.pretrain_demo_backbone(epochs=2) == path and seen == [1]  # reused, not trained again


def test_two_concurrent_first_runs_train_it_once(tmp_path, monkeypatch):
    monkeypatch.setenv("PACEBENCH_RESULTS", str(tmp_path))
    calls = []

    def slow_train(path, *args):
        calls.append(path)
        time.sleep(0.5)  # the second caller arrives while the first trains
        path.write_bytes(b"weights")

    monkeypatch.setattr(pretrain, "_train", slow_train)
    results: list = []
    threads = [
        threading.Thread(target=lambda: results.append(pretrain.pretrain_demo_backbone(epochs=1))) for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(results) == 2 and results[0] == results[1] == calls[0]
