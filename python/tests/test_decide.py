"""Tests of the lexecon package against the built binary.

Run with PYTHONPATH=python, LEXECON_BIN=the binary, and LEXECON_TEST_POLICY,
LEXECON_TEST_KEYS, LEXECON_TEST_LEDGER naming a policy, a key directory and
a ledger (tests/python.rs sets them up).
"""

import os
import unittest

import lexecon


def opts():
    return dict(
        policy=os.environ["LEXECON_TEST_POLICY"],
        keys=os.environ["LEXECON_TEST_KEYS"],
        ledger=os.environ["LEXECON_TEST_LEDGER"],
        one_shot=True,
    )


class Decide(unittest.TestCase):
    def test_a_blocked_command_names_its_rule_and_record(self):
        d = lexecon.decide({"kind": "exec", "argv": ["rm", "-rf", "/"]}, **opts())
        self.assertFalse(d.allowed)
        self.assertEqual(d.verdict, "block")
        self.assertEqual(d.rule, "block-rm-rf")
        self.assertEqual(d.reason, "recursive forced delete")
        self.assertIsInstance(d.record, int)

    def test_kind_and_fields_as_keywords(self):
        d = lexecon.decide("tool", name="mcp__github__get_issue", input={"n": 1}, **opts())
        self.assertTrue(d.allowed)
        self.assertEqual(d.rule, "allow-github-reads")
        d = lexecon.decide("tool", name="Bash", input={"command": "ls $X"}, shell="/command", **opts())
        self.assertTrue(any("whole text only" in n for n in d.notes), d.notes)

    def test_an_unjudgeable_request_raises(self):
        with self.assertRaises(lexecon.LexeconError) as e:
            lexecon.decide({"kind": "nope"}, **opts())
        self.assertIn("unknown action kind", str(e.exception))

    def test_no_program_raises(self):
        old = os.environ.get("LEXECON_BIN")
        os.environ["LEXECON_BIN"] = "/nonexistent/lexecon"
        try:
            with self.assertRaises(lexecon.LexeconError):
                lexecon.decide({"kind": "exec", "argv": ["true"]}, **opts())
        finally:
            os.environ["LEXECON_BIN"] = old


if __name__ == "__main__":
    unittest.main()
