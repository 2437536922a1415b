"""Who can use the Ray instance a sweep runs on (DESIGN §10): an existing cluster must ask for Ray's token
authentication, and the local instance is private (bound to loopback, with its own token).

Facts of Ray (2.5x/2.60) this relies on: ``RAY_AUTH_MODE=token`` turns token authentication on for a process
and the Ray processes it starts; the token is read from ``RAY_AUTH_TOKEN``, else the file named by
``RAY_AUTH_TOKEN_PATH``, else ``~/.ray/auth_token`` (``ray get-auth-token --generate`` writes that file and
leaves its permissions to the umask). A new local instance whose ``RAY_AUTH_MODE`` is unset turns token mode
on by itself. Its node IP, which every one of its servers binds, is the machine's network address unless
Ray's cluster switch (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER``, read once at import) is off; then it is 127.0.0.1.
Everything here but :func:`private_local_instance` is Ray-free.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import secrets
import stat
from pathlib import Path
from typing import Iterator, Mapping

from clu.config import ConfigError

TOKEN_FILE = "auth_token"
"""The local instance's token file, in its Ray temp dir."""
_TOKEN: str | None = None


def address_host(address: str) -> str | None:
    """The host of a Ray address (``HOST:PORT``, ``[V6]:PORT``, ``ray://HOST:PORT``); None for ``auto`` (whatever
    cluster runs on this machine, which may be reachable from the network)."""
    rest = address.strip()
    if "://" in rest:
        rest = rest.split("://", 1)[1]
    rest = rest.split("/", 1)[0]
    if not rest or rest == "auto":
        return None
    if rest.startswith("["):
        return rest[1:].split("]", 1)[0]
    if rest.count(":") > 1:  # a bare IPv6 address
        return rest
    return rest.rsplit(":", 1)[0] if ":" in rest else rest


def is_loopback(address: str) -> bool:
    """Whether a Ray address names this machine's loopback interface (127.0.0.0/8, ::1, localhost)."""
    host = address_host(address)
    if host is None:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to any interface
        return False


def check_cluster_access(address: str | None, insecure: bool, environ: Mapping[str, str] | None = None,
                         home: Path | None = None) -> None:
    """Refuse a non-loopback ``--address`` unless this process authenticates with a token only its user can read.

    Raises ConfigError (key ``--address``) naming what is missing; ``insecure`` (``--insecure``) skips the check.
    Ray is not imported: this runs before anything is started or written.
    """
    if address is None or insecure or is_loopback(address):
        return
    env = os.environ if environ is None else environ
    hint = ("see the README's 'Sweeps on a Ray cluster' for the token setup, or pass --insecure on a network "
            "only you can reach")
    if env.get("RAY_AUTH_MODE", "").strip().lower() != "token":
        raise ConfigError(f"{address} is not loopback and RAY_AUTH_MODE is not 'token': anyone who reaches the "
                          f"cluster could run code under your account; {hint}", key="--address")
    if env.get("RAY_AUTH_TOKEN", "").strip():
        return
    path = Path(env["RAY_AUTH_TOKEN_PATH"]) if env.get("RAY_AUTH_TOKEN_PATH") else (
        (Path.home() if home is None else home) / ".ray" / TOKEN_FILE)
    try:
        info = path.stat()
        empty = not path.read_text().strip()
    except OSError:
        info, empty = None, True
    if info is None or empty:
        raise ConfigError(f"RAY_AUTH_MODE is 'token' but there is no token: {path} is missing or empty "
                          "(copy the cluster's token there, or set RAY_AUTH_TOKEN_PATH)", key="--address")
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"the Ray token file {path} is readable by others (mode {stat.filemode(info.st_mode)}); "
                          f"chmod 600 {path}", key="--address")


def _process_token() -> str:
    """One token per process: Ray caches the token it first loads, so each local instance of a process shares it."""
    global _TOKEN
    if _TOKEN is None:
        _TOKEN = secrets.token_hex(32)
    return _TOKEN


def write_token(folder: Path) -> Path:
    """Write this process's token to ``folder/auth_token``, readable by its user only."""
    path = folder / TOKEN_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(_process_token())
    os.chmod(path, 0o600)  # an existing file keeps its mode through os.open
    return path


def local_instance_env(tmpdir: Path) -> dict[str, str | None]:
    """The environment of a private local instance (None: unset): token auth with this process's token in
    ``tmpdir``, whatever the caller's ``RAY_AUTH_MODE`` (a Makefile's ``disabled`` included), and no
    ``RAY_ADDRESS`` that would send the sweep elsewhere. ``RAY_AUTH_MODE`` is left unset rather than set to
    ``token`` so that Ray turns token mode on itself, refreshing its configuration even in a process that
    already ran Ray without it."""
    return {"RAY_AUTH_MODE": None, "RAY_AUTH_TOKEN": None, "RAY_AUTH_TOKEN_PATH": str(write_token(tmpdir)),
            "RAY_ADDRESS": None}


class _QuietTokenNotice(logging.Filter):
    """Drop Ray's notice that token auth was turned on: it advises ``RAY_AUTH_MODE=disabled``, which clu ignores."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Token authentication is enabled" not in record.getMessage()


@contextlib.contextmanager
def private_local_instance() -> Iterator[None]:
    """Around ``ray.init`` of a local instance: its node IP, hence every server of it, is 127.0.0.1.

    Ray reads its cluster switch once, at import, so the constant is set here (Ray may have been imported
    earlier in this process); :func:`check_loopback` verifies the outcome.
    """
    from ray._private import ray_constants  # deferred: only the Ray executor loads Ray

    before = ray_constants.ENABLE_RAY_CLUSTER
    notice = logging.getLogger("ray._private.authentication.authentication_token_setup")
    quiet = _QuietTokenNotice()
    ray_constants.ENABLE_RAY_CLUSTER = False
    notice.addFilter(quiet)
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before
        notice.removeFilter(quiet)


def check_loopback(gcs_address: str) -> None:
    """Fail closed if the local instance came up on another interface than loopback."""
    if not is_loopback(gcs_address):
        raise RuntimeError(f"the local Ray instance listens on {gcs_address}, not on loopback; refusing to use it")



def reload_ray_auth() -> None:
    """Make this process's Ray follow ``RAY_AUTH_MODE`` and the token sources as they are now, before a
    ``ray.init``: Ray caches both per process (its driver serves gRPC too), so a sweep on a token-less cluster
    after one on a local instance would otherwise keep asking its workers for the local token."""
    from ray._raylet import AuthenticationTokenLoader, Config  # deferred: only the Ray executor loads Ray

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()
