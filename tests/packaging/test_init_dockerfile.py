"""`pystatefun init`'s Dockerfile, carried out without Docker (no daemon and no Docker Hub where pystatefun
is built): its instructions are parsed and done as an image build would do them, in a temporary folder
standing in for the image's root. A virtual environment of this interpreter stands in for the base image's
Python, and pip finds pystatefun as the wheel built from this checkout (it is not on PyPI). Then its CMD
runs with the EXPOSEd ports on free 127.0.0.1 ports, answers the request its README documents, keeps the
state on its VOLUME across a restart and stops cleanly on SIGTERM; its HEALTHCHECK passes while it runs and
fails once it has stopped. The README's command that publishes the admin API refuses to start without a
token, and with one guards every route but /health. A wrong step (a COPY of a missing or ignored file, a
failing RUN, a CMD that exits or listens on loopback only, a root USER) fails it: the last tests show that.

What the stand-in does not do, and so this does not check: pull the base image (its Python is this one),
switch to the USER (the CMD runs as this test's user; the USER is checked to be a user the RUN steps
created, not root, and the owner of every VOLUME), give the container a network of its own (a port it
does not EXPOSE, the admin API's, is used on this machine's loopback), and system commands beyond the few
it imitates: groupadd, useradd and chown write the stand-in's etc/group, etc/passwd and a list of owners
instead of this machine's. A RUN naming an absolute path other than the Dockerfile's own directories
(WORKDIR, VOLUME, COPY destinations, which are moved into the stand-in) fails the test rather than touch
this machine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from e2e.processes import free_port, request, terminate, wait_for_port
from packaging.test_init import init
from packaging.test_wheel import ROOT, wheel  # noqa: F401  (wheel: the fixture, pystatefun built from this checkout)

NAME = "hello"
KEYWORDS = {"FROM", "WORKDIR", "COPY", "RUN", "ENV", "EXPOSE", "CMD", "USER", "HEALTHCHECK", "VOLUME"}
# pip's and the network's settings of this machine, which a build would have from its own configuration
BUILD_SETTINGS = re.compile(r"PIP_\w+|(?i:https?_proxy|no_proxy)|SSL_CERT_\w+|REQUESTS_CA_BUNDLE")
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# groupadd, useradd and chown for the RUN steps: they write the stand-in image's etc/group and etc/passwd
# and the owners file instead of this machine's, and refuse what the real ones would (an unknown user or
# group, a missing path, a duplicate) and any option they do not know.
IMITATIONS = '''\
import argparse
import json
import sys
from pathlib import Path

ROOT, TOOL = Path(sys.argv.pop(1)), sys.argv.pop(1)  # then the tool's own arguments
OWNERS = ROOT.parent / "owners.json"


def rows(table):
    path = ROOT / "etc" / table
    return [line.split(":") for line in path.read_text().splitlines()] if path.exists() else []


def add(table, fields):
    with open(ROOT / "etc" / table, "a") as f:
        f.write(":".join(fields) + "\\n")


def find(table, name_or_id):
    for row in rows(table):
        if name_or_id in (row[0], row[2]):
            return row
    if name_or_id.isdigit():  # a numeric id needs no entry
        return [name_or_id, "x", name_or_id, name_or_id]
    sys.exit(f"{TOOL}: {'user' if table == 'passwd' else 'group'} '{name_or_id}' does not exist")


def free_id(table, wanted):
    taken = {int(row[2]) for row in rows(table)}
    if wanted is not None:
        if wanted in taken:
            sys.exit(f"{TOOL}: id {wanted} is already in use in {table}")
        return wanted
    return next(i for i in range(1000, 60000) if i not in taken)


parser = argparse.ArgumentParser(prog=TOOL)
if TOOL == "groupadd":
    parser.add_argument("-g", "--gid", type=int)
    parser.add_argument("-r", "--system", action="store_true")
    parser.add_argument("name")
    args = parser.parse_args()
    if any(row[0] == args.name for row in rows("group")):
        sys.exit(f"groupadd: group '{args.name}' already exists")
    add("group", [args.name, "x", str(free_id("group", args.gid)), ""])
elif TOOL == "useradd":
    parser.add_argument("-u", "--uid", type=int)
    parser.add_argument("-g", "--gid")
    parser.add_argument("-M", "--no-create-home", action="store_true")
    parser.add_argument("-m", "--create-home", action="store_true")
    parser.add_argument("-r", "--system", action="store_true")
    parser.add_argument("-s", "--shell", default="/bin/sh")
    parser.add_argument("name")
    args = parser.parse_args()
    if any(row[0] == args.name for row in rows("passwd")):
        sys.exit(f"useradd: user '{args.name}' already exists")
    uid = free_id("passwd", args.uid)
    if args.gid is not None:
        gid = find("group", args.gid)[2]
    else:  # Debian's USERGROUPS_ENAB: a group of the user's name
        if any(row[0] == args.name for row in rows("group")):
            sys.exit(f"useradd: group {args.name} exists - if you want to add this user to that group, use -g.")
        gid = str(free_id("group", uid if all(int(row[2]) != uid for row in rows("group")) else None))
        add("group", [args.name, "x", gid, ""])
    if args.create_home:
        (ROOT / "home" / args.name).mkdir(parents=True)
    add("passwd", [args.name, "x", str(uid), gid, "", f"/home/{args.name}", args.shell])
elif TOOL == "chown":
    parser.add_argument("-R", "--recursive", action="store_true")
    parser.add_argument("owner")
    parser.add_argument("paths", nargs="+")
    args = parser.parse_args()
    user, _, group = args.owner.partition(":")
    uid = int(find("passwd", user)[2]) if user else None
    gid = int(find("group", group)[2]) if group else None
    owners = json.loads(OWNERS.read_text()) if OWNERS.exists() else {}
    for name in args.paths:
        path = Path(name).resolve()
        if not path.exists():
            sys.exit(f"chown: cannot access '{name}': No such file or directory")
        if not path.is_relative_to(ROOT):
            sys.exit(f"chown: {name} is not in the image")
        before = owners.get("/" + path.relative_to(ROOT).as_posix(), [0, 0])
        owners["/" + path.relative_to(ROOT).as_posix()] = [before[0] if uid is None else uid,
                                                           before[1] if gid is None else gid]
    OWNERS.write_text(json.dumps(owners))
else:
    sys.exit(f"no imitation of {TOOL}")
'''


# -- the Dockerfile ---------------------------------------------------------------------------------

@dataclasses.dataclass
class Instruction:
    keyword: str
    arguments: str
    line: int

    def __str__(self) -> str:
        return f"Dockerfile line {self.line}: {self.keyword} {self.arguments}"


def parse(text: str) -> list[Instruction]:
    """The instructions, with line continuations joined and comments left out (also those inside a
    continued instruction, as Docker does)."""
    instructions, pending, start = [], "", 0
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        start = start or number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        if keyword.upper() not in KEYWORDS:
            raise AssertionError(f"Dockerfile line {start}: {keyword}: this stand-in build knows only "
                                 f"{', '.join(sorted(KEYWORDS))}")
        instructions.append(Instruction(keyword.upper(), arguments.strip(), start))
        pending, start = "", 0
    assert not pending, "the Dockerfile ends inside a line continuation"
    return instructions


def command(instruction: Instruction, arguments: str | None = None) -> list[str]:
    """RUN, CMD and HEALTHCHECK's command: exec form (a JSON array) or shell form. Docker runs an array that
    is not valid JSON in the shell, as words nobody meant: refused here."""
    arguments = instruction.arguments if arguments is None else arguments
    if not arguments.startswith("["):
        return ["/bin/sh", "-c", arguments]
    try:
        words = json.loads(arguments)
    except ValueError as e:
        raise AssertionError(f"{instruction}: not a JSON array ({e}), so Docker would run it in a shell") from None
    assert isinstance(words, list) and words and all(isinstance(w, str) for w in words), \
        f"{instruction}: the exec form is a non-empty JSON array of strings"
    return words


def substitute(text: str, env: dict[str, str]) -> str:
    """Docker's $VAR, ${VAR} and ${VAR:-default} in WORKDIR, COPY, ENV, EXPOSE, USER and VOLUME."""
    def value(match: re.Match) -> str:
        name = match.group(1) or match.group(3)
        return env.get(name) or (match.group(2) or "")
    return re.sub(r"\$\{(\w+)(?::-([^}]*))?\}|\$(\w+)", value, text)


