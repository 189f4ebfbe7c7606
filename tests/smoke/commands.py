"""The command trees (compat/interpreter/README.md) and their seeded generator, with the distribution and
parameter names of StateFun's smoke test (statefun-spec §6.3/6.4), and what a tree does to the counters."""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field

FUNCTION = "statefun.smoke.e2e/command-interpreter-fn"
COMMANDS_TYPENAME = "statefun.smoke.e2e/commands"


@dataclass(frozen=True)
class Parameters:
    """SmokeRunnerParameters' names and defaults (async operations are not in our schema)."""
    numberOfFunctionInstances: int = 128
    commandDepth: int = 10
    messageCount: int = 100_000
    maxCommandsPerDepth: int = 3
    stateModificationsPr: float = 0.4
    sendPr: float = 0.9
    sendAfterPr: float = 0.1
    sendAfterWithCancellationPr: float = 0.1
    noopPr: float = 0.2
    sendEgressPr: float = 0.03
    randomGeneratorSeed: int = 0
    delaysMs: tuple[int, ...] = (1, 10, 100, 1000)   # ours: a send_after's delay is one of these


@dataclass
class SourceCommand:
    """One message of the source: its index, the instance it goes to and its commands."""
    index: int
    target: int
    commands: list

    def body(self) -> bytes:
        return json.dumps({"commands": self.commands}, separators=(",", ":")).encode()


class CommandGenerator:
    """CommandGenerator.get(): target uniform in [0, N), depth = nextInt(commandDepth), then commands(depth).
    Deterministic for a seed: the i-th call returns the same tree in every run."""

    def __init__(self, parameters: Parameters, discard_topic: str):
        self.p = parameters
        self.discard_topic = discard_topic
        self.rng = random.Random(parameters.randomGeneratorSeed)
        self.index = 0
        p = parameters
        self._kinds = ["increment", "send", "send_after", "send_after_cancel", "noop", "egress"]
        self._weights = [p.stateModificationsPr, p.sendPr, p.sendAfterPr, p.sendAfterWithCancellationPr, p.noopPr,
                         p.sendEgressPr]

    def __iter__(self):
        return self

    def __next__(self) -> SourceCommand:
        if self.index >= self.p.messageCount:
            raise StopIteration
        command = SourceCommand(self.index, self.rng.randrange(self.p.numberOfFunctionInstances),
                                self.commands(self.rng.randrange(self.p.commandDepth)))
        self.index += 1
        return command

    def _target(self) -> int:
        return self.rng.randrange(self.p.numberOfFunctionInstances)

    def commands(self, depth: int) -> list:
        if depth <= 0:
            return [{"op": "increment"}]
        out: list = []
        for _ in range(self.rng.randrange(self.p.maxCommandsPerDepth)):
            kind = self.rng.choices(self._kinds, self._weights)[0]
            if kind == "increment":
                out.append({"op": "increment"})
            elif kind == "send":
                out.append({"op": "send", "target": self._target(), "commands": self.commands(depth - 1)})
            elif kind == "send_after":
                out.append({"op": "send_after", "target": self._target(), "delay_ms": self.rng.choice(self.p.delaysMs),
                            "commands": self.commands(depth - 1)})
            elif kind == "send_after_cancel":
                # as StateFun's: a delayed message without commands and its cancellation right after, so
                # whether the cancellation wins does not change any count
                target, token = self._target(), f"{self.rng.getrandbits(64):016x}"
                out.append({"op": "send_after", "target": target, "delay_ms": self.rng.choice(self.p.delaysMs),
                            "token": token, "commands": []})
                out.append({"op": "cancel", "token": token})
            elif kind == "egress":
                out.append({"op": "egress", "topic": self.discard_topic})
        if not out:
            out.append({"op": "increment"})
        return out


@dataclass
class Effects:
    """What a command tree does once interpreted: increments and discard-egress records per instance."""
    increments: Counter = field(default_factory=Counter)
    egress: Counter = field(default_factory=Counter)


def effects(target: int, commands: list, into: Effects | None = None) -> Effects:
    """FunctionStateTracker's walk: ``increment`` counts for the current instance, ``send``/``send_after``
    recurse with their target; we also count ``egress`` records (each must come out exactly once)."""
    into = into or Effects()
    stack = [(target, commands)]
    while stack:
        at, commands = stack.pop()
        for command in commands:
            op = command["op"]
            if op == "increment":
                into.increments[at] += 1
            elif op in ("send", "send_after"):
                stack.append((command["target"], command["commands"]))
            elif op == "egress":
                into.egress[at] += 1
    return into


def verify_command(instance: int, expected: int, topic: str) -> SourceCommand:
    return SourceCommand(-1, instance, [{"op": "verify", "expected": expected, "topic": topic}])
