"""The subcommands of `python -m gmsdi.eval`: each `(args, argv) -> [paths written]` over `gmsdi.eval.runner`."""

from gmsdi.eval.commands.conditioning import cmd_report, cmd_retrieval, cmd_sensitivity
from gmsdi.eval.commands.generation import cmd_fad, cmd_instruments, cmd_sweep
from gmsdi.eval.commands.separation import cmd_compare, cmd_ensemble_choice, cmd_separation, cmd_steps

COMMANDS = {"separation": cmd_separation, "fad": cmd_fad, "sweep": cmd_sweep, "steps": cmd_steps,
            "ensemble-choice": cmd_ensemble_choice, "sensitivity": cmd_sensitivity,
            "retrieval": cmd_retrieval, "instruments": cmd_instruments, "report": cmd_report,
            "compare": cmd_compare}

__all__ = ["COMMANDS"]