def duration(text: str) -> float:
    """A HEALTHCHECK duration (30s, 1m30s, 500ms) in seconds."""
    parts = re.fullmatch(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h))+", text) and re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text)
    assert parts, f"{text!r} is not a duration"
    return sum(float(n) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit] for n, unit in parts)


def ignored(path: str, rules: list[tuple[bool, re.Pattern]]) -> bool:
    """Whether .dockerignore's rules leave ``path`` (relative, /-separated) out of the build context: the
    last rule matching it or one of its parent folders decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    left_out = False
    for negated, regex in rules:
        if any(regex.fullmatch(candidate) for candidate in candidates):
            left_out = not negated
    return left_out


def pattern(glob: str) -> re.Pattern:
    """A Docker path pattern: ``**`` any number of folders, ``*`` and ``?`` within one name."""
    glob = os.path.normpath(glob).lstrip("/")
    regex, i = "", 0
    while i < len(glob):
        if glob.startswith("**/", i):
            regex, i = regex + "(?:.*/)?", i + 3
        elif glob.startswith("**", i):
            regex, i = regex + ".*", i + 2
        else:
            regex, i = regex + {"*": "[^/]*", "?": "[^/]"}.get(glob[i], re.escape(glob[i])), i + 1
    return re.compile(regex)


def dockerignore(text: str) -> list[tuple[bool, re.Pattern]]:
    """Docker's .dockerignore: one pattern a line from the context's root, ``!`` an exception, ``#`` a
    comment."""
    rules = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            rules.append((line.startswith("!"), pattern(line.removeprefix("!").strip())))
    return rules


# -- building it --------------------------------------------------------------------------------------

@dataclasses.dataclass
class Healthcheck:
    command: list[str]
    interval: float = 30
    timeout: float = 30
    start_period: float = 0
    retries: int = 3


@dataclasses.dataclass
class Image:
    """What the build made: the stand-in root and python, and what the image's config would hold."""
    root: Path
    python: Path  # the stand-in base image's python environment (its bin/ is on PATH)
    image_dirs: list[str]  # the Dockerfile's own absolute folders, moved into root when a command names them
    workdir: str = "/"
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    user: str = "root"
    exposed: list[int] = dataclasses.field(default_factory=list)
    volumes: list[str] = dataclasses.field(default_factory=list)
    cmd: list[str] = dataclasses.field(default_factory=list)
    healthcheck: Healthcheck | None = None

    def path(self, container_path: str, mounts: dict[str, Path] | None = None) -> Path:
        for target, source in (mounts or {}).items():
            if container_path == target or container_path.startswith(target + "/"):
                return source / container_path[len(target):].lstrip("/")
        return self.root / container_path.lstrip("/")

    def rebase(self, text: str, mounts: dict[str, Path] | None = None) -> str:
        """``text`` with the Dockerfile's own absolute folders moved into the stand-in (or to a volume)."""
        for folder in sorted(self.image_dirs, key=len, reverse=True):
            text = re.sub(rf"(?<![\w./-]){re.escape(folder)}(?![\w.-])",
                          lambda _: str(self.path(folder, mounts)), text)
        return text

    def owners(self) -> dict[str, list[int]]:
        owners = self.root.parent / "owners.json"
        return json.loads(owners.read_text()) if owners.exists() else {}

    def table(self, name: str) -> list[list[str]]:
        return [line.split(":") for line in (self.root / "etc" / name).read_text().splitlines()]

    def uid(self, user: str) -> int:
        name = user.partition(":")[0]
        for row in self.table("passwd"):
            if name in (row[0], row[2]):
                return int(row[2])
        assert name.isdigit(), f"USER {user}: no such user in the image (no RUN step created it)"
        return int(name)


