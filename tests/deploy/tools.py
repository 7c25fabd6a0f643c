"""The pinned tools the deploy tests validate with (deploy/tools/go-tool.sh builds each once)."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def go_tool(name: str) -> str:
    built = subprocess.run(
        ["bash", str(ROOT / "deploy" / "tools" / "go-tool.sh"), name], capture_output=True, text=True, timeout=1400
    )
    assert built.returncode == 0, built.stderr
    return built.stdout.strip()
