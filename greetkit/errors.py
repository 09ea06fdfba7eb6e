"""One error tree for greetkit.

Every error greetkit raises on purpose is a :class:`GreetkitError`. Each leaf is also an
instance of the builtin it resembles, so callers that do not know greetkit can still catch
it (``except ValueError`` catches a :class:`SpecError`). Messages name the file or clip and
say how to fix the problem; the CLI prints them as one line and maps them to an exit code.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from greetkit.build import BuildResult


class GreetkitError(Exception):
    """Base class of every error greetkit raises deliberately."""

    #: Exit code the CLI uses for this error.
    exit_code: int = 1


@dataclass(frozen=True)
class SpecIssue:
    """One problem found in a spec file, with where it is and how to fix it."""

    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class SpecError(GreetkitError, ValueError):
    """voices.yaml (or a template it uses) is invalid. Carries every problem found at once."""

    exit_code = 2

    def __init__(self, issues: Iterable[SpecIssue]) -> None:
        self.issues: tuple[SpecIssue, ...] = tuple(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


class EngineError(GreetkitError, RuntimeError):
    """A TTS engine failed to render a clip.

    ``retryable`` says whether trying again later can help (network trouble, rate limits,
    a service error) or not (an unknown voice, text the engine cannot speak).
    """

    def __init__(self, message: str, *, engine: str, retryable: bool = False) -> None:
        super().__init__(message)
        self.engine = engine
        self.retryable = retryable


class EngineUnavailable(EngineError):
    """The engine cannot be used at all right now (offline, missing extra, no library)."""

    def __init__(self, message: str, *, engine: str, retryable: bool = True) -> None:
        super().__init__(message, engine=engine, retryable=retryable)


class UsageError(GreetkitError, ValueError):
    """A request that cannot be carried out as asked (an option that does not apply here)."""

    exit_code = 2


class AudioError(GreetkitError, ValueError):
    """Audio could not be decoded or processed (unsupported format, empty, corrupt)."""


class WorkerError(GreetkitError, RuntimeError):
    """A build's worker process died (out of memory, killed); nothing was published."""


class StoreError(GreetkitError, OSError):
    """The greetings store could not be read or written (permissions, disk full, corrupt)."""


class StoreLocked(StoreError):
    """Another build holds the store's lock."""


class RemoteError(GreetkitError, OSError):
    """A published bank could not be reached, read or written (credentials, nothing
    published, a corrupted object, network trouble after retries)."""


class VerifyError(StoreError):
    """One or more stored clips do not match the manifest."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))


class ClipNotFound(GreetkitError, KeyError):
    """No clip with that key is in the bank or the store."""

    def __init__(self, key: str, suggestions: Sequence[str] = ()) -> None:
        self.key = key
        self.suggestions = tuple(suggestions)
        names = ", ".join(repr(s) for s in self.suggestions)
        hint = f"; did you mean {names}?" if suggestions else ""
        super().__init__(f"no clip {key!r}{hint}")

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class DraftsPresent(GreetkitError):
    """``build --strict`` found clips rendered by a fallback engine.

    ``result`` is the finished build's :class:`~greetkit.build.BuildResult` (the bank was
    still published: drafts are complete clips), so callers can report what was built.
    """

    def __init__(self, message: str, result: BuildResult | None = None) -> None:
        super().__init__(message)
        self.result = result


class MissingExtra(GreetkitError, ImportError):
    """An optional dependency is needed for this feature."""

    def __init__(self, feature: str, extra: str) -> None:
        super().__init__(f"{feature} needs the '{extra}' extra: pip install 'greetkit[{extra}]'")
        self.extra = extra