def healthcheck(instruction: Instruction) -> Healthcheck | None:
    match = re.fullmatch(r"((?:--[\w-]+=\S+\s+)*)(CMD|NONE)\b\s*(.*)", instruction.arguments)
    assert match, f"{instruction}: HEALTHCHECK [OPTIONS] CMD command, or HEALTHCHECK NONE"
    if match[2] == "NONE":
        return None
    check = Healthcheck(command(instruction, match[3]))
    for option in match[1].split():
        key, _, value = option[2:].partition("=")
        assert key in ("interval", "timeout", "start-period", "start-interval", "retries"), \
            f"{instruction}: unknown option --{key}"
        if key == "retries":
            check.retries = int(value)
        elif key != "start-interval":
            setattr(check, key.replace("-", "_"), duration(value))
    return check


def image_dirs(instructions: list[Instruction]) -> list[str]:
    folders = []
    for instruction in instructions:
        if instruction.keyword in ("WORKDIR", "VOLUME"):
            words = (json.loads(instruction.arguments) if instruction.arguments.startswith("[")
                     else instruction.arguments.split())
            folders += [word.rstrip("/") or "/" for word in words if word.startswith("/")]
        elif instruction.keyword == "COPY":
            destination = shlex.split(instruction.arguments)[-1]
            if destination.startswith("/"):
                folders.append(destination.rstrip("/") or "/")
    return [folder for folder in dict.fromkeys(folders) if folder != "/"]


