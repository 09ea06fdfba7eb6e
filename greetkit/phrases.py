"""Phrase text: Jinja2 templates rendered in a sandbox with strict variables.

Inline text in voices.yaml and files in ``templates/`` are both templates. The environment is
sandboxed (no access to Python internals), undefined variables are errors, and templates load
only from the project's ``templates/`` directory, so a spec cannot read other files.
Whitespace is collapsed, so a template may be laid out over several lines.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.loaders import split_template_path
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

# The sandbox stops access to Python internals but not runaway work: ``'a' * 10**9``,
# ``2 ** 10**9``, doubling a string in a macro or ``{% set %}`` chain, nested loops. A spec is
# input from whoever edits voices.yaml, so these caps make such templates fail fast.
#: Longest string or sequence a template may build (the final text is capped lower by spec).
MAX_TEMPLATE_STRING = 2000
#: Loop iterations + calls one render may make.
MAX_TEMPLATE_STEPS = 2000
#: Largest integer (in bits) '*' and '**' may produce.
MAX_TEMPLATE_INT_BITS = 4096
#: Largest template source (a templates/ file or inline text). With the step cap this bounds
#: what a loop inside ``{% set x %}...{% endset %}`` can pile up (it is not streamed).
MAX_TEMPLATE_BYTES = 10_000
# Widths/precisions that pad without bound: '%99999s', '%*s', '{:>99999}'.
_WIDE_PERCENT = re.compile(r"%[^%a-zA-Z]*(\*|\d{5})")
_WIDE_FORMAT = re.compile(r"\{[^{}]*:[^{}]*\d{5}")


class PhraseError(Exception):
    """A template failed; ``template``/``line`` say where when known."""

    def __init__(self, message: str, template: str | None = None, line: int | None = None):
        super().__init__(message)
        self.message = message
        self.template = template
        self.line = line


def _sized(value: Any) -> int:
    return len(value) if isinstance(value, (str, list, tuple, dict)) else 0


class _Guard(NodeTransformer):
    """Routes every loop and every ``~`` through the environment so both are budgeted."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Call(nodes.EnvironmentAttribute("guard_loop"), [node.iter], [],
                               None, None, lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return nodes.Call(nodes.EnvironmentAttribute("guard_concat"), list(node.nodes), [],
                          None, None, lineno=node.lineno)


class _GuardedCodeGenerator(CodeGenerator):
    def visit_Template(self, node: nodes.Template, frame: Frame | None = None) -> None:
        super().visit_Template(_Guard().visit(node), frame)


class _GuardedEnvironment(ImmutableSandboxedEnvironment):
    """The immutable sandbox plus caps on size and work (see MAX_TEMPLATE_*)."""

    code_generator_class = _GuardedCodeGenerator
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.steps = 0
        # Helpers a greeting never needs and that make text or state without a size check.
        for name in ("lipsum", "cycler", "joiner", "namespace"):
            self.globals.pop(name, None)
        self.filters = {name: _checked_filter(name, f) for name, f in self.filters.items()}

    def step(self) -> None:
        self.steps += 1
        if self.steps > MAX_TEMPLATE_STEPS:
            raise SecurityError(f"template did more than {MAX_TEMPLATE_STEPS} loop iterations "
                                "and calls")

    def guard_loop(self, iterable: Iterable[Any]) -> Iterator[Any]:
        for item in iterable:
            self.step()
            yield item

    def guard_concat(self, *parts: Any) -> str:
        texts = [str(p) for p in parts]
        _check_size(sum(len(t) for t in texts))
        return "".join(texts)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        ints = isinstance(left, int) and isinstance(right, int)
        if operator == "**" and ints and right > 0 and (
                right * abs(left).bit_length() > MAX_TEMPLATE_INT_BITS):
            raise SecurityError(f"{left} ** {right} is too large")
        if operator == "*" and ints and (
                left.bit_length() + right.bit_length() > MAX_TEMPLATE_INT_BITS):
            raise SecurityError("product is too large")
        if operator == "*" and not ints:
            for seq, n in ((left, right), (right, left)):
                if _sized(seq) and isinstance(n, int):
                    _check_size(_sized(seq) * n)
        if operator == "+":
            _check_size(_sized(left) + _sized(right))
        if operator == "%" and isinstance(left, str) and _WIDE_PERCENT.search(left):
            raise SecurityError("'%' formatting with a width above 9999 or '*' is not allowed")
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        __self.step()
        values = (*args, *kwargs.values())
        for value in values:
            _check_size(_sized(value))
        # The sandbox hands out str.format wrapped; look at the method underneath.
        method = getattr(__obj, "__wrapped__", __obj)
        owner = getattr(method, "__self__", None)
        if isinstance(owner, str) or __obj is __self.globals.get("range"):
            # str.center/ljust/zfill/... and range() allocate in proportion to an int arg.
            for value in values:
                if isinstance(value, int) and abs(value) > MAX_TEMPLATE_STRING:
                    raise SecurityError(f"argument {value} is too large")
            if isinstance(owner, str) and getattr(method, "__name__", "") in (
                    "format", "format_map") and _WIDE_FORMAT.search(owner):
                raise SecurityError("format widths above 9999 are not allowed")
        return super().call(__context, __obj, *args, **kwargs)


