"""The ``storyboard`` command: run the service, set up resources, submit and inspect jobs,
download, list and delete.

Exit status: 0 done, 1 the service refused (not found, not ready, over a limit) or the
analysis failed, 2 a usage or settings error."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any

import structlog

from service.client import STDOUT, TOKEN_ENV, Refused
from service.errors import BackendError, CliError
from service.jobs import JobStatus
from service.logs import configure_logging
from service.settings import Settings, SettingsError, load_settings
from service.tracing import tracing_configured

if TYPE_CHECKING:
    from service.producers.redrive import RedriveReport

DEFAULT_URL = "http://127.0.0.1:8080"
SERVERS = frozenset({"serve", "api", "worker"})
"""Commands that run the service; their log lines go to stdout, as containers expect."""
TITLE_HELP = "title (default: the text's own title line, else the file name without suffixes)"
LIST_HELP = (
    "Print a table of your novels (id, title, characters, created, latest job and its "
    "status) or jobs (id, novel, status, progress, attempts, created, error code), newest "
    "first: one page unless --all. --json prints {items, nextCursor} instead."
)
MAX_PAGE = 100
DESCRIPTION = (
    "Run the storyboard service, set up its resources, analyze a file on the spot, "
    "report a storyboard's quality, or submit, follow, download, list and delete novels "
    "and jobs on a running service."
)
EPILOG = (
    "Exit status: 0 done; 1 the service refused (not found, not ready, over a limit) or "
    "the analysis failed; 2 a usage or settings error."
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="storyboard", description=DESCRIPTION, epilog=EPILOG)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, text in (
        ("serve", "API and worker in one process (the container default)"),
        ("api", "the HTTP API only"),
        ("worker", "the queue worker only (serves /healthz and /readyz)"),
    ):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("--host", help="listen address (default: STORYBOARD_HOST)")
        sub.add_argument("--port", type=int, help="listen port (default: STORYBOARD_PORT)")
    commands.add_parser("bootstrap", help="create the queue, DLQ, table and bucket (idempotent)")
    _add_client_commands(commands)
    dlq = commands.add_parser("dlq", help="inspect or redrive the dead-letter queue")
    dlq_commands = dlq.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    dlq_commands.add_parser("list", help="list dead-lettered messages")
    redrive = dlq_commands.add_parser("redrive", help="move messages back to the main queue")
    redrive.add_argument("--all", action="store_true", help="every job's message")
    redrive.add_argument("job_ids", nargs="*", metavar="JOB_ID", help="jobs to redrive")
    analyze = commands.add_parser(
        "analyze", help="one-shot: analyze a file on the embedded backend"
    )
    analyze.add_argument("file", help="novel text file (UTF-8 or GB18030), or - for stdin")
    analyze.add_argument(
        "--out", help="output file, - for stdout (default: <file stem>.storyboard.json)"
    )
    analyze.add_argument("--force", action="store_true", help="overwrite an existing --out file")
    analyze.add_argument("--title", help=TITLE_HELP)
    analyze.add_argument("-v", "--verbose", action="store_true", help="show log lines on stderr")
    analyze.add_argument(
        "--estimate",
        action="store_true",
        help="only print what the model analyzer would spend on the file (requests, tokens, "
        "price at STORYBOARD_LLM_*_PRICE_PER_MILLION) and exit; nothing is sent to the model",
    )
    _add_eval_command(commands)
    return parser


def _add_eval_command(commands: Any) -> None:
    evaluate = commands.add_parser(
        "eval",
        help="the quality report of a storyboard, optionally against a reference cast",
        description="Print the quality report of a storyboard (any analyzer's or model's) "
        "as a table: chapters, speakers, places, shot types, panel density, prompt "
        "language and, with --reference, how the cast compares with the book's real one. "
        "docs/quality.md says what each number means.",
    )
    evaluate.add_argument("storyboard", help="storyboard JSON file")
    evaluate.add_argument(
        "--reference", help="reference cast JSON file (see docs/quality.md for its schema)"
    )
    evaluate.add_argument("--out", help="also write the report as JSON here; - for stdout")
    evaluate.add_argument(
        "--text",
        help="the novel's text file, for panels per 10k characters when the storyboard "
        "does not carry its length (meta.textChars)",
    )
    evaluate.add_argument(
        "--language",
        help="the language image prompts should be in (e.g. en, zh); default: "
        "meta.promptLanguage, else the prompts' dominant script",
    )


def _add_client_commands(commands: Any) -> None:
    """The commands that talk to a running service, each with ``--url`` and ``--token``."""
    submit = commands.add_parser("submit", help="upload a novel and queue its analysis")
    submit.add_argument("file", help="novel text file (UTF-8 or GB18030), or - for stdin")
    submit.add_argument("--title", help=TITLE_HELP)
    submit.add_argument(
        "--wait", action="store_true", help="then follow the job live (as status --follow)"
    )
    status = commands.add_parser("status", help="show a job's status")
    status.add_argument("job_id")
    status.add_argument(
        "--follow",
        action="store_true",
        help="follow the job live with a progress bar on stderr until it ends; print its "
        "final status; exit 0 if it completed, else 1",
    )
    get = commands.add_parser(
        "get",
        help="download a storyboard",
        description="Download the storyboard a job made, or a novel's latest storyboard. "
        "Exits 1 if there is none yet (the job is still running) or none at all.",
    )
    get.add_argument("id", metavar="JOB_OR_NOVEL_ID", help="a job id, or a novel id")
    get.add_argument("--out", default=STDOUT, help="output file (default: - for stdout)")
    get.add_argument("--force", action="store_true", help="overwrite an existing --out file")
    listing = commands.add_parser(
        "list", help="list your novels or jobs, newest first", description=LIST_HELP
    )
    listing.add_argument("kind", nargs="?", choices=("novels", "jobs"), default="novels")
    listing.add_argument("--novel", metavar="NOVEL_ID", help="jobs: only this novel's")
    listing.add_argument(
        "--status", choices=[s.value for s in JobStatus], help="jobs: only those with this status"
    )
    listing.add_argument("--limit", type=_page_size, help="items per page, 1-100 (default 20)")
    listing.add_argument("--all", action="store_true", help="follow every page to the end")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    delete = commands.add_parser(
        "delete", help="delete a novel with its jobs, storyboards and text"
    )
    delete.add_argument("novel_id", metavar="NOVEL_ID")
    for client in (submit, status, get, listing, delete):
        client.add_argument(
            "--url", default=DEFAULT_URL, help=f"service URL (default {DEFAULT_URL})"
        )
        client.add_argument("--token", help=f"API key or JWT (default: {TOKEN_ENV})")


def _page_size(raw: str) -> int:
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to {MAX_PAGE}")
    return int(raw)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = _parser().parse_args(argv)
    try:
        settings = _settings_for(args)
        _configure_logging(args, settings)
        return asyncio.run(_COMMANDS[args.command](args, settings))
    except Refused as exc:
        print(f"storyboard: {exc}", file=sys.stderr)
        return 1
    except (SettingsError, CliError, BackendError) as exc:
        print(f"storyboard: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _configure_logging(args: argparse.Namespace, settings: Settings) -> None:
    level: str = settings.log_level
    if args.command == "analyze" and not args.verbose:
        # A one-shot run shows its progress bar and summary; a crash is still logged.
        level = "critical"
    configure_logging(level, settings.log_format)
    if args.command not in SERVERS:
        # These commands' stdout is their data (a job id, a storyboard), so logs go to stderr.
        structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))


def _settings_for(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {"tracing": tracing_configured(os.environ)}
    if getattr(args, "host", None):
        overrides["host"] = args.host
    if getattr(args, "port", None) is not None:
        overrides["port"] = args.port
    return load_settings(**overrides)


async def _run_server(settings: Settings, *, serve_api: bool, worker: bool) -> int:
    from service.app import create_app
    from service.server import listen, serve

    # Bound first: a taken port is one line on stderr, before any backend has been opened.
    listener = await listen(settings.host, settings.port)
    try:
        app = create_app(settings, serve_api=serve_api, worker=worker)
    except BaseException:
        listener.close()
        raise
    await serve(app, listener)
    return 0


async def _serve(args: argparse.Namespace, settings: Settings) -> int:
    return await _run_server(settings, serve_api=True, worker=True)


async def _api(args: argparse.Namespace, settings: Settings) -> int:
    return await _run_server(settings, serve_api=True, worker=False)


async def _worker(args: argparse.Namespace, settings: Settings) -> int:
    return await _run_server(settings, serve_api=False, worker=True)


async def _bootstrap(args: argparse.Namespace, settings: Settings) -> int:
    if settings.resolved_backend == "aws":
        from service.bootstrap import bootstrap

        report = await bootstrap(settings)
        print(f"queue {report.queue_url}\ndlq {report.dlq_url}")
        print(f"table {report.table}\nbucket {report.bucket}")
        if report.topic_arn is not None:
            print(f"topic {report.topic_arn}")
    else:
        from service.backends.selection import open_backend

        async with open_backend(settings):
            print(f"local backend ready in {settings.data_dir.resolve()}")
    return 0


async def _submit(args: argparse.Namespace, settings: Settings) -> int:
    from service.client import submit_file

    job_id = await submit_file(args.url, args.file, args.title, token=_token(args))
    print(job_id, flush=True)  # first, so a script has the id while the job runs
    return await _follow(args, job_id) if args.wait else 0


async def _status(args: argparse.Namespace, settings: Settings) -> int:
    from service.client import job_status

    if args.follow:
        return await _follow(args, args.job_id, print_final=True)
    print(await job_status(args.url, args.job_id, token=_token(args)))
    return 0


async def _follow(args: argparse.Namespace, job_id: str, *, print_final: bool = False) -> int:
    """Follow the job's event stream with a progress display; 0 if it completed."""
    from rich.console import Console

    from service.client import follow_job
    from service.oneshot import ProgressDisplay

    with ProgressDisplay(Console(stderr=True)) as display:

        def show(view: dict[str, Any]) -> None:
            progress = view.get("progress") or {}
            display.show(int(progress.get("percentage", 0)), str(progress.get("stage", "")))

        final = await follow_job(args.url, job_id, show, token=_token(args))
    if print_final:
        print(json.dumps(final, ensure_ascii=False, indent=2))
    return _ending(job_id, final)


