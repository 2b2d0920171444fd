"""Study storages (sweeps/study.py): workers that start together on a new study file all get it."""
from __future__ import annotations

import multiprocessing

from midiformer.sweeps import study


def open_after(barrier, folder, results) -> None:
    barrier.wait()  # every process creates the storage at the same moment, as SLURM array tasks do
    try:
        study.sqlite_storage(folder)
        results.put("ok")
    except Exception as error:  # the race this guards against raised sqlalchemy's IntegrityError
        results.put(f"{type(error).__name__}: {error}")


def test_workers_that_create_one_sqlite_study_at_once_all_open_it(tmp_path):
    context = multiprocessing.get_context("fork")
    for attempt in range(3):  # without the retry, 8 at once failed in each of 5 attempts (most of them)
        folder, barrier, results = tmp_path / str(attempt), context.Barrier(8), context.Queue()
        folder.mkdir()
        workers = [context.Process(target=open_after, args=(barrier, folder, results)) for _ in range(8)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=120)
        assert [results.get(timeout=10) for _ in workers] == ["ok"] * 8