def build(dockerfile: str, context: Path, where: Path, wheels: Path) -> Image:
    """Carries out ``dockerfile`` with ``context`` as the build context, in ``where`` (the stand-in root
    is where/root); fails (AssertionError) on the first step that would fail a build."""
    instructions = parse(dockerfile)
    assert instructions and instructions[0].keyword == "FROM", "a Dockerfile starts with FROM"
    assert [i.keyword for i in instructions].count("FROM") == 1, "the stand-in builds one stage"
    for instruction in instructions:  # what Docker refuses (or misreads) before building anything
        if instruction.keyword in ("RUN", "CMD"):
            command(instruction)
        elif instruction.keyword == "HEALTHCHECK":
            healthcheck(instruction)
    rules = dockerignore((context / ".dockerignore").read_text()) if (context / ".dockerignore").exists() else []
    files = sorted(path.relative_to(context).as_posix() for path in context.rglob("*") if not path.is_dir())
    sent = [path for path in files if not ignored(path, rules)]  # the context a docker build sends
    shims = where / "shims"
    shims.mkdir(parents=True)
    (shims / "imitation.py").write_text(IMITATIONS)
    image = Image(where / "root", where / "python", image_dirs(instructions))
    (image.root / "etc").mkdir(parents=True)
    (image.root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n"
                                               "nobody:x:65534:65534::/nonexistent:/bin/sh\n")
    (image.root / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
    for tool in ("groupadd", "useradd", "chown"):
        script = shims / tool
        script.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{shims / "imitation.py"}" "{image.root}" {tool} "$@"\n')
        script.chmod(0o755)
    build_env = {key: value for key, value in os.environ.items() if BUILD_SETTINGS.fullmatch(key)}
    build_env["PIP_FIND_LINKS"] = " ".join(filter(None, [str(wheels), os.environ.get("PIP_FIND_LINKS")]))
    build_env.update(PATH=f"{shims}:{image.python / 'bin'}:{SYSTEM_PATH}", HOME=str(where / "build-home"))

    for instruction in instructions:
        keyword, arguments = instruction.keyword, instruction.arguments
        if keyword == "FROM":
            reference = arguments.split()[0]
            match = re.fullmatch(r"(?:docker\.io/)?(?:library/)?python:(\d+)\.(\d+)(?:\.\d+)?(?:-slim(?:-\w+)?)?",
                                 reference)
            assert match, f"{instruction}: the stand-in is an official python image (python:3.X-slim)"
            needs = re.search(r'requires-python = ">=(\d+)\.(\d+)"', (ROOT / "pyproject.toml").read_text())
            assert (int(match[1]), int(match[2])) >= (int(needs[1]), int(needs[2])), \
                f"{instruction}: pystatefun needs Python {needs[1]}.{needs[2]} or later"
        elif keyword == "WORKDIR":
            folder = substitute(arguments, image.env)
            image.workdir = folder if folder.startswith("/") else os.path.join(image.workdir, folder)
            image.path(image.workdir).mkdir(parents=True, exist_ok=True)
        elif keyword == "COPY":
            words = shlex.split(substitute(arguments, image.env))
            options = [word for word in words if word.startswith("--")]
            assert all(re.fullmatch(r"--(chown|chmod)=\S+|--link", option) for option in options), \
                f"{instruction}: the stand-in copies from the build context only (no --from)"
            *sources, destination = [word for word in words if not word.startswith("--")]
            assert sources, f"{instruction}: nothing to copy"
            assert len(sources) == 1 or destination.endswith("/"), \
                f"{instruction}: several sources need a destination ending in /"
            folder = destination.endswith("/") or len(sources) > 1
            destination = image.path(destination if destination.startswith("/")
                                     else os.path.join(image.workdir, destination))
            for source in sources:
                source = os.path.normpath(source).lstrip("/")
                if source == "." or any(path.startswith(source + "/") for path in files):  # a folder: its files
                    prefix = "" if source == "." else source + "/"
                    copies = {path: destination / path[len(prefix):] for path in sent if path.startswith(prefix)}
                else:
                    copies = {path: destination / Path(path).name if folder else destination
                              for path in sent if pattern(source).fullmatch(path)}
                assert copies, (f"{instruction}: {source} is not in the build context ("
                                f"{'.dockerignore leaves it out' if source in files else 'no such file'})")
                for path, target in copies.items():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(context / path, target)
        elif keyword == "RUN":
            base_python(image)
            words = command(instruction)
            text = image.rebase(words[-1] if words[:2] == ["/bin/sh", "-c"] else shlex.join(words))
            lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            for word in lexer:
                for candidate in (word, word.partition("=")[2]):
                    assert not candidate.startswith("/") or candidate.startswith(str(image.root)) \
                        or candidate == "/dev/null", (f"{instruction}: {candidate} is outside what the stand-in "
                                                      f"image has (only {', '.join(image.image_dirs)})")
            done = subprocess.run(["/bin/sh", "-c", text], cwd=image.path(image.workdir),
                                  env={**build_env, **image.env}, capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, \
                f"{instruction}: exit status {done.returncode}\n{(done.stdout + done.stderr)[-3000:]}"
        elif keyword == "ENV":
            words = shlex.split(arguments)
            pairs = ([word.partition("=")[::2] for word in words] if "=" in words[0]
                     else [(words[0], " ".join(words[1:]))])
            for key, value in pairs:
                image.env[key] = substitute(value, image.env)
        elif keyword == "EXPOSE":
            for word in substitute(arguments, image.env).split():
                port, _, protocol = word.partition("/")
                assert port.isdigit() and protocol in ("", "tcp"), f"{instruction}: a TCP port"
                image.exposed.append(int(port))
        elif keyword == "USER":
            image.user = substitute(arguments, image.env)
        elif keyword == "VOLUME":
            image.volumes += (json.loads(arguments) if arguments.startswith("[")
                              else substitute(arguments, image.env).split())
        elif keyword == "CMD":
            image.cmd = command(instruction)
        elif keyword == "HEALTHCHECK":
            image.healthcheck = healthcheck(instruction)
    base_python(image)
    return image


def base_python(image: Image) -> None:
    """The base image's Python, made when a step first needs it: a new virtual environment of this one."""
    if not image.python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(image.python)], check=True, timeout=120)