def _ending(job_id: str, final: dict[str, Any]) -> int:
    status = final.get("status")
    if status == "completed":
        return 0
    error = final.get("error") or {}
    detail = f": {error.get('code')}: {error.get('message')}" if error else ""
    print(f"storyboard: job {job_id} {status}{detail}", file=sys.stderr)
    return 1


async def _get(args: argparse.Namespace, settings: Settings) -> int:
    from service.client import check_target, fetch_storyboard, write_output

    # Checked first, so a refusal does not wait for the download.
    check_target(args.out, force=args.force)
    data = await fetch_storyboard(args.url, args.id, token=_token(args))
    if args.out == STDOUT and not data.endswith(b"\n"):
        data += b"\n"  # a shell prompt after the JSON starts on a line of its own
    await asyncio.to_thread(write_output, args.out, data, force=args.force)
    if args.out != STDOUT:
        print(f"storyboard written to {args.out}", file=sys.stderr)
    return 0


async def _list(args: argparse.Namespace, settings: Settings) -> int:
    from service.client import (
        JOB_COLUMNS,
        NOVEL_COLUMNS,
        job_row,
        list_items,
        novel_row,
        render_table,
    )

    params = _list_params(args)
    items, cursor = await list_items(
        args.url, args.kind, params, every_page=args.all, token=_token(args)
    )
    if args.json:
        print(json.dumps({"items": items, "nextCursor": cursor}, ensure_ascii=False, indent=2))
        return 0
    jobs = args.kind == "jobs"
    rows = [job_row(item) if jobs else novel_row(item) for item in items]
    if rows:
        print(render_table(JOB_COLUMNS if jobs else NOVEL_COLUMNS, rows))
    noun = args.kind if len(rows) != 1 else args.kind.removesuffix("s")
    more = "; more with --all" if cursor else ""
    print(f"{len(rows)} {noun}{more}", file=sys.stderr)
    return 0


