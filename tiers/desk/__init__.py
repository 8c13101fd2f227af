"""The city's (or town's) desk in a browser (issue #14): people, sessions and pages, served
by `zhibao serve` under /desk/. Read-only: it writes nothing to the log."""
