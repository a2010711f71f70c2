"""The README and docs/ checked against the code, so that they cannot drift.

Blocks are found by what they hold, not by where they stand, so sections
can be added, moved or removed freely; whatever a new section shows is
checked by the same rules:

- every ``discos-backend`` command line, in any block of README.md or
  docs/*.md (a line after a ``$`` prompt, or any line of a ``sh`` block),
  must parse with the real command line;
- every ``--option`` the README puts in backticks must be an option of
  ``discos-backend`` or of a script in ``scripts/``;
- every ``python`` block must compile, and every name it imports from
  ``discosbackend`` must exist; a block that needs no server and ends
  expression lines with a literal comment (``m.arguments  # ['a', 'b']``) is
  run, and each such value must read as its comment says;
- README *sessions* are run against a live simulator, in order, and what
  they show must be what comes back (numbers, times and ports aside; a
  ``...`` line stands for any lines).  A session is a block whose first
  line starts with ``$``: ``discos-backend`` commands (``console`` gets the
  lines typed after ``discos>``), ``nc HOST PORT`` with typed ``?`` lines,
  ``printf '...' | nc -q1 HOST PORT`` and ``echo $?`` are run; any other
  command (``pip``, ``./run_tests``...) is not, nor is its output checked.
  Port 8978 is the simulator's public port and 8979 its control port; any
  other port is one nobody listens on, unless the command says
  ``# while PORT is taken``.  A ``python`` block that talks to
  ``127.0.0.1:8978`` and is followed by a plain block is run against the
  simulator too, and must print that block.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import io
import re
import shlex
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import pytest

from discosbackend.cli import build_parser, main

from _helpers_simulator import ROOT, LineClient, ServeProcess, read_first_line, start_serve
from serving import CLI, closed_port

README = ROOT / "README.md"
DOCUMENTS = [README, *sorted((ROOT / "docs").glob("*.md"))]
PUBLIC, CONTROL = 8978, 8979
LOOPBACK = "127.0.0.1"
_FENCE = re.compile(r"^(\s*)(```+)\s*([\w+-]*)\s*$")
_TAKEN = re.compile(r"#\s*while (\d+) is taken")


@dataclass
class Block:
    """A fenced code block: where it starts, its info string and its (dedented) lines."""

    path: Path
    line: int
    info: str
    lines: list[str]

    def where(self) -> str:
        """``README.md:42``, for messages."""
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks_of(path: Path) -> list[Block]:
    """The fenced code blocks of a Markdown file, indented ones (in lists) included."""
    found: list[Block] = []
    current: Block | None = None
    indent = ""
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fence = _FENCE.match(text)
        if current is None:
            if fence:
                indent = fence.group(1)
                current = Block(path, number, fence.group(3), [])
        elif fence and fence.group(1) == indent and not fence.group(3):
            found.append(current)
            current = None
        else:
            current.lines.append(text[len(indent):] if text.startswith(indent) else text)
    return found


def all_blocks() -> list[Block]:
    return [block for path in DOCUMENTS for block in blocks_of(path)]


# -- command lines -------------------------------------------------------------


def simple_commands(text: str) -> list[list[str]]:
    """The simple commands of a shell line: split at ``&&``, ``||``, ``|`` and ``;``."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    commands: list[list[str]] = [[]]
    for token in lexer:
        if token in ("&&", "||", "|", ";", "&"):
            commands.append([])
        else:
            commands[-1].append(token)
    return [command for command in commands if command]


def cli_arguments(command: Sequence[str]) -> list[str] | None:
    """The arguments after ``discos-backend`` (or ``python -m discosbackend``), or ``None``."""
    if command and command[0] == "discos-backend":
        return list(command[1:])
    if list(command[:3]) in (["python", "-m", "discosbackend"],
                             ["python", "-m", "discosbackend.cli"]):
        return list(command[3:])
    return None


def shell_lines(block: Block) -> Iterator[str]:
    """The command lines of a block: after a ``$`` prompt, or every line of a shell block."""
    if block.info == "python":
        return
    for line in block.lines:
        if line.startswith("$ "):
            yield line[2:]
        elif block.info in ("sh", "bash", "shell") and line.strip():
            yield line


def documented_command_lines() -> list[tuple[str, list[str]]]:
    found = []
    for block in all_blocks():
        for line in shell_lines(block):
            for command in simple_commands(line):
                arguments = cli_arguments(command)
                if arguments is not None:
                    found.append((f"{block.where()}: {line}", arguments))
    return found


