"""`alliance`: the staff command line, as a package: `app` (entry point, options, error handling), `session` (how a
command reaches projects: the application service as the token's person, or the API), `commands` (what people do),
`render` (what they see), `processes` (running and supervising the servers: dev, worker, api, streams)."""

from alliance.cli.app import app, main

__all__ = ["app", "main"]
