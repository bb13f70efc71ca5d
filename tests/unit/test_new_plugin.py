"""``lmrouter new-plugin``: the distribution it writes installs like any plugin and passes its
own conformance tests untouched."""

from __future__ import annotations

from pathlib import Path

import pytest

from lmrouter import cli, newplugin


def test_refuses_bad_names_and_existing_directories(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a plugin name"):
        newplugin.write("Acme_Cloud", tmp_path)
    newplugin.write("acme", tmp_path)
    with pytest.raises(FileExistsError):
        newplugin.write("acme", tmp_path)
    assert cli.main(["new-plugin", "acme", "--dir", str(tmp_path)]) == 1
