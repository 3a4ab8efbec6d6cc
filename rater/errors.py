"""One exception root, one subclass per failure, each with a stable code.

Every error rater raises on purpose is a :class:`RaterError`. Its ``code`` is
a stable, machine-readable name (the CLI prints it; later protocol agents map
it to a RADIUS reply or a gRPC status through one table each). ``hint`` says
what the operator can do about it.

Errors about input carry where the problem is: a file, a line, a column and
the field's name, so that ``deck.csv:12:3: rate: '-0.1' is negative`` points
at the cell to fix.
"""

from __future__ import annotations

from dataclasses import dataclass


class RaterError(Exception):
    """Root of every error rater raises on purpose."""

    code = "RATER_ERROR"
    hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.code


class ConfigError(RaterError):
    """A setting is missing or has a value rater cannot use."""

    code = "BAD_CONFIG"


class InvalidArgument(RaterError):
    """A request names something in a form rater cannot use."""

    code = "INVALID_ARGUMENT"


class InvalidNumber(InvalidArgument):
    """A dialled number that is not digits once separators are removed."""

    code = "INVALID_NUMBER"


class InvalidInstant(InvalidArgument):
    """A date or time rater cannot read, or one outside 1970..2099."""

    code = "INVALID_INSTANT"


class UnknownTable(RaterError):
    """No rate table has that name."""

    code = "UNKNOWN_TABLE"
    hint = "`rater deck list` shows the rate tables"


class UnknownProfile(RaterError):
    """No time profile of the table has that name."""

    code = "UNKNOWN_PROFILE"
    hint = "`rater deck profile list TABLE` shows the table's time profiles"


class NoRate(RaterError):
    """No row of the table prices that number at that instant."""

    code = "NO_RATE"


class UnauthorizedDestination(NoRate):
    """No rating plan of the subject (or of its fallback subjects) prices the number."""

    code = "UNAUTHORIZED_DESTINATION"


class RatingPlanNotFound(RaterError):
    """No rating profile rates the subject at that instant."""

    code = "RATING_PLAN_NOT_FOUND"


class Conflict(RaterError):
    """The request contradicts what is stored (e.g. another currency)."""

    code = "CONFLICT"


class UnknownClient(RaterError):
    """No client has that name."""

    code = "UNKNOWN_CLIENT"
    hint = "`rater client list` shows the clients"


class UnknownAccount(RaterError):
    """No account has that id."""

    code = "UNKNOWN_ACCOUNT"
    hint = "`rater account list` shows the accounts"


class UnknownNas(RaterError):
    """No NAS entry has that address."""

    code = "UNKNOWN_NAS"


class Refused(RaterError):
    """A money movement the client's balance or authorization does not allow."""

    code = "REFUSED"


class InvoiceError(RaterError):
    """An invoice, issuer or bill run that cannot be found, made or changed as asked."""

    code = "INVOICE"


class RenderError(RaterError):
    """A document (an invoice's PDF) cannot be rendered on this machine."""

    code = "RENDER"


class CheckFailed(RaterError):
    """A stored balance differs from the sum of its journal entries."""

    code = "CHECK_FAILED"

    @classmethod
    def unless_none(cls, problems: list[str]) -> None:
        """Raise, listing the first 50 of ``problems``, if there are any."""
        if problems:
            raise cls(f"{len(problems)} difference(s):\n  " + "\n  ".join(problems[:50]))


class FileError(RaterError):
    """A file cannot be read or written (missing, no permission, no space)."""

    code = "FILE_ERROR"


class StoreError(RaterError):
    """The LMDB environment cannot be opened or read."""

    code = "STORE_ERROR"


class StoreFull(StoreError):
    """The LMDB map reached its configured maximum size."""

    code = "STORE_FULL"
    hint = "raise storage.max_map_size (RATER_MAX_MAP_SIZE) or free disk space"


class DeckFormatError(StoreError):
    """A compiled deck fails its header or structure check."""

    code = "BAD_DECK_FORMAT"
    hint = "re-import the deck; `rater deck rollback` restores the previous one"


@dataclass(frozen=True)
class Problem:
    """One thing wrong in an input file, and where."""

    file: str
    line: int
    column: int | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}"
        if self.column is not None:
            where += f":{self.column}"
        what = f"{self.field}: " if self.field else ""
        return f"{where}: {what}{self.message}"


class InputFileError(RaterError):
    """An input file has problems; nothing was changed."""

    code = "BAD_INPUT_FILE"

    def __init__(self, problems: list[Problem], *, total: int | None = None,
                 hint: str | None = None) -> None:
        self.problems = problems
        self.total = total if total is not None else len(problems)
        lines = [str(p) for p in problems]
        if self.total > len(problems):
            lines.append(f"... and {self.total - len(problems)} more")
        head = lines[0] if len(lines) == 1 else (
            f"{self.total} problems:\n  " + "\n  ".join(lines))
        super().__init__(head, hint=hint)


class Problems:
    """Collects an input's problems, keeping the first ``limit`` (and counting all), to
    raise them together as ``error``."""

    def __init__(self, path: str, error: type[InputFileError], limit: int = 50,
                 hint: str | None = None) -> None:
        self.path = path
        self.error = error
        self.limit = limit
        self.hint = hint
        self.items: list[Problem] = []
        self.total = 0

    def add(self, line: int, column: int | None, field: str | None, message: str, *,
            file: str | None = None) -> None:
        """A problem at ``line`` and ``column`` of the input (``file``: of another file
        of the same input)."""
        self.total += 1
        if len(self.items) < self.limit:
            self.items.append(Problem(file or self.path, line, column, field, message))

    def raise_if_any(self, hint: str | None = None) -> None:
        if self.total:
            raise self.error(self.items, total=self.total, hint=hint or self.hint)


class DeckFileError(InputFileError):
    """A rate deck file has problems; the previous deck stays in place."""

    code = "BAD_DECK_FILE"


class CdrFileError(InputFileError):
    """A CDR file has problems; no output was written."""

    code = "BAD_CDR_FILE"


class TariffPlanError(InputFileError):
    """A CGRateS tariff plan has problems; nothing was imported."""

    code = "BAD_TARIFF_PLAN"


def all_error_classes() -> list[type[RaterError]]:
    """Every RaterError subclass, for the tables that map codes elsewhere."""
    seen: list[type[RaterError]] = []
    stack: list[type[RaterError]] = [RaterError]
    while stack:
        cls = stack.pop()
        seen.append(cls)
        stack.extend(cls.__subclasses__())
    return seen
