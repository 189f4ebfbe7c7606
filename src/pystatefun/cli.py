"""The ``pystatefun`` command line."""

from __future__ import annotations

import functools
import json
import os
import sys
import typing
from pathlib import Path

import click

from pystatefun.loading import load_object
from pystatefun.sdk.functions import StatefulFunctions
from pystatefun.wording import article

if typing.TYPE_CHECKING:
    from pystatefun.cli_output import Output
    from pystatefun.client import RuntimeClient


@click.group()
@click.version_option(package_name="pystatefun")
def main() -> None:
    """pystatefun: Stateful Functions for Python."""


@main.command()
@click.argument("reference", metavar="MODULE:OBJECT")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on.")
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
)
def serve(reference: str, host: str, port: int, log_level: str) -> None:
    """Serve the StatefulFunctions MODULE:OBJECT as a remote function endpoint (StateFun HTTP protocol).

    The current directory is on the import path, so `pystatefun serve app:functions` finds ./app.py.
    Every URL path is served; the request names the function.
    """
    from pystatefun.event_loop import run_event_loop
    from pystatefun.logs import configure_logging
    from pystatefun.serving.server import serve_until_signalled

    configure_logging(log_level, "text")
    try:
        functions = load_object(reference, search_path=os.getcwd())
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    if not isinstance(functions, StatefulFunctions):
        raise click.UsageError(
            f"{reference} is {article(type(functions).__qualname__)} {type(functions).__qualname__}, not a "
            "StatefulFunctions; point at the object "
            "your functions are bound to (functions = StatefulFunctions())"
        )
    click.echo(f"serving {', '.join(functions.typenames()) or 'no functions'} on http://{host}:{port}", err=True)
    try:
        run_event_loop(serve_until_signalled(functions, host, port))
    except OSError as e:  # binding its port: the one OSError that reaches here
        from pystatefun.io.http_server import PortUnavailable

        unavailable = PortUnavailable("function endpoint", "change it with --port", host, port, e)
        raise click.ClickException(str(unavailable)) from None


@main.command()
@click.argument("module_yaml", metavar="MODULE.yaml", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--data-dir",
    default="pystatefun-data",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where the application's SQLite database lives; restart with the same one to continue.",
)
@click.option(
    "--partitions",
    type=click.IntRange(1, 4096),
    help="Partitions of a new application (a savepoint moves it to another count); default 8, or what its data "
    "dir or topics have (or the savepoint of --from-savepoint).",
)
@click.option(
    "--backend",
    default="embedded",
    show_default=True,
    type=click.Choice(["embedded", "kafka"]),
    help="embedded: one process over a SQLite data dir; kafka: worker processes over Apache Kafka.",
)
@click.option("--bootstrap-servers", envvar="PYSTATEFUN_BOOTSTRAP_SERVERS",
              help="Kafka backend: the cluster (HOST:PORT,...); or $PYSTATEFUN_BOOTSTRAP_SERVERS.")
@click.option("--app", "app_name", envvar="PYSTATEFUN_APP",
              help="Kafka backend: the application's name: its consumer group and topic prefix (<app>.messages, <app>.state).")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 256),
              help="Kafka backend: worker processes to start on this machine (worker i serves HTTP on the "
              "module's ports + i and the admin API on --admin-port + i).")
@click.option("--worker-id", help="Kafka backend: this worker's stable name (default: host name and index); a "
              "restarted worker with the same name fences its previous self at once.")
@click.option("--advertise-host", help="Kafka backend: the host name or address the other workers reach this "
              "worker's HTTP ingress and admin API at, to hand it requests for the addresses it owns (default: the "
              "address they listen on; this machine's host name when that is 0.0.0.0).")
@click.option("--from-savepoint", metavar="PATH",
              help="Start a new application from this savepoint (a path or a file:// or s3:// URL): into a new "
              "--data-dir, or a new Kafka --app, with --partitions of your choice (default: the savepoint's). Run "
              "again with the same option after a restart, it continues the restored application.")