def test_the_documents_show_command_lines() -> None:
    assert len(documented_command_lines()) >= 10  # the rules below do look at something


@pytest.mark.parametrize("where, arguments", documented_command_lines(),
                         ids=lambda value: value if isinstance(value, str) else "")
def test_every_documented_command_line_parses(where: str, arguments: list[str]) -> None:
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
        try:
            build_parser().parse_args(arguments)
        except SystemExit as exited:
            assert exited.code == 0, f"{where}\n{errors.getvalue()}"


def known_options() -> set[str]:
    """Every option of ``discos-backend`` and its subcommands, and of the scripts."""
    parser = build_parser()
    options = set(parser._option_string_actions)  # pylint: disable=protected-access
    for action in parser._actions:  # pylint: disable=protected-access
        for subparser in getattr(action, "choices", None) or {}:
            options |= set(action.choices[subparser]._option_string_actions)
    for script in (ROOT / "scripts").glob("*.py"):
        options |= set(re.findall(r"[\"'](--[a-z][a-z0-9-]*)[\"']", script.read_text()))
    return options


def test_every_option_the_readme_names_exists() -> None:
    text = README.read_text(encoding="utf-8")
    named = set(re.findall(r"`[^`\n]*?(--[a-z][a-z0-9-]*)", text))
    assert named, "the README names no option"
    assert named - known_options() == set()


# -- python blocks -------------------------------------------------------------


def python_blocks() -> list[Block]:
    return [block for block in all_blocks() if block.info == "python"]


