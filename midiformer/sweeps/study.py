"""Where an Optuna study lives: its storage, a registry of kinds chosen by `hpo/storage` (conf/hpo/storage/).

    outputs/hpo/<study_name>/study.db        hpo/storage=sqlite (the default): heartbeats, stale trials retried
    outputs/hpo/<study_name>/study.journal   hpo/storage=journal: an append-only file with an NFS-safe lock,
                                             for workers on machines that share no database; no heartbeats
    postgresql://...                         hpo/storage=url hpo.storage.url=...: any SQLAlchemy URL, heartbeats

A storage with heartbeats lets the search notice a trial whose worker died without being requeued (node
failure, scancel, out of memory): once its heartbeat is older than `grace_period_s`,
`optuna.storages.fail_stale_trials` marks it failed and `on_stale` (a RetryFailedTrialCallback) enqueues a
copy that resumes from the dead trial's checkpoint.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import optuna
import sqlalchemy.exc
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial

from midiformer.common import ConfigError
from midiformer.registry import Registry

STORAGES = Registry("hpo/storage")
STORAGE_FILES = {"sqlite": "study.db", "journal": "study.journal"}
SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
JOURNAL_SUFFIXES = (".journal", ".log")
StaleCallback = Callable[[optuna.Study, FrozenTrial], None]


def _heartbeat_options(heartbeat_interval_s: int | None, grace_period_s: int | None,
                       on_stale: StaleCallback | None) -> dict:
    if heartbeat_interval_s is None:
        return {}
    if not (isinstance(heartbeat_interval_s, int) and heartbeat_interval_s > 0):
        raise ConfigError(f"hpo.storage.heartbeat_interval_s={heartbeat_interval_s!r} must be a positive integer "
                          f"or null (no heartbeats)")
    if not (isinstance(grace_period_s, int) and grace_period_s > heartbeat_interval_s):
        raise ConfigError(f"hpo.storage.grace_period_s={grace_period_s!r} must be an integer above "
                          f"hpo.storage.heartbeat_interval_s={heartbeat_interval_s} (a live trial would look stale)")
    return {"heartbeat_interval": heartbeat_interval_s, "grace_period": grace_period_s,
            "heartbeat_stale_trial_callback": on_stale}


def _sqlite_url(path: Path) -> str:
    return f"sqlite:///{path.resolve()}"


def _rdb_storage(url: str, attempts: int = 5, **options) -> RDBStorage:
    """RDBStorage(url), retried: workers that start together on a new database all create its tables and
    version row, and the losers of that race fail ("UNIQUE constraint failed: alembic_version"); a retry
    finds the database made."""
    for attempt in range(attempts):
        try:
            return RDBStorage(url, **options)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 * (attempt + 1))


@STORAGES.register("sqlite")
def sqlite_storage(study_dir: Path, heartbeat_interval_s: int | None = None, grace_period_s: int | None = None,
                   on_stale: StaleCallback | None = None) -> RDBStorage:
    # a generous lock timeout: several workers may write the same file at once
    return _rdb_storage(_sqlite_url(Path(study_dir) / STORAGE_FILES["sqlite"]),
                        engine_kwargs={"connect_args": {"timeout": 60}},
                        **_heartbeat_options(heartbeat_interval_s, grace_period_s, on_stale))


@STORAGES.register("journal")
def journal_storage(study_dir: Path, on_stale: StaleCallback | None = None) -> JournalStorage:
    del on_stale  # Optuna's JournalStorage records no heartbeats: a trial is never found stale
    return JournalStorage(JournalFileBackend(str(Path(study_dir) / STORAGE_FILES["journal"])))


@STORAGES.register("url")
def url_storage(study_dir: Path, url: str | None = None, heartbeat_interval_s: int | None = None,
                grace_period_s: int | None = None, on_stale: StaleCallback | None = None) -> RDBStorage:
    del study_dir  # the database lives elsewhere
    if not (isinstance(url, str) and "://" in url):
        raise ConfigError(f"hpo.storage.url={url!r} must be a database URL (postgresql://user@host/db)")
    return _rdb_storage(url, **_heartbeat_options(heartbeat_interval_s, grace_period_s, on_stale))


def open_storage(cfg, study_dir: Path, on_stale: StaleCallback | None = None) -> BaseStorage:
    """The storage `hpo.storage` ({name: sqlite|journal|url, ...options}) describes, for `study_dir`."""
    if isinstance(cfg, str):  # the pre-registry spelling hpo.storage=journal
        raise ConfigError(f"hpo.storage={cfg!r}: choose the storage with the group, hpo/storage={cfg}")
    return STORAGES.build(cfg, study_dir=Path(study_dir), on_stale=on_stale)


def storage_at(path: str | Path) -> BaseStorage | str | None:
    """The storage a report PATH points to (a study file, a study folder, a URL), or None if it is none."""
    if "://" in str(path):
        return str(path)
    path = Path(path)
    if path.is_dir():
        files = [path / name for name in STORAGE_FILES.values() if (path / name).is_file()]
        return storage_at(files[0]) if files else None
    if path.is_file() and path.suffix in SQLITE_SUFFIXES:
        return RDBStorage(_sqlite_url(path), engine_kwargs={"connect_args": {"timeout": 60}})
    if path.is_file() and path.suffix in JOURNAL_SUFFIXES:
        return JournalStorage(JournalFileBackend(str(path)))
    return None


def load_study(storage: BaseStorage | str, study_name: str | None = None) -> optuna.Study:
    """The named study, or the storage's only one."""
    names = optuna.get_all_study_names(storage)
    if study_name is None and len(names) != 1:
        raise ConfigError(f"the storage holds {len(names)} studies ({', '.join(names) or 'none'}); "
                          f"name one with --study")
    if study_name is not None and study_name not in names:
        raise ConfigError(f"study {study_name!r} is not in the storage; it holds: {', '.join(names) or 'none'}")
    return optuna.load_study(study_name=study_name or names[0], storage=storage)