@click.option(
    "--commit-interval",
    default="100ms",
    show_default=True,
    help="The longest a busy runtime waits to commit an epoch (an idle one commits at once): shorter answers "
    "sooner under load, longer puts more work in each commit.",
)
@click.option(
    "--admin-port",
    default=8081,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port of the admin API (health, metrics, state, parked addresses, dead letters) on 127.0.0.1; 0 turns it off.",
)
@click.option(
    "--admin-host",
    default="127.0.0.1",
    show_default=True,
    help="Address the admin API listens on; 0.0.0.0 to reach it from outside (e.g. probes and Prometheus in "
    "Kubernetes): any address but loopback needs --admin-token.",
)
@click.option(
    "--admin-token",
    envvar="PYSTATEFUN_ADMIN_TOKEN",
    help="Require 'Authorization: Bearer TOKEN' on the admin API (all but /health and /metrics); or "
    "$PYSTATEFUN_ADMIN_TOKEN, which the operations commands (state, parked, ...) read too.",
)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
)
@click.option(
    "--log-format",
    default="text",
    show_default=True,
    type=click.Choice(["text", "json"]),
    help="json: one JSON object per line, with the address and invocation in every line about one.",
)
def run(module_yaml: str, data_dir: str, partitions: int | None, backend: str, bootstrap_servers: str | None,
        app_name: str | None, workers: int, worker_id: str | None, advertise_host: str | None, from_savepoint: str | None,
        commit_interval: str, admin_port: int, admin_host: str, admin_token: str | None, log_level: str,
        log_format: str) -> None:
    """Run the application of MODULE.yaml: on the embedded backend (the default) one process, durable and
    exactly-once; on the Kafka backend one or more workers of a distributed application."""
    from pystatefun.app import Application, RuntimeFailure
    from pystatefun.backends.embedded import DataDirError
    from pystatefun.backends.kafka.client import kafka_errors, require_kafka_client
    from pystatefun.config import ModuleConfigError, load_module, parse_duration
    from pystatefun.event_loop import run_event_loop
    from pystatefun.logs import configure_logging
    from pystatefun.tracing.config import TracingUnavailable, from_environment

    configure_logging(log_level, log_format)
    kafka = None
    port_offset = 0
    if backend == "kafka":
        try:
            require_kafka_client("--backend kafka")
        except RuntimeError as e:
            raise click.ClickException(str(e)) from None
        if not bootstrap_servers or not app_name:
            raise click.UsageError("the Kafka backend needs --bootstrap-servers HOST:PORT and --app NAME")
        if from_savepoint and os.environ.get("PYSTATEFUN_WORKER_INDEX") is None:
            # once, before any worker starts (with --workers N the workers run without the option)
            partitions = _restore_savepoint(from_savepoint, module_yaml, data_dir, partitions, backend,
                                            bootstrap_servers, app_name)
        if workers > 1:
            from pystatefun.workers import supervise

            raise SystemExit(supervise(workers, _without_option(sys.argv[1:], "--from-savepoint")))
    elif workers > 1 or advertise_host or _on_command_line("bootstrap_servers", "app_name"):
        # $PYSTATEFUN_BOOTSTRAP_SERVERS and $PYSTATEFUN_APP may be set for other reasons (a module's Kafka
        # egress reads the former): only the options given on the command line are refused here
        raise click.UsageError("--workers, --bootstrap-servers, --app and --advertise-host are options of --backend kafka")
    elif from_savepoint:
        partitions = _restore_savepoint(from_savepoint, module_yaml, data_dir, partitions, backend, None, None)
    try:
        tracing = from_environment()
    except TracingUnavailable as e:
        raise click.ClickException(str(e)) from None
    if tracing is not None:
        from pystatefun.logs import add_filter
        from pystatefun.tracing.spans import TraceIds

        add_filter(TraceIds())
    try:
        interval = parse_duration(commit_interval).total_seconds()
        module = load_module(module_yaml)
        if backend == "kafka":
            from pystatefun.backends.kafka.worker import KafkaBackend, default_worker_id, worker_urls

            index = int(os.environ.get("PYSTATEFUN_WORKER_INDEX", "0"))
            port_offset = index
            admin_port = admin_port + index if admin_port else 0
            urls = worker_urls(module, advertise_host, index, admin_host, admin_port)
            kafka = KafkaBackend(bootstrap_servers, app_name, worker_id or default_worker_id(index), partitions, urls=urls)
        application = Application(
            module, data_dir if kafka is None else None, partitions=partitions or 8, commit_interval=interval,
            admin_port=admin_port or None, admin_host=admin_host, admin_token=admin_token, kafka=kafka,
            port_offset=port_offset, tracing=tracing,
        )
    except (ModuleConfigError, DataDirError, ValueError, TypeError, RuntimeError) as e:
        raise click.ClickException(str(e)) from None
    except kafka_errors() as e:
        raise _kafka_error(e) from None
    where = f"with data in {data_dir}" if kafka is None else f"as worker {kafka.worker_id} of {app_name} on {bootstrap_servers}"
    click.echo(f"pystatefun running {module_yaml} {where}", err=True)
    try:
        run_event_loop(application.run_until_signalled())
    except OSError as e:  # a port in use, most often
        raise click.ClickException(f"cannot start: {e}") from None
    except RuntimeFailure as e:
        raise click.ClickException(str(e)) from None
    except kafka_errors() as e:
        raise _kafka_error(e) from None


