"""Ask Lexecon before acting: a thin client of ``lexecon decide --json``.

Inside a supervised run (``lexecon-supervise -- python agent.py``) the
question goes to the run's gate, judged by the run's policy and recorded in
its ledger; outside one, ``lexecon decide`` makes a one-shot run of its own.
Either way the answer names the rule, its reason and the ledger record, and
whatever the agent then really does is judged again at the system call when
it runs supervised.

    import lexecon
    d = lexecon.decide({"kind": "tool", "name": "deploy", "input": {"env": "prod"}})
    if not d.allowed:
        return f"refused: {d.reason} (rule {d.rule}, record {d.record})"

The ``lexecon`` program is ``$LEXECON_BIN`` when set, else the one the
wheel installed next to this interpreter's scripts, else found in ``PATH``
(see ``binary()``).
"""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Union

__all__ = ["decide", "binary", "Decision", "LexeconError"]


class LexeconError(Exception):
    """The action could not be judged (nothing is allowed): a bad request,
    no signing key, no ``lexecon`` program, or a gate that refused to
    answer. The message is Lexecon's."""


@dataclass
class Decision:
    """The answer to one question."""

    #: ``"allow"`` or ``"block"``: what to do.
    answer: str
    #: The policy's verdict: ``"allow"``, ``"escalate"`` or ``"block"``.
    verdict: str
    #: The rule whose verdict won, or ``None`` for the policy's default.
    rule: Optional[str]
    #: The rule's reason (or the default's), to show to the model or user.
    reason: str
    #: Sequence number of the ``intent`` record in the ledger.
    record: Optional[int]
    #: The ledger file.
    ledger: Optional[str]
    #: Sentences on how the action was read (a shell command judged by its
    #: whole text only, and why).
    notes: List[str] = field(default_factory=list)
    #: The whole reply of ``lexecon decide --json``.
    raw: Dict[str, Any] = field(default_factory=dict)

    @property
    def allowed(self) -> bool:
        return self.answer == "allow"


_OPTIONS = {
    "policy": "--policy",
    "ledger": "--ledger",
    "keys": "--keys",
    "mode": "--mode",
    "on_escalate": "--on-escalate",
    "escalate_timeout": "--escalate-timeout",
    "workspace": "--workspace",
}


def binary(name: str = "lexecon") -> str:
    """The path of a Lexecon program (``lexecon`` or ``lexecon-supervise``):
    ``$LEXECON_BIN`` for ``lexecon`` when set, else the one installed with
    this package (the wheel puts both next to the interpreter's scripts),
    else the one on ``PATH``. Raises LexeconError when there is none."""
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
        raise LexeconError(
            "the %s program was not found: pip install lexecon, or set LEXECON_BIN to its path"
            % name
        )
    return found


def _program() -> str:
    return binary("lexecon")


def decide(action: Union[Dict[str, Any], str], **kw: Any) -> Decision:
    """Ask whether ``action`` may happen.

    ``action`` is the action object of a gate request (``{"kind": "exec",
    "argv": [...]}``, ``{"kind": "open", "path": ..., "access": [...]}``,
    ``{"kind": "connect", "url": ...}``, ``{"kind": "tool", "name": ...,
    "input": {...}}``), or a kind name with the fields as keywords
    (``decide("tool", name="deploy", input={...})``).

    Keywords that are not fields of the action: ``cwd`` (the action's
    working directory), ``timeout`` (seconds to wait for the answer, which
    may wait for a human), and for one-shot decisions ``policy``,
    ``ledger``, ``keys``, ``mode``, ``on_escalate``, ``escalate_timeout``,
    ``workspace``, ``one_shot`` (judge one-shot even inside a supervised
    run).
    """
    timeout = kw.pop("timeout", None)
    cwd = kw.pop("cwd", None)
    one_shot = kw.pop("one_shot", False)
    args = [_program(), "decide", "--json"]
    for k, flag in _OPTIONS.items():
        if k in kw:
            v = kw.pop(k)
            if v is not None:
                args += [flag, str(v)]
    if one_shot:
        args.append("--one-shot")
    if isinstance(action, str):
        action = dict(kw, kind=action)
    elif kw:
        raise TypeError("unexpected keyword arguments: " + ", ".join(sorted(kw)))
    request: Dict[str, Any] = {"action": action}
    if cwd is not None:
        request["cwd"] = os.path.abspath(cwd)
    try:
        p = subprocess.run(
            args,
            input=json.dumps(request).encode(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            timeout=timeout,
        )
    except OSError as e:
        raise LexeconError(f"cannot run {args[0]}: {e}") from e
    except subprocess.TimeoutExpired as e:
        raise LexeconError(f"no answer within {timeout} s") from e
    if p.returncode not in (0, 1):
        msg = p.stderr.decode(errors="replace").strip()
        raise LexeconError(msg or f"lexecon decide exited with status {p.returncode}")
    try:
        reply = json.loads(p.stdout)
    except ValueError as e:
        raise LexeconError(f"lexecon decide printed no JSON: {e}") from e
    return Decision(
        answer=reply.get("answer", "block"),
        verdict=reply.get("verdict", "block"),
        rule=reply.get("rule"),
        reason=reply.get("reason", ""),
        record=reply.get("record"),
        ledger=reply.get("ledger"),
        notes=list(reply.get("notes") or []),
        raw=reply,
    )