def _list_params(args: argparse.Namespace) -> dict[str, str]:
    params: dict[str, str] = {}
    if args.kind == "novels" and (args.novel or args.status):
        raise CliError("--novel and --status filter jobs: storyboard list jobs --novel ID")
    if args.novel:
        params["novelId"] = args.novel
    if args.status:
        params["status"] = args.status
    if args.limit:
        params["limit"] = str(args.limit)
    return params


async def _delete(args: argparse.Namespace, settings: Settings) -> int:
    from service.client import delete_novel

    await delete_novel(args.url, args.novel_id, token=_token(args))
    print(f"novel {args.novel_id} deleted", file=sys.stderr)
    return 0


def _token(args: argparse.Namespace) -> str | None:
    # The environment variable keeps the token out of the shell history and `ps` output.
    return args.token or os.environ.get(TOKEN_ENV) or None


async def _dlq(args: argparse.Namespace, settings: Settings) -> int:
    from service.backends.selection import open_backend
    from service.producers.redrive import list_dead_letters, redrive

    if args.dlq_command == "redrive" and bool(args.all) == bool(args.job_ids):
        raise CliError("dlq redrive takes either --all or one or more JOB_IDs")
    async with open_backend(settings) as backend:
        if args.dlq_command == "list":
            letters, hidden = await list_dead_letters(backend)
            for letter in letters:
                print(f"{letter.message_id}\tjob={letter.job_id or '-'}\tbytes={letter.size}")
            print(f"{len(letters)} dead-lettered, {hidden} hidden right now", file=sys.stderr)
            return 0
        report = await redrive(backend, None if args.all else set(args.job_ids))
    return _print_redrive(report, [] if args.all else args.job_ids)