def _restore_savepoint(url: str, module_yaml: str, data_dir: str, partitions: int | None, backend: str,
                       bootstrap_servers: str | None, app_name: str | None) -> int | None:
    """Restores ``url`` into the new application that ``run`` is to start; gives its partition count."""
    from pystatefun.cli_savepoint import progress_display
    from pystatefun.savepoints.format import SavepointError

    with progress_display() as show:
        def progress(what: str, done: int) -> None:
            show(what, done, None)

        return _restore(url, module_yaml, data_dir, partitions, backend, bootstrap_servers, app_name, progress)


def _restore(url: str, module_yaml: str, data_dir: str, partitions: int | None, backend: str,
             bootstrap_servers: str | None, app_name: str | None, progress: typing.Callable[[str, int], None]) -> int | None:
    from pystatefun.config import ModuleConfigError, load_module
    from pystatefun.savepoints.format import SavepointError

    try:
        module = load_module(module_yaml)
    except ModuleConfigError as e:
        raise click.ClickException(str(e)) from None
    try:
        if backend == "kafka":
            from pystatefun.savepoints import kafka as restoring

            target = f"application {app_name}"
            done = restoring.restored_from(bootstrap_servers, app_name) == url
        else:
            from pystatefun.savepoints import embedded as restoring

            target = f"data dir {data_dir}"
            done = restoring.restored_from(Path(data_dir)) == url
        if done:  # a restart with the same command line: the restored application goes on
            click.echo(f"{target} was restored from {url} already: continuing it", err=True)
            return partitions
        if backend == "kafka":
            manifest = restoring.restore(url, bootstrap_servers, app_name, partitions, module, progress=progress)
        else:
            manifest = restoring.restore(url, Path(data_dir), partitions, progress=progress,
                                         kinds=restoring.egress_kinds(module))
    except SavepointError as e:
        raise click.ClickException(str(e)) from None
    counts = manifest.counts
    click.echo(f"restored {url} ({manifest.source_backend} application {manifest.application}, taken "
               f"{manifest.created_at}) into {target}: {counts['state']} state values, {counts['messages']} messages, "
               f"{counts['timers']} delayed messages, {counts['parked']} parked addresses", err=True)
    return partitions or manifest.partitions


def _on_command_line(*names: str) -> bool:
    """Whether any of the current command's parameters ``names`` was given on the command line."""
    from click.core import ParameterSource

    ctx = click.get_current_context()
    return any(ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE for name in names)


def _without_option(argv: list[str], option: str) -> list[str]:
    """``argv`` without ``option`` and its value (either ``--option VALUE`` or ``--option=VALUE``)."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == option:
            skip = True
        elif not arg.startswith(option + "="):
            kept.append(arg)
    return kept


def _kafka_error(error: Exception) -> click.ClickException:
    """A Kafka client's refusal (an unreachable cluster, a property it does not know) as one line."""
    return click.ClickException(f"Kafka: {error.args[0].str() if error.args else error}")


# -- operating a running application (client.py over its ingress, egress and admin APIs) -------------

def _client(ctx: click.Context) -> "RuntimeClient":
    from pystatefun.client import RuntimeClient

    return RuntimeClient(**ctx.obj)


_APIS = {  # option -> (default URL, what it is)
    "ingress": ("http://127.0.0.1:8090", "playground ingress"),
    "egress": ("http://127.0.0.1:8091", "playground egress"),
    "admin": ("http://127.0.0.1:8081", "admin API"),
}


