"""Prepare (or reuse) the store of a corpus: python -m midiformer.prepare [data=midi_dir data.root=DIR]

Prints the store's path on the last line; the trainer calls the same prepare_store itself.
"""
from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig

from midiformer.common import CONF_DIR, exit_on_user_error
from midiformer.data.store import Store, prepare_store, summary

log = logging.getLogger(__name__)


@hydra.main(config_path=CONF_DIR, config_name="prepare", version_base="1.3")
def main(cfg: DictConfig) -> None:
    path = exit_on_user_error(prepare_store, cfg.data)  # a bad option or folder: one line, status 2
    manifest = Store(path).manifest
    for skipped in manifest["skipped"]:
        log.info("skipped %s: %s", skipped["file"], skipped["reason"])
    print(f"{summary(manifest)}\n{path}")


if __name__ == "__main__":
    main()
