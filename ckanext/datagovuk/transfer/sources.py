"""Where an import reads from: the source an operator names, and how ssh
reaches a remote one."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from ckanext.datagovuk.errors import OperatorError

DEFAULT_REMOTE_DB = "ckan"
TOC_FILE = "toc.dat"
SSH_BASE_OPTIONS = (
    # Never prompt: an import runs unattended, a prompt would hang it.
    "BatchMode=yes",
    "StrictHostKeyChecking=yes",
    "ConnectTimeout=20",
    # A link that dies silently mid-stream ends the transfer within a minute.
    "ServerAliveInterval=15",
    "ServerAliveCountMax=4",
)


@dataclass(frozen=True)
class Source:
    kind: str                 # one of REMOTE_DATABASE, REMOTE_FILE, LOCAL_FILE
    host: str | None = None   # [user@]host
    path: str | None = None

    REMOTE_DATABASE = "remote-database"
    REMOTE_FILE = "remote-file"
    LOCAL_FILE = "local-file"

    @property
    def is_remote(self) -> bool:
        return self.kind != self.LOCAL_FILE

    def describe(self, remote_db: str = DEFAULT_REMOTE_DB) -> str:
        if self.kind == self.REMOTE_DATABASE:
            return f"database {remote_db!r} on {self.host}"
        if self.kind == self.REMOTE_FILE:
            return f"{self.path} on {self.host}"
        return self.path


_HOST_RE = re.compile(r"^(?:[A-Za-z0-9._+-]+@)?[A-Za-z0-9._-]+$|"
                      r"^(?:[A-Za-z0-9._+-]+@)?\[[0-9A-Fa-f:.]+\]$")


def parse_source(text: str) -> Source:
    """``[user@]host``, ``[user@]host:PATH`` or a local file.  An existing
    local path always wins; anything with a ``/`` before any ``:`` is a
    local path."""
    if not text or not text.strip():
        raise OperatorError("no source given")
    if os.path.exists(text):
        if os.path.isdir(text) and not os.path.isfile(
                os.path.join(text, TOC_FILE)):
            raise OperatorError(f"{text} is a directory but not a "
                                f"directory-format dump (no {TOC_FILE})")
        return Source(Source.LOCAL_FILE, path=text)
    host, colon, path = text.partition(":")
    if colon and "/" not in host and not host.startswith("["):
        _check_host(host, text)
        if not path:
            raise OperatorError(f"{text}: no file path after the colon")
        return Source(Source.REMOTE_FILE, host=host, path=path)
    if "/" in text or text.startswith("."):
        raise OperatorError(f"{text}: no such file")
    _check_host(text, text)
    return Source(Source.REMOTE_DATABASE, host=text)


def _check_host(host: str, text: str) -> None:
    if host.startswith("-") or not _HOST_RE.match(host):
        raise OperatorError(f"{text}: not a file and not [user@]host or "
                            "[user@]host:PATH")


@dataclass
class SshSettings:
    """How to reach the remote host.  Anything not given here comes from
    the operator's ssh config; host key checking always stays on."""
    port: int | None = None
    identity_file: str | None = None
    options: list[str] = field(default_factory=list)   # ssh -o values
    config_file: str | None = None                     # ssh -F

    def check(self) -> None:
        if self.identity_file:
            self.identity_file = os.path.expanduser(self.identity_file)
        if self.config_file:
            self.config_file = os.path.expanduser(self.config_file)
        for option in self.options:
            key, _, value = option.strip().replace("=", " ", 1).partition(" ")
            if not key or not value.strip():
                raise OperatorError(f"--ssh-option {option!r}: give it as "
                                    "Key=Value (an ssh -o option)")
            if (key.lower() == "stricthostkeychecking"
                    and value.strip().lower() in ("no", "off", "accept-new")):
                raise OperatorError(
                    f"--ssh-option {option}: host key checking stays on; add "
                    "the host's key to known_hosts (ssh-keyscan, then check "
                    "its fingerprint) instead")
        if self.identity_file and not os.path.isfile(self.identity_file):
            raise OperatorError(f"identity file {self.identity_file} does "
                                "not exist")
        if self.config_file and not os.path.isfile(self.config_file):
            raise OperatorError(f"ssh config {self.config_file} does not "
                                "exist")

    def command(self, host: str, remote_command: str) -> list[str]:
        """``ssh`` with our options; ``remote_command`` is the one string the
        remote shell parses, built by the caller with ``shlex.quote``."""
        args = ["ssh"]
        if self.config_file:
            args += ["-F", self.config_file]
        # ssh takes the first value given for an option: ours go first so
        # that no config file can turn host key checking off.
        for option in SSH_BASE_OPTIONS:
            args += ["-o", option]
        for option in self.options:
            args += ["-o", option]
        if self.port:
            args += ["-p", str(self.port)]
        if self.identity_file:
            args += ["-i", self.identity_file]
        return [*args, "--", host, remote_command]