# -- running it -----------------------------------------------------------------------------------------

def runtime_env(image: Image, extra: dict[str, str]) -> dict[str, str]:
    """A container's environment: PATH with the base image's python first, HOME, the image's ENV, and
    ``docker run -e``."""
    return {"PATH": f"{image.python / 'bin'}:{SYSTEM_PATH}", "HOME": str(image.root), "HOSTNAME": "stand-in",
            **image.env, **extra}


def port_variables(image: Image, port: int) -> list[str]:
    """The environment variables that move ``port`` (``${NAME:-port}`` in the image's files, or ENV)."""
    found = [name for name, value in image.env.items() if value == str(port) and "PORT" in name]
    for path in image.root.rglob("*"):
        if path.is_file() and path.suffix in (".yaml", ".yml", ".py", ".toml", ".json", ".sh", ""):
            found += re.findall(rf"\$\{{(\w+):-{port}\}}", path.read_text(errors="replace"))
    return list(dict.fromkeys(found))


def listens_on_all_addresses(port: int) -> bool | None:
    """Whether a socket listens on 0.0.0.0 or [::] at ``port`` (None where /proc/net/tcp is missing)."""
    tables = [Path("/proc/net/tcp"), Path("/proc/net/tcp6")]
    if not tables[0].exists():
        return None
    for table in tables:
        for line in table.read_text().splitlines()[1:] if table.exists() else []:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port and set(address) == {"0"}:
                return True
    return False


@dataclasses.dataclass
class Container:
    image: Image
    process: subprocess.Popen
    env: dict[str, str]
    ports: dict[int, int]  # EXPOSEd port -> its 127.0.0.1 port
    mounts: dict[str, Path]
    log: Path

    def healthcheck(self) -> subprocess.CompletedProcess:
        check = self.image.healthcheck
        words = [self.image.rebase(word, self.mounts) for word in check.command]
        try:
            return subprocess.run(words, cwd=self.image.path(self.image.workdir, self.mounts), env=self.env,
                                  capture_output=True, text=True, timeout=check.timeout)
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess(words, -1, "", f"timed out after {check.timeout} s")

    def stop(self) -> int:
        """docker stop: SIGTERM, and SIGKILL after 10 s."""
        terminate(self.process, 10)
        return self.process.returncode


