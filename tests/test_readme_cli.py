"""The README's `mobileconv convert` example, run exactly as written (in a scratch directory)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example() -> str:
    text = README.read_text()
    block = re.search(r"<!-- cli-example:begin -->\s*```sh\n(.*?)```", text, re.S)
    assert block, "README.md lost its cli-example block"
    return block.group(1)


def test_readme_convert_example_works(tmp_path):
    bin_dir = str(Path(sys.executable).parent) + "/"
    script = readme_example().replace(".venv/bin/", bin_dir)

    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path, capture_output=True, text=True, timeout=900,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "out" / "resnet18"
    report = json.loads((out / "report.json").read_text())
    assert {a["target"] for a in report["artifacts"]} == {"pte", "ptl"}
    assert report["pruning"]["macs_after"] * 2 <= report["pruning"]["macs_before"]
    assert "model.pte" in result.stdout and "[100%] done" in result.stderr
