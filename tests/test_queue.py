"""The work queue's contract on SQLite, on a real PostgreSQL server and in memory: exclusive claims, taken over
only from dead or silent holders, refused writes after a takeover, retries, checkpoints."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections import Counter
from datetime import timedelta

import pytest
from conftest import rewrite_run

from pacebench.plan.runkey import run_key
from pacebench.plan.spec import RunSpec, TrainConfig
from pacebench.store import Claimant, ClaimLost, EpochRecord, Store
from pacebench.store.base import utcnow

LONG = 3600.0


def spec(seed: int = 0) -> RunSpec:
    return RunSpec(
        suite="demo", dataset="digits", method="baseline", seed=seed, train=TrainConfig(epochs=3), backbone="vit_demo"
    )


def elsewhere(name: str, lease_s: float = LONG) -> Claimant:
    return Claimant(lease_s, host=f"host-{name}", pid=1)


def test_each_queued_run_is_claimed_by_exactly_one_worker(store):
    store.enqueue([spec(0), spec(1)])
    a, b = store.claim_next(elsewhere("a")), store.claim_next(elsewhere("b"))
    assert {a.key, b.key} == {run_key(spec(0)), run_key(spec(1))} and a.claim != b.claim
    assert store.claim_next(elsewhere("c")) is None  # both held, with fresh heartbeats
    assert a.status == "running" and a.attempts == 1 and a.host == "host-a" and a.lease_s == LONG


def test_concurrent_claims_never_share_a_run(store):
    store.enqueue([spec(i) for i in range(24)])
    claimed: list[str] = []

    def claim_all(name: str) -> None:
        who = elsewhere(name)
        while (run := store.claim_next(who)) is not None:
            claimed.append(run.key)

    threads = [threading.Thread(target=claim_all, args=(f"w{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted(run_key(spec(i)) for i in range(24))  # each once, none lost


def test_a_dead_pid_on_this_host_frees_the_claim_at_once(store):
    store.enqueue([spec()])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    first = store.claim_next(Claimant(LONG, pid=dead.pid))
    assert first is not None
    taken = store.claim_next(Claimant(LONG))
    assert taken is not None and taken.id == first.id and taken.claim != first.claim and taken.attempts == 2


def test_a_silent_holder_elsewhere_keeps_its_claim_until_its_lease_ends(store):
    store.enqueue([spec()])
    held = store.claim_next(elsewhere("a", lease_s=30))
    assert store.claim_next(elsewhere("b")) is None
    rewrite_run(store, held.id, heartbeat_at=utcnow() - timedelta(seconds=31))
    taken = store.claim_next(elsewhere("b"))
    assert taken is not None and taken.id == held.id
    # the old holder can write nothing any more
    assert not store.beat(held.id, held.claim)
    with pytest.raises(ClaimLost):
        store.write_epoch(held.id, held.claim, EpochRecord(epoch=0, loss=1.0))
    with pytest.raises(ClaimLost):
        store.save_checkpoint(held.id, held.claim, 0, b"x")
    with pytest.raises(ClaimLost):
        store.finish_claimed(held.id, held.claim, {"test_acc": 1.0}, None)
    assert store.epochs(held.id) == [] and store.checkpoint_epoch(held.id) is None
    assert store.get_run(held.id).status == "running" and store.get_run(held.id).claim == taken.claim


def test_failures_are_retried_then_stay_failed_with_their_reason(store):
    store.enqueue([spec()])
    statuses = []
    for _ in range(3):
        run = store.claim_next(elsewhere("a"), max_attempts=3)
        statuses.append(store.fail_claimed(run.id, run.claim, "FloatingPointError: loss became nan", 3))
    assert statuses == ["queued", "queued", "failed"]
    failed = store.get_run(run_key(spec()))
    assert failed.error.startswith("FloatingPointError") and failed.attempts == 3
    assert store.claim_next(elsewhere("a"), max_attempts=3) is None
    assert store.status_counts([run_key(spec())]) == Counter({"failed": 1})
    store.enqueue([spec()])  # asking for it again is asking for a retry
    assert store.get_run(run_key(spec())).status == "queued" and store.get_run(run_key(spec())).attempts == 0


def test_a_run_whose_workers_keep_vanishing_ends_failed(store):
    store.enqueue([spec()])
    for _ in range(2):
        run = store.claim_next(elsewhere("a", lease_s=1), max_attempts=2)
        rewrite_run(store, run.id, heartbeat_at=utcnow() - timedelta(seconds=5))
    assert store.claim_next(elsewhere("b"), max_attempts=2) is None
    failed = store.get_run(run_key(spec()))
    assert failed.status == "failed" and "stopped answering in each of 2 attempt" in failed.error


def test_release_requeues_without_counting_an_attempt(store):
    store.enqueue([spec()])
    run = store.claim_next(elsewhere("a"))
    assert store.release(run.id, run.claim)
    again = store.get_run(run.id)
    assert again.status == "queued" and again.attempts == 0 and again.claim is None


def test_resume_point_keeps_epochs_up_to_the_checkpoint_and_finish_deletes_it(store):
    store.enqueue([spec()])
    run = store.claim_next(elsewhere("a"))
    for epoch in range(3):
        store.write_epoch(run.id, run.claim, EpochRecord(epoch=epoch, loss=float(epoch)))
        if epoch == 1:
            store.save_checkpoint(run.id, run.claim, epoch, b"state-after-1")
    rewrite_run(store, run.id, heartbeat_at=utcnow() - timedelta(days=1))  # the holder vanished after epoch 2
    taken = store.claim_next(elsewhere("b"))
    assert store.resume_point(taken.id, taken.claim) == (1, b"state-after-1")
    assert [e.epoch for e in store.epochs(run.id)] == [0, 1]  # epoch 2 is trained (and written) again
    store.finish_claimed(taken.id, taken.claim, {"test_acc": 1.0}, {"head.weight": __import__("torch").ones(2)})
    assert store.checkpoint_epoch(run.id) is None and store.run_weights(run.id) is not None
    assert store.get_run(run.id).status == "done"


def test_held_by_live_workers_and_worker_rows(store):
    store.enqueue([spec(0), spec(1)])
    who = elsewhere("a")
    run = store.claim_next(who)
    assert [r.id for r in store.held_by_live_workers([run_key(spec(0)), run_key(spec(1))])] == [run.id]
    store.worker_started(who, "cuda:1")
    store.worker_update(who.name, state="training", run_id=run.id, epoch=0, info={"loss": 0.5})
    (w,) = store.workers()
    assert (w.name, w.device, w.state, w.run_id, w.info) == ("host-a:1", "cuda:1", "training", run.id, {"loss": 0.5})


def test_gpu_selection():
    from pacebench.errors import UsageError
    from pacebench.execution.devices import parse_gpus

    assert parse_gpus("all", 4) == parse_gpus(None, 4) == [0, 1, 2, 3]
    assert parse_gpus("0,2,3", 4) == [0, 2, 3] and parse_gpus("2", 4) == [0, 1] and parse_gpus("3,", 4) == [3]
    for bad, count in (("5", 4), ("0,7", 4), ("x", 4), ("0", 4), ("all", 0)):
        with pytest.raises(UsageError):
            parse_gpus(bad, count)


def test_a_plan_is_enqueued_in_one_write_and_keeps_each_runs_state(db_url, monkeypatch):
    """Two transactions for a whole plan (write, read back) whatever its size; a duplicate spec is one run; done
    runs stay done, failed ones are queued again with fresh attempts."""
    store = Store(db_url)
    opened = []
    session = store.db.session

    def counted():
        opened.append(1)
        return session()

    monkeypatch.setattr(store.db, "session", counted)
    records = store.enqueue([spec(i) for i in range(24)] + [spec(3)])
    assert len(opened) == 2 and len(records) == 25 and records[3].id == records[24].id
    assert [r.key for r in records[:24]] == [run_key(spec(i)) for i in range(24)]
    assert {r.status for r in records} == {"queued"}
    monkeypatch.setattr(store.db, "session", session)
    rewrite_run(store, records[0].id, status="done")
    rewrite_run(store, records[1].id, status="failed", attempts=3, error="boom")
    again = store.enqueue([spec(0), spec(1), spec(2)])
    assert [r.status for r in again] == ["done", "queued", "queued"] and again[1].attempts == 0
    assert len(store.runs()) == 24


def test_concurrent_enqueues_of_one_plan_give_each_run_once(store):
    plans: list[list[str]] = []
    errors: list[BaseException] = []

    def enqueue() -> None:
        try:
            plans.append([r.key for r in store.enqueue([spec(i) for i in range(24)])])
        except BaseException as exc:  # noqa: BLE001 - the test reports any failure of a thread
            errors.append(exc)

    threads = [threading.Thread(target=enqueue) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(plans) == 4 and all(p == [run_key(spec(i)) for i in range(24)] for p in plans)
    assert sorted(r.key for r in store.runs()) == sorted(run_key(spec(i)) for i in range(24))


def test_a_worker_is_handed_only_runs_planned_for_its_kind_of_device(store):
    cuda, cpu, old = spec(0), spec(1), spec(2)
    store.enqueue([cuda], planned_device="cuda")
    store.enqueue([cpu], planned_device="cpu")
    store.enqueue([old])  # a row from before the planned device was kept: any worker may train it
    on_cpu = Claimant(LONG, host="host-a", pid=1, device_type="cpu")
    assert {store.claim_next(on_cpu).key, store.claim_next(on_cpu).key} == {run_key(cpu), run_key(old)}
    assert store.claim_next(on_cpu) is None and store.get_run(run_key(cuda)).status == "queued"
    taken = store.claim_next(Claimant(LONG, host="host-b", pid=1, device_type="cuda"))
    assert taken.key == run_key(cuda) and taken.planned_device == "cuda"
    store.release(taken.id, taken.claim)
    store.enqueue([cuda], planned_device="cpu")  # planned again here: the plan that queues a run says where
    assert store.claim_next(on_cpu).key == run_key(cuda)


def test_a_finish_repeated_after_a_lost_reply_is_not_a_lost_claim(store):
    store.enqueue([spec()])
    run = store.claim_next(elsewhere("a"))
    store.finish_claimed(run.id, run.claim, {"test_acc": 1.0}, None)
    store.finish_claimed(run.id, run.claim, {"test_acc": 1.0}, None)  # the commit went through, its reply did not
    with pytest.raises(ClaimLost):
        store.finish_claimed(run.id, "another-token", {"test_acc": 2.0}, None)
    assert store.get_run(run.id).metrics == {"test_acc": 1.0} and store.get_run(run.id).status == "done"


def test_dropping_an_unreadable_checkpoint_restarts_the_run_from_scratch(store):
    store.enqueue([spec()])
    run = store.claim_next(elsewhere("a"))
    for epoch in range(2):
        store.write_epoch(run.id, run.claim, EpochRecord(epoch=epoch, loss=1.0))
    store.save_checkpoint(run.id, run.claim, 1, b"unreadable")
    store.drop_checkpoint(run.id, run.claim)
    assert store.checkpoint_epoch(run.id) is None and store.epochs(run.id) == []
    assert store.resume_point(run.id, run.claim) is None
    with pytest.raises(ClaimLost):
        store.drop_checkpoint(run.id, "another-token")


def test_after_an_outage_every_holder_gets_a_full_lease_before_its_run_is_taken_over():
    from types import SimpleNamespace

    from pacebench.store.base import holder_gone

    now = utcnow()
    silent = SimpleNamespace(host="host-a", pid=1, lease_s=30.0, heartbeat_at=now - timedelta(seconds=60))
    assert holder_gone(silent, now, "host-b")  # silent for two leases
    assert not holder_gone(silent, now, "host-b", watched_since=now - timedelta(seconds=10))  # but the database
    assert holder_gone(silent, now, "host-b", watched_since=now - timedelta(seconds=31))  # was back 10 s ago only