def start(image: Image, mounts: dict[str, Path], log: Path) -> Container:
    """docker run -p 127.0.0.1:FREE:PORT for each EXPOSEd port (by the variable the image reads it from:
    the stand-in shares this machine's network), with ``mounts`` as its volumes."""
    assert image.cmd, "the Dockerfile has no CMD"
    ports, extra = {}, {}
    for port in image.exposed:
        variables = port_variables(image, port)
        assert variables, f"EXPOSE {port}: nothing in the image reads a variable that moves it"
        ports[port] = free_port()
        extra.update({name: str(ports[port]) for name in variables})
    env = runtime_env(image, extra)
    with open(log, "ab") as out:
        process = subprocess.Popen([image.rebase(word, mounts) for word in image.cmd],
                                   cwd=image.path(image.workdir, mounts), env=env, stdout=out, stderr=subprocess.STDOUT)
    container = Container(image, process, env, ports, mounts, log)
    try:
        for port in ports.values():
            wait_for_port(port, process)
            on_all = listens_on_all_addresses(port)
            if on_all is None:
                on_all = f"0.0.0.0:{port}" in log.read_text()
            assert on_all, (f"EXPOSE {next(p for p in ports if ports[p] == port)}: the CMD listens on loopback only, "
                            "which a published port does not reach")
    except BaseException as e:
        container.stop()
        raise AssertionError(f"the CMD does not serve: {e}\n{log.read_text()[-3000:]}") from None
    return container


def wait_healthy(container: Container) -> subprocess.CompletedProcess:
    """The HEALTHCHECK, again and again during its start period until it passes."""
    deadline = time.monotonic() + max(container.image.healthcheck.start_period, 5)
    while True:
        done = container.healthcheck()
        if done.returncode == 0 or time.monotonic() > deadline or container.process.poll() is not None:
            return done
        time.sleep(0.2)


def new_volume(image: Image, volume: str, where: Path) -> Path:
    """A new named volume: Docker fills it with the image's folder (its files and its owner)."""
    assert image.path(volume).is_dir(), (f"VOLUME {volume}: not in the image, so Docker creates it root's at "
                                         f"the start, where USER {image.user} cannot write")
    shutil.copytree(image.path(volume), where)
    return where


@contextlib.contextmanager
def container_loopback(image: Image):
    """The ports the container uses on its own loopback (the HEALTHCHECK's) are this machine's here: one
    run at a time, and a skip if something else has them."""
    with open(Path(tempfile.gettempdir()) / "pystatefun-test-init-dockerfile.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for port in re.findall(r"(?:127\.0\.0\.1|localhost):(\d+)", " ".join(image.healthcheck.command)):
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind(("127.0.0.1", int(port)))
                except OSError:
                    pytest.skip(f"127.0.0.1:{port} is in use on this machine: the stand-in container shares "
                                "this machine's loopback, where the admin API its HEALTHCHECK calls must listen")
        yield


@dataclasses.dataclass
class Documented:
    """The README's "In a container" section, its request (a curl line) and the answer it says it gives."""
    section: str
    method: str
    port: int
    path: str
    headers: dict[str, str]
    body: bytes
    answer: dict


def documented(readme: str) -> Documented:
    section = readme.split("## In a container", 1)[1].split("\n## ", 1)[0]
    lines = section.splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith("curl "))
    words, method, body, headers, url = shlex.split(lines[index])[1:], "GET", b"", {}, ""
    while words:
        word = words.pop(0)
        if word == "-X":
            method = words.pop(0)
        elif word == "-H":
            key, _, value = words.pop(0).partition(":")
            headers[key.strip()] = value.strip()
        elif word == "-d":
            body = words.pop(0).encode()
        else:
            url = word
    match = re.fullmatch(r"(?:http://)?(?:localhost|127\.0\.0\.1):(\d+)(/\S*)", url)
    assert match, f"the README's request goes to {url!r}, not to a published port on localhost"
    answer = lines[index + 1]
    assert answer.startswith("# -> "), "the README's request is followed by the answer it gives (# -> ...)"
    return Documented(section, method, int(match[1]), match[2], headers, body, json.loads(answer.removeprefix("# -> ")))


