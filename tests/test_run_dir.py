"""A run dir that cannot be written, or a disk without room, stops a run at start-up."""

import shutil
from collections import namedtuple

import pytest

from encdec.train import train
from encdec.utils.errors import UserError
from encdec.utils.run_dir import check_output_dir
from tests.conftest import FAST, compose_config


def test_a_writable_dir_with_room_passes(tmp_path):
    check_output_dir(tmp_path / "run", min_free_gb=0.001)
    assert (tmp_path / "run").is_dir() and not list((tmp_path / "run").iterdir())


def test_an_unwritable_dir_is_refused(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(UserError, match="cannot write to the output dir .*file/run"):
        check_output_dir(tmp_path / "file" / "run", min_free_gb=0)


def test_a_full_disk_is_refused_before_any_data_is_read(tmp_path, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10 * 2**30, 10 * 2**30, 2**20))
    cfg = compose_config(
        "train", [*FAST, "data=multi30k", "data.path=/nonexistent"], tmp_path / "r"
    )
    with pytest.raises(UserError, match=r"only 0.00 GiB free in .*paths.min_free_gb=1 GiB"):
        train(cfg)
