"""`posebh_hf.atomic_files`: a file is replaced whole or not at all, and no temporary is left behind."""

from __future__ import annotations

import json

import pytest

from posebh_hf.atomic_files import write_atomically, write_json_atomically, write_text_atomically


def test_writes_text_and_json_creating_the_folder(tmp_path):
    text_file = write_text_atomically(tmp_path / "a" / "b.txt", "héllo\n")
    assert text_file.read_text(encoding="utf-8") == "héllo\n"
    write_json_atomically(tmp_path / "c.json", {"k": "é"}, ensure_ascii=False)
    assert json.loads((tmp_path / "c.json").read_text(encoding="utf-8")) == {"k": "é"}
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["b.txt", "c.json"]


def test_a_failing_writer_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = write_text_atomically(tmp_path / "model.json", "old")

    def half_write(tmp):
        tmp.write_text("half", encoding="utf-8")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomically(target, half_write)
    assert target.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.json"]


def test_the_temporary_keeps_the_target_suffix(tmp_path):
    seen = []
    write_atomically(tmp_path / "map.png", lambda tmp: (seen.append(tmp.suffix), tmp.write_bytes(b"x")))
    assert seen == [".png"]
