"""Docs that cannot rot: the code blocks of README.md and of the tutorial pages run here.

Per page, in order, in one empty folder: every ```python block in one shared namespace (later
blocks use what earlier ones defined), every ```bash block in a fresh ``bash -euo pipefail``
with this interpreter's ``bin/`` first on PATH (so ``phizoo`` is the installed command). Blocks
that need big data or long training are fenced as ```py or ```sh (highlighted the same, never
run). Each runnable block must stay small: the test fails a block that takes more than
``BLOCK_LIMIT_S``.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = ["README.md", *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs" / "tutorials").glob("*.md"))]
RUN = ("python", "bash")
BLOCK_LIMIT_S = 30.0  # ~20 s each on an idle core; headroom for a shared CI machine
FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[\w-]*)[^\n]*\n(?P<code>.*?)^(?P=indent)```[ \t]*$", re.S | re.M)


def blocks(text: str) -> list[tuple[str, str, int]]:
    """(language, code, line) of every fenced block in a markdown text."""
    out = []
    for m in FENCE.finditer(text):
        indent = len(m["indent"])
        code = "".join(line[indent:] for line in m["code"].splitlines(keepends=True))
        out.append((m["lang"], code, text.count("\n", 0, m.start()) + 1))
    return out


def test_fences_parse():
    text = "a\n```python\nx = 1\n```\n\n```sh\nrm -rf /\n```\n  ```bash\n  echo hi\n  ```\n"
    assert [(lang, code) for lang, code, _ in blocks(text)] == [("python", "x = 1\n"), ("sh", "rm -rf /\n"),
                                                               ("bash", "echo hi\n")]


@pytest.mark.parametrize("page", PAGES)
def test_page_code_blocks_run(page, tmp_path, monkeypatch):
    runnable = [b for b in blocks((ROOT / page).read_text()) if b[0] in RUN]
    if page != "README.md":
        assert runnable, f"{page}: a tutorial without a runnable block"
    monkeypatch.chdir(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(ROOT)}
    namespace: dict = {"__name__": "__docs__"}
    for lang, code, line in runnable:
        start = time.perf_counter()
        where = f"{page}:{line} ({lang} block)"
        if lang == "python":
            try:
                exec(compile(code, where, "exec"), namespace)
            except Exception as err:  # name the block, keep the traceback
                raise AssertionError(f"{where} failed: {err!r}") from err
        else:
            r = subprocess.run(["bash", "-euo", "pipefail", "-c", code], cwd=tmp_path, env=env,
                               capture_output=True, text=True, timeout=300)
            assert r.returncode == 0, f"{where} exited {r.returncode}:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
        took = time.perf_counter() - start
        assert took < BLOCK_LIMIT_S, f"{where} took {took:.0f} s (limit {BLOCK_LIMIT_S:.0f} s): make it smaller or fence it as py/sh"
