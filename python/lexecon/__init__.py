"""Lexecon: execution control for AI agents.

The wheel installs the `lexecon` and `lexecon-supervise` programs next to the
Python interpreter's scripts; `binary()` finds them.
"""

import os
import shutil
import sys
import sysconfig

__all__ = ["binary"]


def binary(name="lexecon"):
    """The path of an installed Lexecon program (`lexecon` or
    `lexecon-supervise`): `$LEXECON_BIN` for `lexecon` when set, else the
    one installed with this package, else the one on PATH. Raises
    FileNotFoundError when there is none."""
    if name not in ("lexecon", "lexecon-supervise"):
        raise ValueError("unknown Lexecon program %r" % (name,))
    if name == "lexecon" and os.environ.get("LEXECON_BIN"):
        return os.environ["LEXECON_BIN"]
    for scripts in (sysconfig.get_path("scripts"), os.path.dirname(sys.executable)):
        candidate = os.path.join(scripts, name)
        if os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(
            "%s is not installed: pip install lexecon, or set LEXECON_BIN" % name
        )
    return found
