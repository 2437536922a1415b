"""Who can use a sweep's Ray instance (:mod:`clu.cluster`): the ``--address`` check (token auth or
``--insecure``), the local instance's token file. The local instance itself (loopback, token) is checked on a
running sweep in ``tests/sweeps/test_executors.py``."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from clu import cluster as C
from clu.config import ConfigError


@pytest.mark.parametrize("address, host, loopback", [
    ("127.0.0.1:6379", "127.0.0.1", True),
    ("127.5.0.1:6379", "127.5.0.1", True),
    ("localhost:6379", "localhost", True),
    ("[::1]:6379", "::1", True),
    ("ray://127.0.0.1:10001", "127.0.0.1", True),
    ("10.0.0.5:6379", "10.0.0.5", False),
    ("ray://head.example.org:10001", "head.example.org", False),
    ("auto", None, False),  # whatever runs on this machine, perhaps on its network interface
])
def test_address_host_and_loopback(address: str, host: str | None, loopback: bool) -> None:
    assert C.address_host(address) == host
    assert C.is_loopback(address) is loopback


def _token_file(folder: Path, mode: int, text: str = "abc123") -> Path:
    path = folder / "token"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_a_remote_address_needs_token_auth_with_a_private_token(tmp_path: Path) -> None:
    remote = "10.0.0.5:6379"
    for address in (None, "127.0.0.1:6379"):  # a local instance or loopback: nothing to check
        C.check_cluster_access(address, False, {}, tmp_path)
    C.check_cluster_access(remote, True, {"RAY_AUTH_MODE": "disabled"}, tmp_path)  # --insecure
    for env in ({}, {"RAY_AUTH_MODE": "disabled"}):
        with pytest.raises(ConfigError, match="RAY_AUTH_MODE is not 'token'.*--insecure") as e:
            C.check_cluster_access(remote, False, env, tmp_path)
        assert e.value.key == "--address" and remote in str(e.value)
    token = {"RAY_AUTH_MODE": "token"}
    C.check_cluster_access(remote, False, {**token, "RAY_AUTH_TOKEN": "abc"}, tmp_path)
    with pytest.raises(ConfigError, match="no token"):  # no ~/.ray/auth_token under this home
        C.check_cluster_access(remote, False, token, tmp_path)
    (tmp_path / ".ray").mkdir()
    _token_file(tmp_path / ".ray", 0o600).rename(tmp_path / ".ray" / "auth_token")
    C.check_cluster_access(remote, False, token, tmp_path)
    path = _token_file(tmp_path, 0o644)
    with pytest.raises(ConfigError, match=r"readable by others \(mode -rw-r--r--\); chmod 600") as e:
        C.check_cluster_access(remote, False, {**token, "RAY_AUTH_TOKEN_PATH": str(path)}, tmp_path)
    assert str(path) in str(e.value)
    path.chmod(0o600)
    C.check_cluster_access(remote, False, {**token, "RAY_AUTH_TOKEN_PATH": str(path)}, tmp_path)
    _token_file(tmp_path, 0o600, text="\n")
    with pytest.raises(ConfigError, match="missing or empty"):
        C.check_cluster_access(remote, False, {**token, "RAY_AUTH_TOKEN_PATH": str(path)}, tmp_path)


def test_local_instance_token_is_private_and_the_callers_auth_mode_is_ignored(tmp_path: Path) -> None:
    stale = _token_file(tmp_path, 0o644, text="someone else's").rename(tmp_path / C.TOKEN_FILE)
    env = C.local_instance_env(tmp_path)
    assert env["RAY_AUTH_TOKEN_PATH"] == str(stale)
    assert stat.S_IMODE(stale.stat().st_mode) == 0o600 and len(stale.read_text()) == 64
    # Ray turns token mode on itself when the mode is unset; no caller's RAY_ADDRESS or token applies
    assert env["RAY_AUTH_MODE"] is None and env["RAY_ADDRESS"] is None and env["RAY_AUTH_TOKEN"] is None
    other = tmp_path / "other"
    other.mkdir()
    assert C.write_token(other).read_text() == stale.read_text()  # one token per process (Ray caches it)
    C.check_loopback("127.0.0.1:6379")
    with pytest.raises(RuntimeError, match="not on loopback"):
        C.check_loopback("10.0.0.5:6379")


def test_cli_refuses_an_open_cluster_before_anything_starts(tmp_path: Path) -> None:
    """`clu sweep/tune --address` to a non-loopback host without token auth: exit 2, one line, no Ray, no torch,
    nothing written."""
    code = f"""
import contextlib, io, json, sys
from clu.cli import build_parser, main
res = []
remote = ["--address", "10.0.0.5:6379", "--out"]
for argv in (["sweep", "digits-class", "--strategies", "er", *remote, {str(tmp_path / "s")!r}],
             ["tune", "ugclu", "--scenarios", "digits-class", *remote, {str(tmp_path / "t")!r}]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        res.append([main(argv), err.getvalue()])
insecure = [build_parser().parse_args(a[:-2] + ["--insecure"]).insecure for a in (
    ["sweep", "x", "--strategies", "er", "--address", "10.0.0.5:6379", "-", "-"],
    ["tune", "x", "--scenarios", "x", "--address", "10.0.0.5:6379", "-", "-"])]
print(json.dumps({{"res": res, "insecure": insecure, "ray": "ray" in sys.modules, "torch": "torch" in sys.modules}}))
"""
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    got = json.loads(out)
    assert not got["ray"] and not got["torch"] and got["insecure"] == [True, True]  # --insecure skips the check
    for exit_code, err in got["res"]:
        assert exit_code == 2 and err.count("\n") == 1
        assert err.startswith("clu: error: --address: 10.0.0.5:6379 is not loopback") and "--insecure" in err
    assert not (tmp_path / "s").exists() and not (tmp_path / "t").exists()

