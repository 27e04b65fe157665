"""Which files of a pinned version get their sha256 into the lock (devstack/lockfile.py): what pip may
pick for CPython 3.11 on Linux x86-64 or aarch64, pure-Python wheels and the sdist; nothing else."""

from __future__ import annotations

import pytest

from devstack.lockfile import installable


@pytest.mark.parametrize("filename", [
    "aiohttp-3.14.5-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
    "aiohttp-3.14.5-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
    "cryptography-50.0.2-cp39-abi3-manylinux_2_34_x86_64.whl",
    "structlog-25.5.0-py3-none-any.whl",
    "six-1.17.0-py2.py3-none-any.whl",
    "aiohttp-3.14.5.tar.gz",
])
def test_files_pip_may_install_here_are_hashed(filename: str) -> None:
    assert installable(filename)


@pytest.mark.parametrize("filename", [
    "aiohttp-3.14.5-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
    "aiohttp-3.14.5-cp311-cp311-macosx_11_0_arm64.whl",
    "aiohttp-3.14.5-cp311-cp311-win_amd64.whl",
    "aiohttp-3.14.5-cp311-cp311-musllinux_1_2_x86_64.whl",
    "cryptography-50.0.2-cp312-abi3-manylinux_2_34_x86_64.whl",
    "thing-1.0-py2-none-any.whl",
])
def test_files_for_other_pythons_or_platforms_are_not(filename: str) -> None:
    assert not installable(filename)
