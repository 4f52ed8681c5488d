"""The ``bfe`` command line: every subcommand parses and documents its options."""

import subprocess
import sys

import pytest

from ml_core.cli import build_parser, main
from ml_core.config import ExtractOptions

SUBCOMMANDS = ("rasterize", "drop", "predict", "extract", "evaluate", "finetune", "run",
               "experiment", "demo")


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_help_lists_the_config_defaults(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: bfe " + command in capsys.readouterr().out


def test_option_defaults_come_from_the_config_dataclasses():
    args = build_parser().parse_args(["extract", "in.tif", "-o", "out.gpkg"])
    assert args.min_area == ExtractOptions().min_area
    assert args.regularize is ExtractOptions().regularize


def test_user_error_exits_2_without_traceback(tmp_path):
    missing = tmp_path / "nope.tif"
    proc = subprocess.run([sys.executable, "-m", "ml_core", "rasterize", str(missing),
                           str(tmp_path / "b.gpkg"), "-o", str(tmp_path / "m.tif")],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "nope.tif" in proc.stderr
    assert not (tmp_path / "m.tif").exists()


@pytest.mark.parametrize(("command", "flag", "value"), [
    ("predict", "--batch-size", "0"),
    ("predict", "--overlap", "-1"),
    ("extract", "--threshold", "1.5"),
])
def test_out_of_range_option_is_a_clear_error(tmp_path, capsys, command, flag, value):
    args = [command, str(tmp_path / "in.tif"), "-o", str(tmp_path / "out"), flag, value]
    if command == "predict":
        args += ["-m", str(tmp_path / "m.safetensors")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"Option {flag} must be" in err
    assert "Traceback" not in err


def test_unknown_loss_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["finetune", "in.tif", "b.gpkg", "-o", "m.safetensors", "--loss", "focal"])
    assert exit_info.value.code == 2
    assert "bd_lace_wdice" in capsys.readouterr().err