def _print_redrive(report: RedriveReport, asked: Sequence[str]) -> int:
    for job_id in report.moved:
        print(f"redriven {job_id}")
    print(
        f"{len(report.moved)} redriven, {len(report.kept)} kept, {report.hidden} hidden "
        "(run again once the dead-letter consumer releases them)",
        file=sys.stderr,
    )
    # An id that was neither moved nor seen is most likely a typo; a script must notice.
    seen = set(report.moved) | {letter.job_id for letter in report.kept}
    missing = [job_id for job_id in dict.fromkeys(asked) if job_id not in seen]
    for job_id in missing:
        print(f"storyboard: job {job_id} is not in the dead-letter queue", file=sys.stderr)
    return 1 if missing else 0


async def _analyze(args: argparse.Namespace, settings: Settings) -> int:
    from service.oneshot import run_oneshot

    if args.estimate:
        return await _estimate(args, settings)
    return await run_oneshot(settings, args.file, out=args.out, title=args.title, force=args.force)


async def _estimate(args: argparse.Namespace, settings: Settings) -> int:
    from service.client import render_table
    from service.oneshot import estimate_file

    estimate = await asyncio.to_thread(estimate_file, settings, args.file, title=args.title)
    print(render_table(("estimate", "value"), estimate.rows()))
    return 0


async def _eval(args: argparse.Namespace, settings: Settings) -> int:
    from service.client import render_table, write_output
    from service.quality import QualityInputError, evaluate_files, report_rows

    try:
        report = await asyncio.to_thread(
            evaluate_files,
            args.storyboard,
            reference=args.reference,
            text=args.text,
            language=args.language,
        )
    except QualityInputError as exc:
        raise CliError(str(exc)) from None
    table = render_table(("metric", "value"), report_rows(report))
    # With the JSON on stdout, the table goes to stderr, so a pipe gets the JSON alone.
    print(table, file=sys.stderr if args.out == STDOUT else sys.stdout)
    if args.out:
        data = json.dumps(report.to_doc(), ensure_ascii=False, indent=2).encode() + b"\n"
        await asyncio.to_thread(write_output, args.out, data, force=True)
    return 0


_COMMANDS: dict[str, Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]]] = {
    "serve": _serve,
    "api": _api,
    "worker": _worker,
    "bootstrap": _bootstrap,
    "submit": _submit,
    "status": _status,
    "get": _get,
    "list": _list,
    "delete": _delete,
    "analyze": _analyze,
    "dlq": _dlq,
    "eval": _eval,
}