def _check_size(n: int) -> None:
    if n > MAX_TEMPLATE_STRING:
        raise SecurityError(f"template built a value of {n} items or characters; the limit is "
                            f"{MAX_TEMPLATE_STRING}")


def _checked_filter(name: str, f: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a built-in filter so numeric arguments cannot ask for a huge result."""

    def checked(*args: Any, **kwargs: Any) -> Any:
        if name == "format" and args and isinstance(args[0], str) and (
                _WIDE_PERCENT.search(args[0])):
            raise SecurityError("'format' with a width above 9999 or '*' is not allowed")
        for value in (*args, *kwargs.values()):
            if isinstance(value, int) and not isinstance(value, bool) and (
                    abs(value) > MAX_TEMPLATE_STRING):
                raise SecurityError(f"filter argument {value} is too large")
            _check_size(_sized(value))
        return f(*args, **kwargs)

    # Jinja2 passes the environment/context to filters marked with these attributes.
    for attr in ("jinja_pass_arg",):
        if hasattr(f, attr):
            setattr(checked, attr, getattr(f, attr))
    return checked


class _SizedLoader(jinja2.FileSystemLoader):
    """FileSystemLoader that checks a template's size from the file before reading it.

    Jinja2's own loader reads the whole file: a 400 MB file in templates/ filled memory
    before the size cap saw it. Here the size comes from ``fstat`` and at most the cap (in
    UTF-8 bytes) is read, so a file that grows, or a special file reporting size 0, stops
    there too.
    """

    def get_source(self, environment: jinja2.Environment,
                   template: str) -> tuple[str, str, Callable[[], bool]]:
        pieces = split_template_path(template)  # refuses '../' names
        for root in self.searchpath:
            filename = posixpath.join(root, *pieces)
            if os.path.isfile(filename):
                break
        else:
            raise jinja2.TemplateNotFound(template)
        # Symlinks are followed by open(): a link in templates/ must not read a file elsewhere.
        roots = [Path(p).resolve() for p in self.searchpath]
        if not any(Path(filename).resolve().is_relative_to(r) for r in roots):
            raise jinja2.TemplateNotFound(template)
        limit = 4 * MAX_TEMPLATE_BYTES  # the cap is in characters; UTF-8 needs <= 4 bytes each
        too_big = PhraseError(f"template is larger than {MAX_TEMPLATE_BYTES} characters; "
                              "keep templates/ files short", template)
        try:
            with open(filename, "rb") as f:
                if os.fstat(f.fileno()).st_size > limit:
                    raise too_big
                data = f.read(limit + 1)
        except OSError as exc:
            raise PhraseError(f"cannot read the template ({exc.strerror}); check its "
                              "permissions", template) from None
        if len(data) > limit:
            raise too_big
        try:
            source = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data[:exc.start].count(b"\n") + 1
            raise PhraseError(f"not UTF-8 text (byte 0x{data[exc.start]:02x}); save the "
                              "template as UTF-8", template, line) from None
        if len(source) > MAX_TEMPLATE_BYTES:
            raise too_big
        mtime = os.path.getmtime(filename)

        def uptodate() -> bool:
            try:
                return os.path.getmtime(filename) == mtime
            except OSError:
                return False

        return source, os.path.normpath(filename), uptodate


class PhraseRenderer:
    """Renders phrase text and ``templates/`` files with the spec's variables."""

    def __init__(self, templates_dir: Path) -> None:
        # FileSystemLoader refuses names that climb out of its search path ('../x').
        self.env = _GuardedEnvironment(
            loader=_SizedLoader(str(templates_dir)),
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            keep_trailing_newline=False,
        )

    def render_string(self, source: str, variables: Mapping[str, Any]) -> str:
        """Render inline text from voices.yaml."""
        if len(source) > MAX_TEMPLATE_BYTES:
            raise PhraseError(f"text is {len(source)} characters; keep it under "
                              f"{MAX_TEMPLATE_BYTES}")
        try:
            template = self.env.from_string(source)
        except jinja2.TemplateSyntaxError as exc:
            raise PhraseError(f"template syntax error: {exc.message}; fix the braces") from None
        return self._render(template, variables, None)

    def render_template(self, name: str, variables: Mapping[str, Any]) -> str:
        """Render ``templates/<name>``."""
        try:
            template = self.env.get_template(name)
        except jinja2.TemplateNotFound as exc:
            raise PhraseError(f"template {exc.name!r} not found in templates/; check the name "
                              "(paths are relative to templates/ and cannot leave it)") from None
        except jinja2.TemplateSyntaxError as exc:
            raise PhraseError(f"template syntax error: {exc.message}; fix the template",
                              exc.name or name, exc.lineno) from None
        return self._render(template, variables, name)

    def _render(self, template: jinja2.Template, variables: Mapping[str, Any],
                name: str | None) -> str:
        self.env.steps = 0
        try:
            # Streamed so a template that prints too much stops at the cap, not in memory.
            chunks: list[str] = []
            size = 0
            for chunk in template.generate(**variables):
                size += len(chunk)
                if size > 10 * MAX_TEMPLATE_STRING:
                    raise SecurityError(f"template printed more than {10 * MAX_TEMPLATE_STRING}"
                                        " characters")
                chunks.append(chunk)
            text = "".join(chunks)
        except jinja2.UndefinedError as exc:
            raise PhraseError(f"{exc.message}; define it under 'variables:'", name,
                              _template_line(exc)) from None
        except SecurityError as exc:
            raise PhraseError(f"template tried something unsafe ({exc}); templates may only "
                              "use variables and filters", name, _template_line(exc)) from None
        except jinja2.TemplateNotFound as exc:
            raise PhraseError(f"included template {exc.name!r} not found in templates/", name,
                              _template_line(exc)) from None
        except jinja2.TemplateError as exc:
            raise PhraseError(f"template error: {exc}", name, _template_line(exc)) from None
        except (ArithmeticError, TypeError, ValueError, RecursionError, MemoryError) as exc:
            raise PhraseError(f"template failed: {type(exc).__name__}: {exc}", name,
                              _template_line(exc)) from None
        return " ".join(text.split())


def _template_line(exc: BaseException) -> int | None:
    """The template line of a render-time error, from Jinja2's rewritten traceback."""
    tb = exc.__traceback__
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.endswith((".j2", ".txt", ".jinja")) or (
            tb.tb_frame.f_globals.get("__jinja_template__") is not None
        ):
            line = tb.tb_lineno
        tb = tb.tb_next
    return line
