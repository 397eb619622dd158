"""Nightly retraining: a cron job of the daemon's timer, and a real ``planner train`` child
whose result is logged and stored."""

from __future__ import annotations

from datetime import UTC, datetime

from planner.daemon.children import ChildLauncher
from planner.daemon.timer import Timer


def test_retraining_is_a_cron_job_on_its_own_one_worker_executor() -> None:
    timer = Timer(
        pipelines=1,
        on_due=lambda name: None,
        on_tick=lambda: None,
        tick_s=3600.0,
        on_retrain=lambda: None,
        retrain_cron="0 3 * * *",
    )
    timer.start()
    try:
        job = timer.scheduler.get_job("train:nightly")
        assert job is not None and job.executor == "train" and job.max_instances == 1
        fire = job.next_run_time.astimezone(UTC)
        assert (fire.hour, fire.minute, fire.second) == (3, 0, 0)
        assert fire > datetime.now(UTC)
    finally:
        timer.shutdown()


def test_a_real_planner_train_child_retrains_and_the_result_is_stored(rig) -> None:
    r = rig([1.0, 2.0, 1.5, 3.0] * 10)
    r.daemon.tick()
    for _ in range(40):
        r.step()
    r.daemon.launcher = ChildLauncher(r.store.url)
    r.daemon.retrain()
    (done,) = r.decisions("retrained")
    assert done.detail["exit_code"] == 0, done.reason
    assert done.detail["model_id"] and done.detail["rows"] == 40
    assert done.reason.startswith("retrained on 40 attempts")
    models = list((r.daemon.entries["grow"].models_dir).rglob("*"))
    assert models, "the model was saved in the pipeline's models folder"
    assert "retrained on 40 attempts" in r.out.getvalue()