def _operation(api: str) -> typing.Callable[[typing.Callable], typing.Callable]:
    """A command over one of the APIs: its URL as an option (and the token for the admin API; a command
    lists only the options it uses), and errors as one line instead of a traceback."""

    def decorate(command: typing.Callable) -> typing.Callable:
        @functools.wraps(command)
        def run_operation(**kwargs: typing.Any) -> None:
            from pystatefun.client import ApiError, Unreachable

            ctx = click.get_current_context()
            # a group's subcommand (dead-letters replay) takes the URL and token given before its name
            # when it is not given its own: its context starts with the group's
            given_to_group = ctx.obj if isinstance(ctx.obj, dict) else {}
            options = {}
            for name in (api, "token"):
                if name in kwargs:
                    value = kwargs.pop(name)
                    if ctx.get_parameter_source(name) is click.core.ParameterSource.DEFAULT:
                        value = given_to_group.get(name, value)
                    options[name] = value
            ctx.obj = options
            try:
                command(**kwargs)
            except (Unreachable, ApiError, ValueError) as e:
                raise click.ClickException(str(e)) from None

        default, what = _APIS[api]
        variable = f"PYSTATEFUN_{api.upper()}"
        decorated = click.option(f"--{api}", default=default, show_default=True, envvar=variable,
                                 help=f"URL of the {what} (or ${variable}).")(run_operation)
        if api == "admin":
            decorated = click.option("--token", envvar="PYSTATEFUN_ADMIN_TOKEN",
                                     help="The admin API's bearer token (or $PYSTATEFUN_ADMIN_TOKEN).")(decorated)
        return decorated

    return decorate


def _output() -> "Output":
    from pystatefun.cli_output import Output

    return Output()


@main.command()
@click.argument("address")
@click.option("--type", "typename", required=True, help="The message's typename, e.g. example/GreetRequest.")
@click.option("--json", "json_data", help="The message value as JSON (for JSON types).")
@click.option("--data", help="The value: for a built-in type (io.statefun.types/int, ...) the value itself, "
              "else the bytes as given.")
@click.option("--wait", type=click.FloatRange(0, 300, min_open=True), is_flag=False, flag_value=30.0,
              help="Wait for the function's reply (request/reply): up to SECONDS, 30 when --wait is given alone.")
@click.option("--key", help="Idempotency-Key: resending with the same key is a no-op that answers the same.")
@_operation("ingress")
def send(address: str, typename: str, json_data: str | None, data: str | None, wait: float | None, key: str | None) -> None:
    """Send a message to ADDRESS (namespace/type/id) through the playground ingress."""
    from pystatefun.sdk.types import BUILTIN_TYPES

    if (json_data is None) == (data is None):
        raise click.UsageError("give the value with exactly one of --json or --data")
    builtin = BUILTIN_TYPES.get(typename)
    if json_data is not None:
        try:
            value = json.loads(json_data)
        except ValueError as e:
            raise click.UsageError(f"--json is not JSON: {e}") from None
        # a built-in type's bytes are its protobuf wrapper's, not the JSON text
        body = json_data.encode() if builtin is None else _builtin_bytes(typename, value, f"--json {json_data}")
    else:
        body = data.encode() if builtin is None else _builtin_bytes(typename, _builtin_value(typename, data), f"--data {data}")
    answer = _client(click.get_current_context()).send(address, typename, body, wait=wait, key=key)
    if answer.status == 202:
        _output().message(f"accepted: {address}")
        return
    _output().reply(answer.content_type.removeprefix("application/vnd."), answer.body)


def _builtin_bytes(typename: str, value: typing.Any, given: str) -> bytes:
    from pystatefun.sdk.types import BUILTIN_TYPES

    try:
        return BUILTIN_TYPES[typename].serializer().serialize(value)
    except (TypeError, ValueError) as e:
        raise click.UsageError(f"{given} is not {article(typename)} {typename} value: {e}") from None


def _builtin_value(typename: str, text: str) -> typing.Any:
    """The value of ``--data TEXT`` for a built-in type: the text read as that type's value."""
    kind = typename.rsplit("/", 1)[1]
    try:
        if kind in ("int", "long"):
            return int(text)
        if kind in ("float", "double"):
            return float(text)
        if kind == "bool":
            return {"true": True, "false": False}[text.lower()]
    except (ValueError, KeyError):
        raise click.UsageError(f"--data {text!r} is not {article(typename)} {typename} value") from None
    return text


@main.command()
@click.argument("topic")
@click.option("--follow", "-f", is_flag=True, help="Keep waiting for new records.")
@_operation("egress")
def tail(topic: str, follow: bool) -> None:
    """Print the records of a playground egress TOPIC (each record is read once)."""
    client = _client(click.get_current_context())
    output = _output()
    while True:
        record = client.take(topic, wait=30 if follow else 0)
        if record is not None:
            output.record(record)
        elif not follow:
            return