@pytest.mark.parametrize("block", python_blocks(), ids=Block.where)
def test_python_blocks_compile_and_import_what_exists(block: Block) -> None:
    source = "\n".join(block.lines)
    tree = compile(source, block.where(), "exec", ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("discosbackend"):
            module = importlib.import_module(node.module or "")
            for alias in node.names:
                assert hasattr(module, alias.name), f"{block.where()}: {node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("discosbackend"):
                    importlib.import_module(alias.name)


def commented_values(block: Block) -> list[tuple[int, str, object]]:
    """(line index, expression, value) of each expression line whose comment is a literal.

    The literal may be followed by two spaces and a remark:
    ``str(m)  # '?echo'  (the same text back)``.
    """
    found = []
    for index, line in enumerate(block.lines):
        code, hash_, comment = line.partition("  #")
        try:
            value = ast.literal_eval(comment.strip().split("  ")[0])
            statement = ast.parse(code.strip()).body
        except (SyntaxError, ValueError):
            continue
        if hash_ and len(statement) == 1 and isinstance(statement[0], ast.Expr):
            found.append((index, code.strip(), value))
    return found


def runnable_examples() -> list[Block]:
    return [block for block in python_blocks()
            if commented_values(block) and f"{LOOPBACK}:{PUBLIC}" not in "\n".join(block.lines)]


def test_some_example_states_its_values() -> None:
    assert runnable_examples()


@pytest.mark.parametrize("block", runnable_examples(), ids=Block.where)
def test_examples_give_the_values_their_comments_state(block: Block) -> None:
    namespace: dict[str, object] = {}
    checks = {index: (expression, stated) for index, expression, stated
              in commented_values(block)}
    start = 0
    for index in sorted(checks):
        exec(compile("\n".join(block.lines[start:index]), block.where(), "exec"),  # noqa: S102
             namespace)
        expression, stated = checks[index]
        value = eval(expression, namespace)  # noqa: S307  # pylint: disable=eval-used
        assert value == stated, (
            f"{block.where()}: {expression} is {value!r}, the comment says {stated!r}")
        start = index + 1


# -- sessions, run against a live simulator ------------------------------------


def normalized(line: str) -> str:
    """A line with what changes from run to run (times, numbers, ports) replaced."""
    line = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?", "<time>", line)
    line = re.sub(r"((?:\d+\.){3}\d+|localhost|\[[0-9a-f:]+\]):\d+", r"\1:<port>", line)
    line = re.sub(r"\btcp:\d+(?![\d.])", "tcp:<port>", line)
    line = re.sub(r"(?<![\w.])-?\d+\.\d+(?:e[-+]?\d+)?(?![\d.])", "<number>", line)
    return line.rstrip()


def matches(expected: Sequence[str], actual: Sequence[str]) -> bool:
    """Whether ``actual`` reads as ``expected``, a ``...`` line standing for any lines."""
    if not expected:
        return not actual
    if expected[0].strip() == "...":
        return any(matches(expected[1:], actual[skip:]) for skip in range(len(actual) + 1))
    return bool(actual) and normalized(expected[0]) == normalized(actual[0]) \
        and matches(expected[1:], actual[1:])


class ProxyProcess:
    """A ``discos-backend proxy`` left running: its ``port`` and the line it printed."""

    def __init__(self, process: subprocess.Popen, line: str, port: int) -> None:
        self.process = process
        self.line = line
        self.port = port

    def terminate(self, timeout: float = 10.0) -> tuple[int, str]:
        """Send SIGTERM; return the exit status and what it wrote on stderr."""
        self.process.terminate()
        _, err = self.process.communicate(timeout=timeout)
        return self.process.returncode, err.decode()


@dataclass
class Step:
    """One ``$`` command of a session and the lines the document shows after it."""

    command: str
    shown: list[str]


def steps_of(block: Block) -> list[Step]:
    steps: list[Step] = []
    for line in block.lines:
        if line.startswith("$ "):
            steps.append(Step(line[2:], []))
        elif steps:
            steps[-1].shown.append(line)
    return steps


def sessions() -> list[Block]:
    return [block for block in blocks_of(README)
            if block.info != "python" and block.lines and block.lines[0].startswith("$ ")]


@contextlib.contextmanager
def taken_port() -> Iterator[int]:
    """A loopback port something listens on, the two ports either side of it free."""
    for _ in range(100):
        with socket.socket() as busy:
            busy.bind((LOOPBACK, 0))
            port = busy.getsockname()[1]
            if all(_free(port + offset) for offset in (-2, -1, 1, 2)):
                busy.listen()
                yield port
                return
    raise RuntimeError("no port with free neighbours")  # pragma: no cover


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def unescaped_printf(text: str) -> bytes:
    return text.encode().decode("unicode_escape").encode("latin-1")


def read_all(connection: socket.socket) -> list[str]:
    data = b""
    while chunk := connection.recv(65536):
        data += chunk
    return data.decode("utf-8", "replace").splitlines()


def in_process(arguments: list[str], typed: str) -> tuple[int, list[str]]:
    """Run ``discos-backend ARGUMENTS`` here, ``typed`` on its stdin; status and output."""
    out, err = io.StringIO(), io.StringIO()
    stdin, sys.stdin = sys.stdin, io.StringIO(typed)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main(arguments)
    finally:
        sys.stdin = stdin
    return status, out.getvalue().splitlines() + err.getvalue().splitlines()


class Runner:
    """Runs the steps of README sessions against the simulator at ``served``."""

    def __init__(self, served: ServeProcess) -> None:
        self.served = served
        self.status: int | None = None
        # Servers and proxies a session started on a port of its own, kept
        # for the steps that name that port later on: documented port -> it.
        self.kept: dict[int, ServeProcess | ProxyProcess] = {}

    def port(self, port: int, taken: dict[int, int]) -> int:
        if port == PUBLIC:
            return self.served.port
        if port == CONTROL:
            assert self.served.control_port is not None
            return self.served.control_port
        if port in self.kept:
            return self.kept[port].port
        for documented, real in taken.items():  # ports near a taken one keep their distance
            if abs(port - documented) <= 2:
                return real + port - documented
        return closed_port()

    def mapped(self, arguments: list[str], taken: dict[int, int]) -> list[str]:
        result = []
        after_port = False
        for argument in arguments:
            if after_port and argument.isdigit():
                argument = str(self.port(int(argument), taken))
            else:
                argument = re.sub(r"(?<=[\w\]]:)(\d{4,5})\b",
                                  lambda found: str(self.port(int(found.group(1)), taken)),
                                  argument)
            after_port = argument in ("--port", "--control-port")
            result.append(argument)
        return result

    def run(self, step: Step) -> tuple[list[str], list[str]] | None:
        """What the step printed and what the document shows for it; ``None``: not run."""
        commands = simple_commands(step.command)
        words = [command[0] for command in commands]
        if words == ["echo"] and commands[0][1:] == ["$?"]:
            return [str(self.status)], step.shown
        if words == ["nc"]:
            return self.conversation(commands[0], step.shown)
        if words == ["printf", "nc"]:
            return self.piped(commands[0][1], commands[1]), step.shown
        directory = ROOT
        if words[:1] == ["cd"] and len(commands) == 2:
            directory, commands = ROOT / commands[0][1], commands[1:]
        arguments = cli_arguments(commands[0]) if len(commands) == 1 else None
        if arguments is None:
            return None
        return self.discos_backend(arguments, step, directory)

    def conversation(self, command: list[str], shown: list[str]) -> tuple[list[str], list[str]]:
        """``nc HOST PORT`` with the ``?`` lines typed: greeting, then request and reply."""
        host, port = command[-2], int(command[-1])
        with LineClient(self.port(port, {}), host) as client:
            printed = [client.greeting]
            for line in shown:
                if line.startswith("?"):
                    printed += [line, client.ask(line)]
        return printed, shown

    def piped(self, text: str, command: list[str]) -> list[str]:
        host, port = command[-2], int(command[-1])
        with socket.create_connection((host, self.port(port, {})), timeout=10) as connection:
            connection.sendall(unescaped_printf(text))
            connection.shutdown(socket.SHUT_WR)
            return read_all(connection)

    def discos_backend(self, arguments: list[str], step: Step,
                       directory: Path) -> tuple[list[str], list[str]]:
        with contextlib.ExitStack() as stack:
            taken = {port: stack.enter_context(taken_port())
                     for port in map(int, _TAKEN.findall(step.command))}
            if arguments[:1] == ["proxy"]:
                return self.proxying(arguments, step, directory, taken)
            arguments = self.mapped(arguments, taken)
            if arguments[:1] == ["serve"] and not "\n".join(step.shown).startswith(
                    "discos-backend serve:"):
                return self.serving(arguments, step, directory)
            typed = "".join(line[len("discos> "):] + "\n" for line in step.shown
                            if line.startswith("discos> "))
            shown = [line for line in step.shown if not line.startswith("discos> ")]
            if arguments[:1] in (["send"], ["console"]):  # blocking: cheaper in this process
                self.status, printed = in_process(arguments, typed)
                return printed, shown
            done = subprocess.run([*CLI, *arguments], cwd=directory, capture_output=True,
                                  text=True, timeout=120, check=False, input=typed)
        self.status = done.returncode
        return done.stdout.splitlines() + done.stderr.splitlines(), shown

    def serving(self, arguments: list[str], step: Step,
                directory: Path) -> tuple[list[str], list[str]]:
        """A ``serve`` that would run for ever: on free ports, its first line only.

        One on a port of its own (``--port N``) serves the later steps that
        name that port, until the runner closes.
        """
        documented = _documented_port(step.command)
        extra = ["--port", "0"]
        if "--backend" not in arguments and "--control-port" not in arguments:
            extra += ["--control-port", "0"]
        server = start_serve([*arguments[1:], *extra], cwd=directory)
        if documented not in (None, PUBLIC):
            self.kept[documented] = server
        else:
            status, err = server.terminate()
            assert status == 0, err
        # It must start; what it says is checked when the document shows it.
        return [server.line] if step.shown else [], step.shown[:1]

    def proxying(self, arguments: list[str], step: Step, directory: Path,
                 taken: dict[int, int]) -> tuple[list[str], list[str]]:
        """A proxy left running (``&``): on a free port, kept for the steps that name it."""
        listen = arguments.index("--listen") + 1
        documented = int(arguments[listen])
        arguments = self.mapped(arguments[:listen], taken) + ["0"] + self.mapped(
            arguments[listen + 1:], taken)
        process = subprocess.Popen([*CLI, *arguments], cwd=directory, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        line = read_first_line(process, time.monotonic() + 30)
        found = re.search(r"proxying tcp:[0-9.]+:(\d+) to ", line)
        assert found, line
        self.kept[documented] = ProxyProcess(process, line, int(found.group(1)))
        return [line] if step.shown else [], step.shown[:1]

    def close(self) -> None:
        """Stop the servers sessions started on ports of their own."""
        for server in self.kept.values():
            status, err = server.terminate()
            assert status == 0, err
        self.kept.clear()

    def reset(self) -> None:
        """Leave the simulator as the next session expects it: no faults, not acquiring."""
        assert self.served.control_port is not None
        with LineClient(self.served.control_port) as control:
            control.ask("?clear")
        with LineClient(self.served.port) as public:
            public.ask("?stop")


def _documented_port(command: str) -> int | None:
    """The port a ``serve`` command line names with ``--port N``, if any."""
    found = re.search(r"--port[ =](\d+)", command)
    return int(found.group(1)) if found else None


@pytest.fixture(name="runner", scope="module")
def fixture_runner() -> Iterator[Runner]:
    served = start_serve(["--port", "0", "--control-port", "0"])
    runner = Runner(served)
    before = set(ROOT.iterdir())
    try:
        yield runner
    finally:
        runner.close()
        served.terminate()
        for made in set(ROOT.iterdir()) - before:  # what sessions wrote (session.jsonl...)
            if made.is_file():
                made.unlink()


def test_the_readme_has_sessions() -> None:
    assert len(sessions()) >= 5


def test_every_readme_session_shows_what_the_code_prints(runner: Runner) -> None:
    ran = 0
    for block in sessions():
        for step in steps_of(block):
            outcome = runner.run(step)
            if outcome is None:
                continue
            ran += 1
            printed, shown = outcome
            assert matches(shown, printed), (
                f"{block.where()}: $ {step.command}\nthe README shows:\n"
                + "\n".join(shown) + "\nthe code printed:\n" + "\n".join(printed))
        runner.reset()
    assert ran >= 10


def client_examples() -> list[tuple[Block, Block]]:
    """(python block talking to the simulator, the plain block after it that shows its output)."""
    found = []
    for path in DOCUMENTS[:1]:
        found_blocks = blocks_of(path)
        lines = path.read_text(encoding="utf-8").splitlines()
        for code, output in zip(found_blocks, found_blocks[1:]):
            between = lines[code.line + len(code.lines) + 1:output.line - 1]
            if (code.info == "python" and not output.info
                    and f"{LOOPBACK}:{PUBLIC}" in "\n".join(code.lines)
                    and not any(line.strip() for line in between)):
                found.append((code, output))
    return found


def test_the_readme_has_client_examples() -> None:
    assert len(client_examples()) >= 2


def test_client_examples_print_what_the_readme_shows(runner: Runner) -> None:
    for code, output in client_examples():
        source = "\n".join(code.lines).replace(f"{LOOPBACK}:{PUBLIC}",
                                               f"{LOOPBACK}:{runner.served.port}")
        done = subprocess.run([sys.executable, "-c", source], cwd=ROOT, capture_output=True,
                              text=True, timeout=120, check=False)
        runner.reset()
        assert done.returncode == 0, f"{code.where()}\n{done.stderr}"
        assert matches(output.lines, done.stdout.splitlines()), (
            f"{code.where()}: the README shows\n" + "\n".join(output.lines)
            + "\nthe example printed\n" + done.stdout)


# -- the runner's own rules ----------------------------------------------------


def test_normalized_and_matches() -> None:
    assert normalized("!status,ok,1795216801.1877356,ok,0") == "!status,ok,<number>,ok,0"
    assert normalized("on tcp:127.0.0.1:41234; control on tcp:127.0.0.1:8979") == \
        "on tcp:127.0.0.1:<port>; control on tcp:127.0.0.1:<port>"
    assert normalized("out of range 1..2300 MHz") == "out of range 1..2300 MHz"
    assert normalized("2026-11-20T23:22:54.279 ok False") == "<time> ok False"
    assert matches(["a", "...", "d"], ["a", "b", "c", "d"])
    assert matches(["a", "...", "d"], ["a", "d"])
    assert not matches(["a", "d"], ["a", "b", "d"])
    assert not matches(["a"], [])


def test_simple_commands() -> None:
    assert simple_commands("cd scripts && discos-backend serve --backend x:Y  # note") == [
        ["cd", "scripts"], ["discos-backend", "serve", "--backend", "x:Y"]]
    assert simple_commands("printf '?a\\n?b\\n' | nc -q1 127.0.0.1 8979") == [
        ["printf", "?a\\n?b\\n"], ["nc", "-q1", "127.0.0.1", "8979"]]
    assert cli_arguments(["python", "-m", "discosbackend", "check"]) == ["check"]
    assert cli_arguments(["pip", "install"]) is None


# -- docs/protocol.md against the command table --------------------------------


def test_the_protocol_page_lists_every_command_with_its_version() -> None:
    from discosbackend.commands import COMMANDS
    text = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    section = text.split("## 7. Commands", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if line.startswith("| `") and len(cells) == 4:
            rows[cells[0].strip("`")] = cells[3]
    assert list(rows) == list(COMMANDS)
    for name, command in COMMANDS.items():
        since = "the real client" if command.since == "client" else command.since
        assert rows[name].startswith(since), (name, rows[name])


def test_the_documents_link_to_pages_that_exist() -> None:
    for path in DOCUMENTS:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", path.read_text(encoding="utf-8")):
            assert (path.parent / target).exists(), f"{path.name} links to {target}"
