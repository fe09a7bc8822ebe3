import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

from . import native  # noqa: E402


@pytest.fixture
def md22_file(tmp_path):
    return native.md22_npz(tmp_path / "md22_AT-AT.npz", n=40)


@pytest.fixture
def oe62_file(tmp_path):
    return native.oe62_json(tmp_path / "df_62k.json", n=100)


@pytest.fixture
def qm9_file(tmp_path):
    return native.qm9_csv(tmp_path / "qm9_part1.csv", native.qm9_rows(60))


@pytest.fixture(scope="module")
def md22_db(tmp_path_factory):
    """A converted MD22 fixture database (40 frames, forces), shared by a module's tests."""
    from phizoo.data import convert_md22

    d = tmp_path_factory.mktemp("md22db")
    src = native.md22_npz(d / "md22_AT-AT.npz", n=40)
    return convert_md22(src, d / "md22.lmdb", train_size=20)
