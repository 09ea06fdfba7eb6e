"""Phrase text: Jinja2 templates rendered in a sandbox with strict variables.

Inline text in voices.yaml and files in ``templates/`` are both templates. The environment is
sandboxed (no access to Python internals), undefined variables are errors, and templates load
only from the project's ``templates/`` directory, so a spec cannot read other files.
Whitespace is collapsed, so a template may be laid out over several lines.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment


class PhraseError(Exception):
    """A template failed; ``template``/``line`` say where when known."""

    def __init__(self, message: str, template: str | None = None, line: int | None = None):
        super().__init__(message)
        self.message = message
        self.template = template
        self.line = line


class PhraseRenderer:
    """Renders phrase text and ``templates/`` files with the spec's variables."""

    def __init__(self, templates_dir: Path) -> None:
        # FileSystemLoader refuses names that climb out of its search path ('../x').
        self.env = ImmutableSandboxedEnvironment(
            loader=jinja2.FileSystemLoader(str(templates_dir)),
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            keep_trailing_newline=False,
        )

    def render_string(self, source: str, variables: Mapping[str, Any]) -> str:
        """Render inline text from voices.yaml."""
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

    @staticmethod
    def _render(template: jinja2.Template, variables: Mapping[str, Any],
                name: str | None) -> str:
        try:
            text = template.render(**variables)
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
        except (ArithmeticError, TypeError, ValueError, RecursionError) as exc:
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
