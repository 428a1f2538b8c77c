"""What the command lines (``minibert.pretrain``, ``minibert.finetune``, ``minibert.predict``) share: their
``--help`` format, in which every flag shows its default."""
from __future__ import annotations

import argparse


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """argparse's help with each optional flag's default after its help text, "(default: 32)", or "(default:
    off)" for a switch, unless the help text already says what the default is (a flag whose default is None
    must say in words what happens without it: "default: all"); the description and epilog (the examples)
    are printed as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (not action.option_strings or action.required or action.default is argparse.SUPPRESS
                or "default" in text.lower()):
            return text
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            return f"{text} (default: {'on' if action.default else 'off'})"
        if action.default is None:
            return text
        return f"{text} (default: %(default)s)"
