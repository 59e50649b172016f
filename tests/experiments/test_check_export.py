"""`python -m experiments.check_export`: bad arguments fail before TensorFlow loads; a good export
exits 0 with the report, a broken one exits 1 with one `error:` line."""

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT
from tests.experiments.test_flag_checks import _run_without_tensorflow


def test_help_shows_examples():
    process, _ = _run_without_tensorflow("experiments.check_export", "--help")
    assert process.returncode == 0, process.stderr
    assert process.stdout.count("    python -m experiments.check_export ") == 2
    assert "--model_name" in process.stdout


def test_a_folder_without_a_saved_model_fails_before_tensorflow(tmp_path):
    process, _ = _run_without_tensorflow("experiments.check_export", str(tmp_path))
    assert process.returncode == 1
    assert process.stderr == (f"error: {tmp_path}/saved_model.pb not found: is {tmp_path} an "
                              f"export version folder (BASE/NAME/VERSION)?\n")
    process, _ = _run_without_tensorflow("experiments.check_export")
    assert process.stderr == "error: expected one EXPORT_VERSION_DIR argument; got [].\n"


def test_a_good_export_exits_0_and_a_broken_one_exits_1(tmp_path):
    from tests.export.tiny_export import tiny_export

    from keras_llm.export.servability import check_export

    version_dir = tiny_export(str(tmp_path))
    command = [sys.executable, "-m", "experiments.check_export", version_dir,
               "--model_name=served"]
    process = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert process.returncode == 1  # No manifest yet: the exporter writes it, the command reads.
    assert "manifest.json" in process.stderr and "experiments.export" in process.stderr
    check_export(version_dir, model_name="served", log=lambda line: None)  # as the exporter does
    manifest = Path(version_dir, "assets.extra", "manifest.json").read_bytes()
    process = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stderr
    assert process.stdout.startswith("layout: served/1, signatures ['scale', 'tokens']")
    assert process.stdout.splitlines()[-1] == f"servable: {version_dir} (scale, tokens)"
    assert Path(version_dir, "assets.extra", "manifest.json").read_bytes() == manifest

    with open(f"{version_dir}/assets.extra/expected_outputs.json", "w") as file:
        json.dump({"tokens": {"token_ids": [[0]], "joined": ["x"]}}, file)  # No 'scale'.
    process = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert process.returncode == 1
    assert process.stderr.splitlines()[-1].startswith("error: ")
    assert "missing ['scale']" in process.stderr