@main.command()
@click.argument("address")
@click.option("--set", "assignments", multiple=True, metavar="NAME=JSON", help="Write a state (repeatable).")
@click.option("--delete", "delete", metavar="NAME", help="Delete one state ('*' for all).")
@_operation("admin")
def state(address: str, assignments: tuple[str, ...], delete: str | None) -> None:
    """Show, write or delete the state of ADDRESS (namespace/type/id)."""
    client = _client(click.get_current_context())
    if assignments and delete:
        raise click.UsageError("--set and --delete cannot be combined")
    if assignments:
        values = {}
        for assignment in assignments:
            name, sep, text = assignment.partition("=")
            try:
                values[name] = json.loads(text)
            except ValueError:
                raise click.UsageError(f"--set {assignment!r}: write NAME=JSON, e.g. count=41 or name='\"Bob\"'") from None
            if not sep:
                raise click.UsageError(f"--set {assignment!r}: write NAME=JSON")
        shown = client.set_state(address, values)
    elif delete:
        shown = client.delete_state(address, None if delete == "*" else delete)
    else:
        shown = client.state(address)
    _output().state(shown)


@main.command()
@click.option("--after", default="", help="Only addresses after this one (namespace/type/id), in order.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 1000))
@_operation("admin")
def parked(after: str, limit: int) -> None:
    """List the parked addresses: those whose function failed, waiting for resume."""
    page = _client(click.get_current_context()).parked(after, limit)
    output = _output()
    output.parked(page)
    if len(page) == limit:
        output.more(f"--after {page[-1]['address']}")


@main.command()
@click.argument("address")
@click.option("--skip", is_flag=True, help="Skip the failed message (it becomes a dead letter) instead of retrying it.")
@_operation("admin")
def resume(address: str, skip: bool) -> None:
    """Resume a parked ADDRESS: retry from the message it failed on (or skip that one)."""
    _client(click.get_current_context()).resume(address, skip)
    _output().message(f"resumed {address}" + (", its failed message skipped to the dead letters" if skip else ""))


@main.group(name="dead-letters", invoke_without_command=True)
@click.option("--after", default=0, show_default=True, help="Only dead letters after this sequence number.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 1000))
@_operation("admin")
def dead_letters(after: int, limit: int) -> None:
    """List dead letters: messages no function or egress could take, and skipped messages, with the reason.
    `pystatefun dead-letters replay SEQ` sends one again once its cause is fixed."""
    ctx = click.get_current_context()
    if ctx.invoked_subcommand is not None:
        return  # the subcommand does the work, with options of its own
    page = _client(ctx).dead_letters(after, limit)
    output = _output()
    output.dead_letters(page)
    if len(page) == limit:
        output.more(f"--after {page[-1]['seq']}")


@dead_letters.command(name="replay")
@click.argument("seq", type=click.IntRange(1))
@_operation("admin")
def replay_dead_letter(seq: int) -> None:
    """Send dead letter SEQ again to its target, once its cause is fixed. It is delivered once however
    often it is replayed: a second replay says it was replayed already."""
    answer = _client(click.get_current_context()).replay_dead_letter(seq)
    if answer["replayed"]:
        _output().message(f"replayed dead letter {seq} to {answer['target']}")
    else:
        _output().message(f"dead letter {seq} was replayed to {answer['target']} already: it is delivered once, "
                          "not again")


@main.command()
@click.argument("name")
@click.option("--directory", type=click.Path(file_okay=False), help="Where to write it (default: ./NAME).")
def init(name: str, directory: str | None) -> None:
    """Create the project NAME: a function, its test, module.yaml (embedded and remote), a Dockerfile, a README."""
    import importlib.metadata
    from pathlib import Path

    from pystatefun.scaffold import ScaffoldError, create_project, installed_from

    try:
        written = create_project(name, Path(directory or name))
    except ScaffoldError as e:
        raise click.ClickException(str(e)) from None
    folder = written[0].parent
    click.echo(f"created {folder}: {', '.join(path.name for path in written)}\n"
               f"  cd {folder} && pystatefun run module.yaml   (then see README.md)")
    source = installed_from()
    if source is not None:
        version = importlib.metadata.version("pystatefun")
        click.echo(f"note: this pystatefun was installed from {source}, not from a package index, and "
                   f"requirements.txt pins pystatefun=={version}, which pip looks for on one: install it into the "
                   f"project's environment from the same place first (pip install {source.removeprefix('file://')}), "
                   f"and give the Docker build a wheel of it (README.md, 'In a container')")


from pystatefun.cli_savepoint import savepoint  # noqa: E402 (the group lives in its own module)

main.add_command(savepoint)


if __name__ == "__main__":
    sys.exit(main())
