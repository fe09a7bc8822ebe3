"""Paths and environments of the peer benchmark (``peer_bench.py``): every peer runs in a
virtual environment of its own (``benchmarks/.venvs/<name>``, created on first use with torch
pinned to phizoo's), and both workers get the same glibc malloc thresholds."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
VENVS = HERE / ".venvs"
TORCH_PIN = "torch==2.13.0"  # the CPU wheel on this machine's disk; an unpinned torch pulls a CUDA build
# same values as phizoo.eval.leaderboard.steady_allocator (mmap above 32 MiB, keep 512 MiB of free heap),
# given to both workers through glibc's environment variables
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(512 << 20)}

VENV_RECIPES = {
    # mace-torch pins e3nn 0.4.4 (phizoo needs e3nn >= 0.5): its own environment
    "mace": [["install", TORCH_PIN], ["install", "-c", "{constraints}", "mace-torch==0.3.16"]],
    # schnetpack 2.1.1 pins sympy <= 1.12, torch 2.13 needs sympy >= 1.13: schnetpack without its
    # declared dependencies, then the ones the model code imports (tensorboard, pre-commit and black,
    # needed by its training CLI and development tools only, are left out)
    "schnetpack": [["install", TORCH_PIN], ["install", "--no-deps", "schnetpack==2.1.1"],
                   ["install", "-c", "{constraints}", "numpy", "ase", "h5py", "pyyaml", "hydra-core",
                    "pytorch-lightning", "torchmetrics", "hydra-colorlog", "rich", "fasteners", "dirsync",
                    "torch-ema", "matscipy", "tqdm"]],
}


def venv_python(name: str | None) -> Path:
    return Path(sys.executable) if name is None else VENVS / name / "bin" / "python"


def _torch_version(python: Path) -> str:
    out = subprocess.run([str(python), "-c", "import torch; print(torch.__version__)"], capture_output=True,
                         text=True)
    return out.stdout.strip() if out.returncode == 0 else f"error: {out.stderr[-500:]}"


def ensure_venv(name: str | None, log=print) -> Path:
    """The python of the peer's environment; created (``benchmarks/.venvs/<name>``) if missing."""
    python = venv_python(name)
    if name is None:
        return python
    recipe = VENV_RECIPES[name]
    stamp = VENVS / name / ".phizoo-bench"
    digest = hashlib.sha256(json.dumps(recipe).encode()).hexdigest()[:16]
    if python.exists() and stamp.exists() and stamp.read_text().strip() == digest:
        return python
    log(f"creating {VENVS / name} (a few minutes, once) ...")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENVS / name)], check=True)
    want = _torch_version(Path(sys.executable))
    with tempfile.TemporaryDirectory() as tmp:
        constraints = Path(tmp) / "constraints.txt"
        constraints.write_text(TORCH_PIN + "\n")  # nothing may upgrade torch
        for step in recipe:
            cmd = [str(python), "-m", "pip", "install", "-q"] + [a.format(constraints=constraints) for a in step[1:]]
            log("  " + " ".join(cmd[2:]))
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode != 0:
                raise RuntimeError(f"pip failed in {VENVS / name}:\n{res.stderr[-3000:]}")
    got = _torch_version(python)
    if got != want:
        raise RuntimeError(f"{VENVS / name} has torch {got}, phizoo's environment {want}: refusing to compare")
    stamp.write_text(digest + "\n")
    return python
