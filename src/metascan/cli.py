"""The ``metascan`` command: one Typer sub-app per package, and one place that turns bad input
into a one-line error instead of a traceback."""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

from acquisition.cli import check_cmd, scan_command
from dataset.chip_report_cli import report_cmd as design_report_cmd
from dataset.curate_cli import curate_cmd
from dataset.pairs_cli import app as pairs_app
from dataset.process_cli import process_cmd
from dataset.quicklook import write_quicklook
from instruments.cli import app as instruments_app
from layout.cli import app as layout_app
from models.cli import evaluate_cmd, train_cmd
from models.design_chip_cli import chip_cmd as design_chip_cmd
from models.design_cli import optimize_cmd, predict_cmd, probes_cmd, retrieve_cmd
from models.targets_cli import targets_cmd
from simulators.cli import app as sim_app
from simulators.design_compare_cli import compare_cmd as design_compare_cmd
from simulators.design_eval_cli import evaluate_cmd as design_evaluate_cmd

app = typer.Typer(
    help="metascan: metasurface datasets from layout to learned inverse design.",
    no_args_is_help=True,
)
app.add_typer(layout_app, name="layout")
# `check` connects a whole bench, which only acquisition may assemble (real or emulated devices).
instruments_app.command("check")(check_cmd)
app.add_typer(instruments_app, name="instruments")
app.add_typer(sim_app, name="sim")
app.add_typer(pairs_app, name="pairs")
app.command("train")(train_cmd)
app.command("evaluate")(evaluate_cmd)
# The scan draws a quick-look per array as it goes: processing, so it is wired in here.
app.command("scan")(scan_command(quicklook=write_quicklook))
app.command("curate")(curate_cmd)
app.command("process")(process_cmd)
# Inverse design: the model proposes (models), the simulated bench judges (simulators).
design_app = typer.Typer(help="Inverse design: targets, probe databases, retrieval, judging.")
design_app.command("targets")(targets_cmd)
design_app.command("probes")(probes_cmd)
design_app.command("retrieve")(retrieve_cmd)
design_app.command("optimize")(optimize_cmd)
design_app.command("predict")(predict_cmd)
design_app.command("evaluate")(design_evaluate_cmd)
design_app.command("compare")(design_compare_cmd)
design_app.command("chip")(design_chip_cmd)
design_app.command("report")(design_report_cmd)
app.add_typer(design_app, name="design", no_args_is_help=True)

# OSError covers a full disk (common.outputs.OutputError), a refused connection, a missing file.
_USER_ERRORS = (ValueError, KeyError, OSError)


def _usage_message(exc: typer.TyperException) -> str:
    """Click's usage error as one line, with the command to ask for help."""
    format_message = getattr(exc, "format_message", None)
    text = format_message() if callable(format_message) else str(exc)
    ctx = getattr(exc, "ctx", None)
    hint = f" (see {ctx.command_path} --help)" if ctx is not None else ""
    return " ".join(str(text).split()) + hint


@app.callback()
def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log at INFO level.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


def main() -> None:
    """Console entry point."""
    try:
        # Without standalone mode click returns a command's exit code instead of raising it.
        code = app(standalone_mode=False)
    except typer.TyperException as exc:  # usage errors, in one line like every other error
        typer.echo(f"error: {_usage_message(exc)}", err=True)
        sys.exit(int(getattr(exc, "exit_code", 2)))
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except _USER_ERRORS as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        typer.echo(f"error: {' '.join(str(message).split())}", err=True)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)