# -- the tests --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """The project as a user has it after the README's "Run it": with a .venv, a data dir and caches,
    which .dockerignore must keep out of the build context."""
    where = tmp_path_factory.mktemp("init")
    done = init(NAME, cwd=where)
    assert done.returncode == 0, done.stderr
    project = where / NAME
    for junk in (".venv/bin/python", "pystatefun-data/partition-0.db", "__pycache__/functions.cpython-311.pyc",
                 "tools/__pycache__/x.cpython-311.pyc"):
        (project / junk).parent.mkdir(parents=True, exist_ok=True)
        (project / junk).write_text("not for the image")
    return project


@pytest.fixture(scope="module")
def wheels(wheel) -> Path:  # noqa: F811  (the fixture imported above)
    """Where pip finds pystatefun: the folder of the wheel built from this checkout."""
    return wheel.parent


@pytest.fixture(scope="module")
def image(project, wheels, tmp_path_factory) -> Image:
    return build((project / "Dockerfile").read_text(), project, tmp_path_factory.mktemp("image"), wheels)


def test_the_build_context_leaves_out_what_dockerignore_names(project):
    rules = dockerignore((project / ".dockerignore").read_text())
    for junk in (".venv/bin/python", "pystatefun-data/partition-0.db", "__pycache__/functions.cpython-311.pyc",
                 "tools/__pycache__/x.cpython-311.pyc"):
        assert ignored(junk, rules), junk
    for needed in ("requirements.txt", "functions.py", "module.yaml", "Dockerfile"):
        assert not ignored(needed, rules), needed


def test_the_image_has_the_project_and_pystatefun_from_this_checkout(image, wheel):  # noqa: F811
    app = image.path(image.workdir)
    assert {path.name for path in app.iterdir()} == {"requirements.txt", "functions.py", "module.yaml"}
    installed = subprocess.run(
        ["python", "-c", "import importlib.metadata, pystatefun; "
         "print(pystatefun.__file__, importlib.metadata.version('pystatefun'))"],
        env=runtime_env(image, {}), cwd=app, capture_output=True, text=True, check=True).stdout.split()
    assert installed[0].startswith(str(image.python)) and wheel.name.startswith(f"pystatefun-{installed[1]}-")


def check_user(image: Image) -> None:
    """USER is not root, and owns every VOLUME (which the build made, or Docker makes it root's)."""
    uid = image.uid(image.user)
    assert uid != 0, f"USER {image.user} is root"
    assert image.volumes, "the state needs a VOLUME"
    for volume in image.volumes:
        assert image.path(volume).is_dir(), f"VOLUME {volume} is not made by the build, so it would be root's"
        assert image.owners().get(volume, [0])[0] == uid, f"VOLUME {volume} is not USER {image.user}'s"


def test_the_image_runs_as_a_user_of_its_own_who_owns_its_volumes(image):
    check_user(image)


def test_the_container_answers_as_its_readme_says_keeps_its_state_and_is_healthy(image, project, tmp_path):
    readme = documented((project / "README.md").read_text())
    assert readme.port in image.exposed and f"-p {readme.port}:{readme.port}" in readme.section, \
        f"the README's port {readme.port} is EXPOSEd and published"
    assert "docker stop" in readme.section and "the next visit is number 2" in readme.section
    assert image.healthcheck is not None, "the Dockerfile has a HEALTHCHECK (the admin API has /health)"
    mounts = {volume: new_volume(image, volume, tmp_path / f"volume{i}") for i, volume in enumerate(image.volumes)}
    with container_loopback(image):
        for visit in (1, 2):  # docker stop, docker start: the same volume
            container = start(image, mounts, tmp_path / "container.log")
            try:
                healthy = wait_healthy(container)
                assert healthy.returncode == 0, f"the HEALTHCHECK fails: {healthy.stdout}{healthy.stderr}"
                reply = request(container.ports[readme.port], readme.method, readme.path, readme.body, readme.headers)
                assert reply.status == 200, container.log.read_text()
                greeting = readme.answer["greeting"].replace("visit number 1", f"visit number {visit}")
                assert json.loads(reply.body) == {**readme.answer, "greeting": greeting, "visits": visit}
            finally:
                stopping = time.monotonic()
                status = container.stop()
            assert status == 0 and time.monotonic() - stopping < 10, \
                f"docker stop (SIGTERM): exit status {status}\n{container.log.read_text()[-3000:]}"
            assert container.healthcheck().returncode != 0, "the HEALTHCHECK passes with nothing running"


def admin_command(section: str) -> list[str]:
    """The command the README's `docker run` that serves the admin API beyond loopback gives the image
    (the words after the image's name)."""
    line = next(line for line in section.replace("\\\n", " ").splitlines()
                if line.strip().startswith("docker run") and "--admin-host" in line)
    words = shlex.split(line)
    assert "-p 8081:8081" in line and "-e PYSTATEFUN_ADMIN_TOKEN" in line, line
    image = next(i for i, word in enumerate(words) if word == NAME and words[i - 1] != "--name")
    return words[image + 1:]


def refusal(image: Image, mounts: dict[str, Path], log: Path) -> str:
    """What a container that must not start says (its CMD must exit within 10 s)."""
    try:
        container = start(image, mounts, log)
    except AssertionError as e:
        return str(e)
    try:
        container.process.wait(10)
    finally:
        container.stop()
    return log.read_text()


def test_the_admin_api_the_readme_publishes_needs_its_token(image, project, tmp_path):
    readme = documented((project / "README.md").read_text())
    words = admin_command(readme.section)
    mounts = {volume: new_volume(image, volume, tmp_path / f"volume{i}") for i, volume in enumerate(image.volumes)}
    with container_loopback(image):
        without_token = refusal(dataclasses.replace(image, cmd=words), mounts, tmp_path / "refused.log")
        assert "give it a token with --admin-token TOKEN (or $PYSTATEFUN_ADMIN_TOKEN)" in without_token

        token = "s3cret-for-this-test"
        with_token = dataclasses.replace(image, cmd=words, env={**image.env, "PYSTATEFUN_ADMIN_TOKEN": token})
        container = start(with_token, mounts, tmp_path / "container.log")
        try:
            assert wait_healthy(container).returncode == 0, container.log.read_text()
            assert listens_on_all_addresses(8081) is not False
            assert request(8081, "GET", "/health").status == 200
            assert request(8081, "GET", "/parked").status == 401
            assert request(8081, "GET", "/parked", headers={"Authorization": f"Bearer {token}"}).status == 200
            assert ".venv/bin/pystatefun parked" in readme.section  # the CLI, from outside, with the token
            parked = subprocess.run(["pystatefun", "parked"], env=runtime_env(image, {"PYSTATEFUN_ADMIN_TOKEN": token}),
                                    cwd=tmp_path, capture_output=True, text=True, timeout=30)
            assert parked.returncode == 0, parked.stdout + parked.stderr
        finally:
            container.stop()


def _mutated(project: Path, tmp_path: Path, old: str, new: str, file: str = "Dockerfile") -> Path:
    copy = tmp_path / "context"
    shutil.copytree(project, copy, ignore=shutil.ignore_patterns(".venv", "pystatefun-data"))
    text = (copy / file).read_text()
    assert old in text
    (copy / file).write_text(text.replace(old, new))
    return copy


@pytest.mark.parametrize("old, new, file, says", [
    ("COPY requirements.txt ./", "COPY requirements.txt helpers.py ./", "Dockerfile",
     "helpers.py is not in the build context (no such file)"),
    ("**/.venv/", "**/.venv/\nrequirements.txt", ".dockerignore",
     "requirements.txt is not in the build context (.dockerignore leaves it out)"),
    ("-r requirements.txt", "-r requirement.txt", "Dockerfile",
     "RUN pip install --no-cache-dir -r requirement.txt: exit status"),
    ('CMD ["pystatefun"', "CMD ['pystatefun'", "Dockerfile", "not a JSON array"),
    ("RUN pip", "ARG VERSION\nRUN pip", "Dockerfile", "ARG: this stand-in build knows only"),
], ids=["copy-a-missing-file", "copy-an-ignored-file", "run-fails", "exec-form-not-json", "unknown-instruction"])
def test_a_wrong_step_fails_the_stand_in_build(project, wheels, tmp_path, old, new, file, says):
    context = _mutated(project, tmp_path, old, new, file)
    with pytest.raises(AssertionError, match=re.escape(says)):
        build((context / "Dockerfile").read_text(), context, tmp_path / "image", wheels)


@pytest.mark.parametrize("change, says", [
    (lambda image: {"cmd": ["python", "-c", "pass"]}, "the CMD does not serve: process exited with 0"),
    (lambda image: {"env": {k: v for k, v in image.env.items() if k != "INGRESS_HOST"}},
     "the CMD listens on loopback only"),
], ids=["exits", "on-loopback"])
def test_a_container_that_does_not_serve_fails(image, tmp_path, change, says):
    wrong = dataclasses.replace(image, **change(image))
    mounts = {volume: new_volume(image, volume, tmp_path / f"volume{i}") for i, volume in enumerate(image.volumes)}
    with container_loopback(image), pytest.raises(AssertionError, match=re.escape(says)):
        start(wrong, mounts, tmp_path / "container.log").stop()


def test_a_user_that_is_root_or_does_not_own_the_volume_fails(image):
    with pytest.raises(AssertionError, match="is root"):
        check_user(dataclasses.replace(image, user="root"))
    with pytest.raises(AssertionError, match="is not USER nobody's"):
        check_user(dataclasses.replace(image, user="nobody"))
