"""Where an Optuna study lives: its storage in a study folder (hpo writes it, report reads it).

    outputs/hpo/<study_name>/study.db        hpo.storage=sqlite (the default)
    outputs/hpo/<study_name>/study.journal   hpo.storage=journal: an append-only file with an NFS-safe
                                             lock, for workers on several machines (SQLite over NFS is not safe)
    postgresql://...                         hpo.storage=<a database URL>: any SQLAlchemy URL
"""
from __future__ import annotations

from pathlib import Path

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend

from midiformer.common import ConfigError

STORAGE_FILES = {"sqlite": "study.db", "journal": "study.journal"}
SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
JOURNAL_SUFFIXES = (".journal", ".log")


def _sqlite(path: Path) -> RDBStorage:
    # a generous lock timeout: several workers may write the same file at once
    return RDBStorage(f"sqlite:///{path.resolve()}", engine_kwargs={"connect_args": {"timeout": 60}})


def _journal(path: Path) -> JournalStorage:
    return JournalStorage(JournalFileBackend(str(path)))


def storage_for(choice: str, study_dir: Path) -> BaseStorage | str:
    """The storage hpo.storage names, inside `study_dir`."""
    if choice == "sqlite":
        return _sqlite(study_dir / STORAGE_FILES["sqlite"])
    if choice == "journal":
        return _journal(study_dir / STORAGE_FILES["journal"])
    if "://" in choice:
        return choice
    raise ConfigError(f"hpo.storage={choice!r} must be sqlite, journal or a database URL (postgresql://...)")


def storage_at(path: str | Path) -> BaseStorage | str | None:
    """The storage a report PATH points to (a study file, a study folder, a URL), or None if it is none."""
    if "://" in str(path):
        return str(path)
    path = Path(path)
    if path.is_dir():
        files = [path / name for name in STORAGE_FILES.values() if (path / name).is_file()]
        return storage_at(files[0]) if files else None
    if path.is_file() and path.suffix in SQLITE_SUFFIXES:
        return _sqlite(path)
    if path.is_file() and path.suffix in JOURNAL_SUFFIXES:
        return _journal(path)
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
