"""The `alliance` command: its options, its commands, and how it ends.

A person's mistake prints one line (`error: ...`) and exits 1; only a bug prints a traceback.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Annotated

import typer
from pydantic import ValidationError

from alliance.cli import commands, processes, render
from alliance.cli.session import Session
from alliance.projects import UserError
from alliance.settings import SettingError
from alliance.tokens import CredentialError

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="Alliance Workflows: projects on Temporal, events on Kafka."
)


@app.callback()
def options(
    ctx: typer.Context,
    token: Annotated[
        str | None, typer.Option(envvar="ALLIANCE_TOKEN", help="Your bearer token (alliance token issue ...)")
    ] = None,
    api: Annotated[
        str | None, typer.Option(envvar="ALLIANCE_API_URL", help="Act through the API at this URL, not on Temporal")
    ] = None,
) -> None:
    """Alliance Workflows: projects on Temporal, events on Kafka."""
    ctx.obj = Session(token=token, api=api)


processes.register(app)
commands.register(app)


def main() -> None:
    """Runs the CLI and ends the process with os._exit: a process that used a Temporal client can otherwise
    abort at interpreter exit (temporalio/sdk-python issue 300)."""
    code = 0
    # A one-shot command reports a broker it cannot reach in one line of its own; the client's retries stay quiet.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        app(standalone_mode=False)
    except typer.Exit as stop:
        code = stop.exit_code
    except (typer.Abort, KeyboardInterrupt):
        code = 130
    except typer.TyperException as err:
        # Usage errors (an unknown, missing or ill-typed option): typer's own message with the usage line, exit 2.
        # typer carries its own click (typer._click), so these are not the `click` package's exceptions.
        show = getattr(err, "show", None)
        if callable(show):
            show()
        else:
            render.error(err.format_message())
        code = int(getattr(err, "exit_code", 2))
    except (UserError, CredentialError, SettingError) as err:
        render.error(str(err))
        code = 1
    except ValidationError as err:  # settings read outside get_settings (a bug if it happens)
        render.error(str(SettingError.of(err)))
        code = 1
    except SystemExit as stop:  # the stream worker (faust's `mode`) ends with sys.exit, 0 on a clean stop
        code = stop.code if isinstance(stop.code, int) else 0 if stop.code is None else 1
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 70
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)
