"""Environment variables of a multi-process run, read and checked: each
mistake is an error that names the variable."""

from __future__ import annotations

import os

_YES = ("1", "true", "yes", "on")
_NO = ("", "0", "false", "no", "off")


def env_peers(v: str) -> list[str]:
    """``CRYPTGPU_PEERS``: addresses separated by commas (spaces around
    them and a trailing comma are not addresses)."""
    return [p.strip() for p in v.split(",") if p.strip()]


def env_flag(v: str | None, name: str | None = None) -> bool:
    """A yes/no variable: 1, true, yes or on (any case) is yes. With the
    variable's ``name``, a value that is neither yes nor no (0, false, no,
    off, empty) is a ValueError naming it (``CRYPTGPU_INSECURE=maybe`` was
    read as no without a word)."""
    word = (v or "").strip().lower()
    if name is not None and word not in _YES + _NO:
        raise ValueError(
            f"{name} must be 1, true, yes or on (or 0, false, no, off, or unset), got {v!r}"
        )
    return word in _YES


def from_env(name: str) -> str | None:
    """A key variable: its value, or with ``@path`` the file's contents;
    None when unset or empty. A file that cannot be read is an error naming
    the variable (an ``@`` naming a directory was a bare IsADirectoryError)."""
    v = os.environ.get(name)
    if v is not None and not v.strip():
        return None  # set but empty: as unset ("no link keys" says what to set)
    if v and v.startswith("@"):
        try:
            with open(v[1:]) as f:
                return f.read().strip()
        except FileNotFoundError:
            raise FileNotFoundError(f"{name}={v}: no file {v[1:]!r}") from None
        except IsADirectoryError:
            raise IsADirectoryError(
                f"{name}={v}: {v[1:]!r} is a directory, not a key file"
            ) from None
        except OSError as e:
            raise type(e)(f"{name}={v}: cannot read {v[1:]!r}: {e.strerror or e}") from None
    if v and os.path.isfile(v):
        raise ValueError(f"{name}={v!r} names a file: write it as {name}=@{v} to read the key")
    return v
