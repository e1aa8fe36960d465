"""Which migrations there are: read as package data, and an install without them fails instead of doing nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.migrate import MigrationError, discover

REPO = Path(__file__).resolve().parents[2]


def test_the_package_data_is_the_repos_migrations_folder_in_order() -> None:
    found = discover()
    assert [m.name for m in found] == sorted(p.name for p in (REPO / "migrations").glob("*.sql"))
    assert [m.version for m in found] == sorted({m.version for m in found})
    assert found[0].sql == (REPO / "migrations" / found[0].name).read_text()


def test_an_install_without_migrations_fails_saying_so(tmp_path: Path) -> None:
    (tmp_path / "__init__.py").write_text("")
    with pytest.raises(MigrationError, match=r"no migration files .* install is incomplete"):
        discover(tmp_path)


@pytest.mark.parametrize(
    ("names", "error"),
    [
        (["001_a.sql", "1_b.sql"], r"'1_b.sql' .* must be named NNN_snake_case.sql"),
        (["001_a.sql", "001_b.sql"], "two migrations share a number"),
    ],
)
def test_misnamed_migrations_are_refused(tmp_path: Path, names: list[str], error: str) -> None:
    for name in names:
        (tmp_path / name).write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=error):
        discover(tmp_path)
