"""Make link keys for a multi-host run:

    python -m cryptgpu.keys [--force] OUTDIR

writes party{0,1,2}.key (private, give each to its party only) and
pubkeys (the three public keys, one per line, for every party). Then on
host i: ``CRYPTGPU_KEY=@party{i}.key CRYPTGPU_PUBKEYS=@pubkeys``.
"""

from __future__ import annotations

import os
import sys

from . import _native


def main(argv: list[str] | None = None) -> int:
    """Write party{0,1,2}.key and pubkeys into the given directory."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) == 1 and args[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    force = "--force" in args
    args = [a for a in args if a != "--force"]
    if len(args) != 1 or args[0].startswith("-"):
        print(__doc__, file=sys.stderr)
        return 2
    out = args[0]
    names = [f"party{i}.key" for i in range(3)] + ["pubkeys"]
    there = [n for n in names if os.path.exists(os.path.join(out, n))]
    if there and not force:
        # new keys over old ones break every party still holding the old
        print(
            f"{out} already holds {', '.join(there)}: not overwritten (pass --force "
            "to make new keys; every party then needs its new files)",
            file=sys.stderr,
        )
        return 1
    if os.path.exists(out) and not os.path.isdir(out):
        print(f"{out} is a file, not a directory: give a directory for the keys", file=sys.stderr)
        return 1
    try:
        _write(out)
    except OSError as e:
        # one line, not a traceback (a path under /proc, a read-only disk)
        print(f"cannot write the keys into {out}: {e.strerror or e}", file=sys.stderr)
        return 1
    print(f"wrote {out}/party0.key, party1.key, party2.key and {out}/pubkeys")
    return 0


def _write(out: str) -> None:
    os.makedirs(out, exist_ok=True)
    pairs = [_native.generate_keypair() for _ in range(3)]
    for i, (priv, _) in enumerate(pairs):
        path = os.path.join(out, f"party{i}.key")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(priv + "\n")
    with open(os.path.join(out, "pubkeys"), "w") as f:
        f.write("\n".join(pub for _, pub in pairs) + "\n")


if __name__ == "__main__":
    sys.exit(main())
