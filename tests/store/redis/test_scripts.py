"""The Lua scripts: shipped as package files, completed from Python, registered, valid."""

from __future__ import annotations

import tomllib
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path, PurePosixPath

import pytest

from receiver.dedup import SENDING
from receiver.models import DedupReason
from receiver.store.redis import scripts
from receiver.store.redis.store import RedisStore
from tests.fakes.redis import RedisServer

_ROOT = Path(__file__).resolve().parents[3]


def _lua_files(folder: Traversable, prefix: str = "") -> set[str]:
    found: set[str] = set()
    for entry in folder.iterdir():
        if entry.is_dir():
            found |= _lua_files(entry, f"{prefix}{entry.name}/")
        elif entry.name.endswith(".lua"):
            found.add(prefix + entry.name)
    return found


def test_every_lua_file_is_package_data_and_used() -> None:
    # Read as the installed package's resources, as the store reads them.
    folder = files("receiver.store.redis") / "lua"
    on_disk = _lua_files(folder)
    used = {f"{name}.lua" for name in scripts.NAMES}
    for name in scripts.NAMES:
        used |= set(scripts.requires(name))
    # No file is forgotten (a script the store never runs) and none is missing.
    assert on_disk == used
    assert {"lib/claim.lua", "lib/decide.lua", "lib/unqueue.lua"} <= on_disk


def test_every_lua_file_ships_in_the_wheel() -> None:
    # Tests run on an editable install, which reads the source tree; the image installs a
    # wheel, which holds only the files package-data names.
    pyproject = tomllib.loads(_ROOT.joinpath("pyproject.toml").read_text(encoding="utf-8"))
    globs = pyproject["tool"]["setuptools"]["package-data"]["receiver.store.redis"]
    for path in sorted(_lua_files(files("receiver.store.redis") / "lua")):
        assert any(PurePosixPath("lua", path).match(g) for g in globs), path


@pytest.mark.parametrize("name", scripts.NAMES)
def test_each_script_is_its_file_completed(name: str) -> None:
    folder = files("receiver.store.redis") / "lua"
    text = (folder / f"{name}.lua").read_text(encoding="utf-8")
    source = scripts.source(name)
    # Headed by the KEYS/ARGV comment that documents its call.
    assert "-- KEYS:" in text
    # Its library files first, then the file itself.
    libraries = [scripts.library(lib) for lib in scripts.requires(name)]
    assert source.startswith("\n".join(libraries))
    assert source.endswith(text)
    # Every placeholder is filled in.
    assert "${" not in source


def test_decide_names_the_reasons_of_python() -> None:
    lua = scripts.library("lib/decide.lua")
    for reason in set(DedupReason) - {DedupReason.DUPLICATE}:
        assert f"'{reason.value}'" in lua
    sending = ", ".join(f"['{r.value}'] = true" for r in sorted(SENDING))
    assert f"local SENDING = {{{sending}}}" in lua


def test_an_unknown_placeholder_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"x\.lua: unknown placeholder \$\{DedupReason\.NOPE\}"):
        scripts._fill("return '${DedupReason.NOPE}'", {}, "x.lua")


async def test_every_script_is_registered_and_compiles(redis_server: RedisServer) -> None:
    store = RedisStore(redis_server.url)
    await store.open()
    try:
        registered = store._scripts
        assert set(registered) == set(scripts.NAMES)
        client = store._redis()
        for name, script in registered.items():
            assert script.script == scripts.source(name)
            # SCRIPT LOAD compiles: a syntax error in a .lua file fails here, not at first use.
            assert await client.script_load(script.script) == script.sha, name
        assert await client.script_exists(*(s.sha for s in registered.values())) == [True] * len(
            registered
        )
    finally:
        await store.close()
