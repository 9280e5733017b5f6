"""`fnc-reid info` names where each pretrained tag's weights come from (file, Hub or URL)."""

from __future__ import annotations

from fnc.cli import main


def test_info_names_url_sources(capsys):
    assert main(["info", "baseline_resnet50_ibn"]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if "baseline_resnet50_ibn.fastreid_vehicleid" in ln)
    assert "url https://github.com/JDAI-CV/fast-reid/releases/" in line
    assert "None" not in out
