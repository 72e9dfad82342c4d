"""The local cloud's per-install credentials: made once by `make up`, kept in `<home>/env` (mode 0600).

Both services check every request's SigV4 signature against them (localcloud/sigv4.py), so a process or page
that cannot read `.localcloud/env` cannot call the local cloud. They are the local cloud's own keys, never
the user's AWS credentials: nothing here reads `~/.aws` or the shell's `AWS_*` variables.

- `LOCALCLOUD_ACCESS_KEY_ID` / `LOCALCLOUD_SECRET_ACCESS_KEY` carry them to the services (the launcher sets
  them; docker-compose.yaml takes them from the environment of `docker compose up`).
- MiniStack hands its Lambdas the access key `000000000000` (its account id, which is how it picks the
  account) with the secret it was started with. So the account id is accepted as a second access key, with
  the same secret: it is the secret that authenticates.

Standard library only: MiniStack's interpreter loads this module too.
"""

from __future__ import annotations

import os
import secrets
import shlex
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

ACCESS_KEY_VARIABLE = "LOCALCLOUD_ACCESS_KEY_ID"
SECRET_KEY_VARIABLE = "LOCALCLOUD_SECRET_ACCESS_KEY"
LAMBDA_ACCESS_KEY = "000000000000"  # MiniStack's default account id, the key it gives the Lambdas it runs
ACCESS_KEY_PREFIX = "LKIA"  # not AWS's AKIA/ASIA: a local key is recognisable as such in any log
FILE_MODE = 0o600
_KEY_ALPHABET = string.ascii_uppercase + "234567"


class MissingCredentials(RuntimeError):
    pass


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str = field(repr=False)

    @classmethod
    def generate(cls) -> Credentials:
        """20-character access key id and 40-character secret, as AWS's have; from the OS's CSPRNG."""
        key = ACCESS_KEY_PREFIX + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(16))
        return cls(key, secrets.token_urlsafe(30))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Credentials:
        env = os.environ if env is None else env
        key, secret = env.get(ACCESS_KEY_VARIABLE, ""), env.get(SECRET_KEY_VARIABLE, "")
        if not key or not secret:
            raise MissingCredentials(
                f"{ACCESS_KEY_VARIABLE} and {SECRET_KEY_VARIABLE} must be set: the local cloud refuses to run "
                "unauthenticated. `make up` (or `make credentials`) writes them into .localcloud/env."
            )
        return cls(key, secret)

    def as_env(self) -> dict[str, str]:
        return {ACCESS_KEY_VARIABLE: self.access_key_id, SECRET_KEY_VARIABLE: self.secret_access_key}

    def signing_keys(self) -> dict[str, str]:
        """Access key id -> secret, for the signature check: the install's key, and the Lambdas' one."""
        return {self.access_key_id: self.secret_access_key, LAMBDA_ACCESS_KEY: self.secret_access_key}


def read_exports(path: Path) -> dict[str, str]:
    """`export NAME=value` lines of a file written by `write_private`, parsed as the shell would."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    values = {}
    for line in text.splitlines():
        words = shlex.split(line, comments=True)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            name, value = words[1].split("=", 1)
            values[name] = value
    return values


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` readable by its owner only, atomically: the file never exists with a wider mode,
    nor half written (a temporary file created 0600, then renamed over the old one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(text)
        os.chmod(temporary, FILE_MODE)  # O_CREAT's mode is only used for a new file
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def exports(values: Mapping[str, str]) -> str:
    return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in values.items())


def load_or_create(env_file: Path) -> Credentials:
    """The install's credentials from `env_file`, or new ones written there at once (so every later caller,
    and the next `make up`, sees the same ones). A file that others could read is made private again."""
    try:
        credentials = Credentials.from_env(read_exports(env_file))
    except MissingCredentials:
        pass
    else:
        ensure_private(env_file)
        return credentials
    credentials = Credentials.generate()
    header = "# Written by `make up`: the local cloud's own credentials (not AWS's). Keep this file private.\n"
    write_private(env_file, header + exports(credentials.as_env()))
    return credentials


def ensure_private(path: Path) -> None:
    if path.exists() and path.stat().st_mode & 0o077:
        os.chmod(path, FILE_MODE)
