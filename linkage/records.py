"""Read a registry export and utility rosters into typed records.

Files may be UTF-8, UTF-8 with a byte-order mark, or GBK (decoded with the
GB 18030 codec, a superset of GBK). Any other encoding raises
UnsupportedEncoding. Headers are matched by name, so columns may come in any
order. A row that cannot be used is left out and reported as a RowProblem
with its line number, and the other rows still go through.

    units = read_units("units.csv")      # ReadResult[Unit]
    roster = read_roster("roster.csv")   # ReadResult[Account]
    roster = read_roster_bytes(uploaded, "roster.csv")
    roster = read_roster_chunks(lambda: open_chunks(), "roster.csv")
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

from domain.identifiers import InvalidIdentifier, fold_width, normalise_unit_code
from linkage.normalise import split_id_field

__all__ = [
    "Account",
    "Person",
    "ReadResult",
    "RecordsError",
    "RowProblem",
    "Unit",
    "UnsupportedEncoding",
    "decode_bytes",
    "read_roster",
    "read_roster_bytes",
    "read_roster_chunks",
    "read_units",
    "read_units_bytes",
]

Record = TypeVar("Record")


@dataclass(frozen=True, slots=True)
class Person:
    """An owner or previous owner as the registry export gives them."""

    name: str
    id_number: str


@dataclass(frozen=True, slots=True)
class Unit:
    """One row of the registry export: a registered unit and its owners."""

    line: int
    unit_code: str
    certificate_no: str
    location: str
    usage: str = ""
    building_area: float | None = None
    inner_area: float | None = None
    owners: tuple[Person, ...] = ()
    previous_owners: tuple[Person, ...] = ()


@dataclass(frozen=True, slots=True)
class Account:
    """One row of a utility roster, with the fields of the joint-handling plan's
    Annex 1. `holder_ids` keeps every ID number given, as typed."""

    line: int
    service_org: str
    account_no: str
    holder_name: str
    holder_ids: tuple[str, ...]
    address: str
    certificate_no: str = ""
    owner_name: str = ""
    area: float | None = None


@dataclass(frozen=True, slots=True)
class RowProblem:
    """A row that was left out (`dropped`) or kept with a field ignored."""

    path: str
    line: int
    reason: str
    dropped: bool = True

    def __str__(self) -> str:
        action = "row left out" if self.dropped else "row kept"
        return f"{self.path} line {self.line}: {self.reason} ({action})"


@dataclass(slots=True)
class ReadResult(Generic[Record]):
    """The records read from one file, the problems found, and its encoding.

    With `max_problems` set, only the first that many problems are kept in
    `problems`; the others are counted in `problems_left_out`.
    """

    path: str
    encoding: str
    records: list[Record] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)
    rows_read: int = 0
    max_problems: int | None = None
    problems_left_out: int = 0
    # Rows left out, whether or not their problem is kept in `problems`.
    bad_row_count: int = 0

    @property
    def bad_rows(self) -> list[RowProblem]:
        """The kept problems that left a row out."""
        return [problem for problem in self.problems if problem.dropped]

    def add_problem(self, problem: RowProblem) -> None:
        """Record a problem, or only count it once `max_problems` are kept."""
        if problem.dropped:
            self.bad_row_count += 1
        if self.max_problems is None or len(self.problems) < self.max_problems:
            self.problems.append(problem)
        else:
            self.problems_left_out += 1


class RecordsError(ValueError):
    """A file that cannot be read at all: unreadable, wrong encoding or headers."""

    def __init__(self, path: str | Path, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = str(path)


class UnsupportedEncoding(RecordsError):
    """A file in an encoding other than UTF-8 or GBK."""

    def __init__(self, path: str | Path, encoding: str, detail: str = "") -> None:
        seen = f"{encoding} ({detail})" if detail else encoding
        message = (
            f"the file looks like {seen}, but only UTF-8 (with or without a "
            "byte-order mark) and GBK are accepted. Save it again as UTF-8."
        )
        super().__init__(path, message)
        self.encoding = encoding


# Column names: the Annex 1 and Annex 2 headers first, then other names in use.
ROSTER_COLUMNS = {
    "service_org": ("服务机构名称",),
    "account_no": ("用户号", "用户编号"),
    "holder_name": ("用户名称",),
    "holder_ids": ("用户证件号码",),
    "address": ("房屋地址",),
    "certificate_no": ("不动产权证号", "不动产权证书号"),
    "owner_name": ("房屋权利人名称",),
    "area": ("房屋面积",),
}
ROSTER_REQUIRED = ("service_org", "account_no", "holder_name", "holder_ids", "address")

UNIT_COLUMNS = {
    "unit_code": ("不动产单元代码", "不动产单元号"),
    "certificate_no": ("不动产权证号", "不动产权证书号"),
    "location": ("坐落",),
    "usage": ("用途",),
    "building_area": ("建筑面积",),
    "inner_area": ("套内面积", "套内建筑面积"),
    "owner_names": ("权利人名称",),
    "owner_ids": ("权利人证件号码",),
    "previous_names": ("原权利人名称",),
    "previous_ids": ("原权利人证件号码",),
}
UNIT_REQUIRED = ("unit_code", "location")

_UTF16_32_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32 LE"),
    (codecs.BOM_UTF32_BE, "UTF-32 BE"),
    (codecs.BOM_UTF16_LE, "UTF-16 LE"),
    (codecs.BOM_UTF16_BE, "UTF-16 BE"),
)
# Templates often mark required columns as *用户号 or 用户号(必填).
_HEADER_MARKS = re.compile(r"^\*|\*$|\((?:必填|选填)\)$")
_NAME_SEPARATORS = re.compile(r"[;；,，、/|]")
# 3.70102E+17: a number that a spreadsheet program has shortened.
_SCIENTIFIC = re.compile(r"^[0-9]+(?:\.[0-9]+)?[eE]\+?[0-9]+$")


def read_units(path: str | Path) -> ReadResult[Unit]:
    """Read a registry export into Unit records.

    Raise RecordsError when the file cannot be read or decoded, or lacks the
    不动产单元代码 or 坐落 column. Rows without a valid, unique unit code are
    left out and reported.
    """
    return read_units_bytes(_read_bytes(path), str(path))


def read_units_bytes(data: bytes, name: str) -> ReadResult[Unit]:
    """Read a registry export from its bytes, as read_units does. `name`
    identifies the file in messages."""
    text, encoding = decode_bytes(data, name, UNIT_COLUMNS)
    result: ReadResult[Unit] = ReadResult(name, encoding)
    seen: dict[str, int] = {}
    lines = io.StringIO(text, newline="")
    for line, values in _rows(lines, name, UNIT_COLUMNS, UNIT_REQUIRED, result):
        unit = _unit_from_row(line, values, seen, result)
        if unit is not None:
            result.records.append(unit)
    return result


def read_roster(path: str | Path) -> ReadResult[Account]:
    """Read a utility roster into Account records.

    Raise RecordsError when the file cannot be read or decoded, or lacks a
    required Annex 1 column. Rows without a service organisation or account
    number, and repeats of an account already read from the file, are left
    out and reported.
    """
    return read_roster_bytes(_read_bytes(path), str(path))


def read_roster_bytes(
    data: bytes, name: str, max_problems: int | None = None
) -> ReadResult[Account]:
    """Read a utility roster from its bytes, as read_roster does. `name`
    identifies the file in messages."""
    view = memoryview(data)

    def open_chunks() -> Iterator[bytes]:
        for start in range(0, len(view), CHUNK_BYTES):
            yield bytes(view[start : start + CHUNK_BYTES])

    return read_roster_chunks(open_chunks, name, max_problems)


def read_roster_chunks(
    open_chunks: Callable[[], Iterable[bytes]],
    name: str,
    max_problems: int | None = None,
    keep_records: bool = True,
    reject: Callable[[Account], str | None] | None = None,
) -> ReadResult[Account]:
    """Read a utility roster from its bytes in pieces, as read_roster does.

    `open_chunks()` must return the file's bytes from the start as an
    iterable of chunks each time it is called: once to find the encoding and
    once to read the rows. Neither the whole file nor its whole text is held
    at once. `reject(account)` may return a reason to leave a row out, which
    is reported as a problem. With `keep_records` false the rows are only
    checked and counted: `records` stays empty and repeated accounts are not
    looked for, which would take memory for every row.
    """
    encoding = detect_encoding(open_chunks(), name, ROSTER_COLUMNS)
    result: ReadResult[Account] = ReadResult(name, encoding, max_problems=max_problems)
    lines = _text_lines(open_chunks(), encoding)
    seen: dict[tuple[str, str], int] | None = {} if keep_records else None
    for line, values in _rows(lines, name, ROSTER_COLUMNS, ROSTER_REQUIRED, result):
        account = _account_from_row(line, values, seen, result)
        if account is None or not keep_records:
            continue
        reason = reject(account) if reject is not None else None
        if reason is not None:
            result.add_problem(RowProblem(name, line, reason))
        else:
            result.records.append(account)
    return result


def _read_bytes(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise RecordsError(path, f"cannot be read ({error.strerror})") from None


def decode_bytes(
    data: bytes, path: str, columns: dict[str, tuple[str, ...]]
) -> tuple[str, str]:
    """Return the text of a CSV file and the name of its encoding.

    UTF-8 is tried first, then GBK. A GBK reading counts only when one of the
    expected headers in `columns` appears in the first line, because text in
    Latin-1 and other 8-bit encodings often decodes as GBK by chance. `path`
    names the file in the UnsupportedEncoding raised for any other encoding.
    """
    if data.startswith(codecs.BOM_UTF8):
        return _decode_utf8(path, data[len(codecs.BOM_UTF8) :]), "UTF-8 with BOM"
    for bom, name in _UTF16_32_BOMS:
        if data.startswith(bom):
            raise UnsupportedEncoding(path, name, "byte-order mark found")
    if b"\x00" in data[:4096]:
        raise UnsupportedEncoding(path, "UTF-16 or UTF-32", "NUL bytes found")

    try:
        return data.decode("utf-8"), "UTF-8"
    except UnicodeDecodeError as error:
        utf8_error = error
    try:
        text = data.decode("gb18030")
    except UnicodeDecodeError as gbk_error:
        utf8_line = _where(data, utf8_error, "UTF-8")
        detail = f"{utf8_line}, {_where(data, gbk_error, 'GBK')}"
        raise UnsupportedEncoding(path, _guess_encoding(data), detail) from None

    first_line = fold_width(text.partition("\n")[0])
    known = [name for names in columns.values() for name in names]
    if not any(name in first_line for name in known):
        detail = (
            f"{_where(data, utf8_error, 'UTF-8')}; read as GBK, the header is wrong"
        )
        raise UnsupportedEncoding(path, _guess_encoding(data), detail)
    return text, "GBK"


# Bytes read at the start of a file for the byte-order mark, NUL and
# encoding-guess checks, which decode_bytes applies to the same prefix.
HEAD_BYTES = 65536
CHUNK_BYTES = 1 << 20
_PYTHON_CODECS = {"UTF-8 with BOM": "utf-8-sig", "UTF-8": "utf-8", "GBK": "gb18030"}


def detect_encoding(
    chunks: Iterable[bytes], path: str, columns: dict[str, tuple[str, ...]]
) -> str:
    """Return the encoding name that decode_bytes would give, reading in chunks.

    The same checks apply, with the same UnsupportedEncoding messages, but
    only the first HEAD_BYTES and the current chunk are held.
    """
    stream = iter(chunks)
    head = b""
    for chunk in stream:
        head += chunk
        if len(head) >= HEAD_BYTES:
            break
    if head.startswith(codecs.BOM_UTF8):
        _check_decodes(itertools.chain([head[len(codecs.BOM_UTF8) :]], stream), path)
        return "UTF-8 with BOM"
    for bom, name in _UTF16_32_BOMS:
        if head.startswith(bom):
            raise UnsupportedEncoding(path, name, "byte-order mark found")
    if b"\x00" in head[:4096]:
        raise UnsupportedEncoding(path, "UTF-16 or UTF-32", "NUL bytes found")

    checks = {
        "utf-8": _DecodeCheck("utf-8"),
        "gb18030": _DecodeCheck("gb18030", first_line=True),
    }
    for chunk in itertools.chain([head], stream):
        for check in checks.values():
            check.feed(chunk)
        if all(check.failed_line for check in checks.values()):
            break
    for check in checks.values():
        check.finish()
    utf8, gbk = checks["utf-8"], checks["gb18030"]
    if not utf8.failed_line:
        return "UTF-8"
    utf8_where = f"first byte that is not UTF-8 is on line {utf8.failed_line}"
    if gbk.failed_line:
        detail = (
            f"{utf8_where}, first byte that is not GBK is on line {gbk.failed_line}"
        )
        raise UnsupportedEncoding(path, _guess_encoding(head), detail)
    first_line = fold_width(gbk.first_line)
    known = [name for names in columns.values() for name in names]
    if not any(name in first_line for name in known):
        detail = f"{utf8_where}; read as GBK, the header is wrong"
        raise UnsupportedEncoding(path, _guess_encoding(head), detail)
    return "GBK"


class _DecodeCheck:
    """Decode chunks with one codec, keeping only the line of the first error."""

    def __init__(self, codec: str, first_line: bool = False) -> None:
        self.decoder = codecs.getincrementaldecoder(codec)()
        self.newlines = 0
        self.failed_line = 0
        # The text up to the first line break, kept when `first_line` is set.
        self.first_line = "" if first_line else None
        self._first_line_done = not first_line

    def feed(self, chunk: bytes, final: bool = False) -> None:
        if self.failed_line:
            return
        try:
            text = self.decoder.decode(chunk, final)
        except UnicodeDecodeError as error:
            # error.object is the undecoded tail of the last chunk followed by
            # this one. That tail is part of a multi-byte character, which
            # never contains a line feed in UTF-8 or GB 18030.
            before = error.object.count(b"\n", 0, error.start)
            self.failed_line = self.newlines + before + 1
            return
        self.newlines += chunk.count(b"\n")
        if not self._first_line_done and len(self.first_line) < HEAD_BYTES:
            self.first_line += text
            if "\n" in self.first_line:
                self.first_line = self.first_line.partition("\n")[0]
                self._first_line_done = True

    def finish(self) -> None:
        self.feed(b"", final=True)


def _check_decodes(chunks: Iterable[bytes], path: str) -> None:
    """Raise UnsupportedEncoding unless the chunks (after a BOM) are UTF-8."""
    check = _DecodeCheck("utf-8")
    for chunk in chunks:
        check.feed(chunk)
        if check.failed_line:
            break
    check.finish()
    if check.failed_line:
        detail = f"first byte that is not UTF-8 is on line {check.failed_line}"
        raise UnsupportedEncoding(path, "UTF-8 with BOM and invalid bytes", detail)


class _ChunkReader(io.RawIOBase):
    """A binary file over an iterable of byte chunks, read once from the start."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = memoryview(chunk)
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


def _text_lines(chunks: Iterable[bytes], encoding: str) -> io.TextIOWrapper:
    """Return the lines of the text in `encoding`, split as csv expects."""
    raw = io.BufferedReader(_ChunkReader(chunks), CHUNK_BYTES)
    return io.TextIOWrapper(raw, encoding=_PYTHON_CODECS[encoding], newline="")


def _decode_utf8(path: str | Path, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise UnsupportedEncoding(
            path, "UTF-8 with BOM and invalid bytes", _where(data, error, "UTF-8")
        ) from None


def _where(data: bytes, error: UnicodeDecodeError, encoding: str) -> str:
    line = data.count(b"\n", 0, error.start) + 1
    return f"first byte that is not {encoding} is on line {line}"


def _guess_encoding(data: bytes) -> str:
    """Name the likely encoding of bytes that are neither UTF-8 nor GBK."""
    high = bytes(byte for byte in data[:65536] if byte >= 0x80)
    letters = sum(char.isalpha() for char in high.decode("latin-1"))
    if high and letters / len(high) > 0.8:
        return "Latin-1 or Windows-1252"
    return "an 8-bit encoding that is neither UTF-8 nor GBK"


def _clean_header(name: str) -> str:
    name = fold_width(name).strip().lstrip("\ufeff").strip()
    return _HEADER_MARKS.sub("", name).strip()


def _header_positions(header, path, columns, required) -> dict[str, int]:
    """Map each field to its column index, or raise RecordsError."""
    cleaned = [_clean_header(name) for name in header]
    positions = {}
    for field_name, names in columns.items():
        for name in names:
            if name in cleaned:
                positions[field_name] = cleaned.index(name)
                break
    missing = [columns[name][0] for name in required if name not in positions]
    if missing:
        raise RecordsError(
            path,
            f"missing column {', '.join(missing)} in the header line "
            f"(found: {', '.join(cleaned) or 'nothing'})",
        )
    return positions


def _rows(lines, path, columns, required, result):
    """Yield (line number, field values) for each row with the right width.

    `lines` is a text file opened with newline="", or any iterable of lines
    that keep their line breaks.
    """
    reader = csv.reader(lines)
    try:
        header = next(reader)
    except StopIteration:
        raise RecordsError(path, "is empty; expected a header line") from None
    except csv.Error as error:
        raise RecordsError(path, f"header line is not valid CSV ({error})") from None
    positions = _header_positions(header, path, columns, required)
    # Spreadsheet exports often end the header and some rows with empty cells.
    while header and not header[-1].strip():
        header = header[:-1]
    width = len(header)

    line = reader.line_num + 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            result.rows_read += 1
            result.add_problem(RowProblem(str(path), line, f"not valid CSV: {error}"))
            line = reader.line_num + 1
            continue
        start, line = line, reader.line_num + 1
        if not any(cell.strip() for cell in row):
            continue
        result.rows_read += 1
        if len(row) > width and not any(cell.strip() for cell in row[width:]):
            row = row[:width]
        if len(row) != width:
            reason = f"has {len(row)} columns; the header has {width}"
            result.add_problem(RowProblem(str(path), start, reason))
            continue
        values = {name: row[index].strip() for name, index in positions.items()}
        yield start, values


def _account_from_row(line, values, seen, result) -> Account | None:
    path = result.path
    org = fold_width(values["service_org"]).strip()
    account_no = fold_width(values["account_no"]).replace(" ", "")
    if not org:
        result.add_problem(RowProblem(path, line, "missing 服务机构名称"))
        return None
    if not account_no:
        result.add_problem(RowProblem(path, line, "missing account number (用户号)"))
        return None
    if _SCIENTIFIC.match(account_no):
        reason = (
            f"account number {account_no} is in scientific notation, so a "
            "spreadsheet program has lost its digits; export the column as text"
        )
        result.add_problem(RowProblem(path, line, reason))
        return None
    key = (org, account_no)
    if seen is not None and key in seen:
        reason = f"duplicate account {account_no} of {org}, first on line {seen[key]}"
        result.add_problem(RowProblem(path, line, reason))
        return None
    if seen is not None:
        seen[key] = line

    area = _area(values.get("area", ""), "房屋面积", line, result)
    return Account(
        line=line,
        service_org=org,
        account_no=account_no,
        holder_name=values["holder_name"],
        holder_ids=_holder_ids(values["holder_ids"], line, result),
        address=values["address"],
        certificate_no=values.get("certificate_no", ""),
        owner_name=values.get("owner_name", ""),
        area=area,
    )


def _unit_from_row(line, values, seen, result) -> Unit | None:
    path = result.path
    raw_code = values["unit_code"]
    if not raw_code:
        result.add_problem(RowProblem(path, line, "missing 不动产单元代码"))
        return None
    try:
        unit_code = normalise_unit_code(raw_code)
    except InvalidIdentifier as error:
        result.add_problem(RowProblem(path, line, f"invalid 不动产单元代码: {error}"))
        return None
    if unit_code in seen:
        reason = f"duplicate unit code {unit_code}, first on line {seen[unit_code]}"
        result.add_problem(RowProblem(path, line, reason))
        return None
    seen[unit_code] = line

    if not values["location"]:
        result.add_problem(RowProblem(path, line, "missing 坐落", dropped=False))
    return Unit(
        line=line,
        unit_code=unit_code,
        certificate_no=values.get("certificate_no", ""),
        location=values["location"],
        usage=values.get("usage", ""),
        building_area=_area(values.get("building_area", ""), "建筑面积", line, result),
        inner_area=_area(values.get("inner_area", ""), "套内面积", line, result),
        owners=_people(values, "owner_names", "owner_ids", line, result),
        previous_owners=_people(values, "previous_names", "previous_ids", line, result),
    )


def _holder_ids(text: str, line: int, result) -> tuple[str, ...]:
    """Split the holder ID numbers, leaving out those a spreadsheet shortened."""
    numbers = split_id_field(text)
    usable = tuple(number for number in numbers if not _SCIENTIFIC.match(number))
    if len(usable) < len(numbers):
        reason = (
            "用户证件号码 in scientific notation (such as 3.70102E+17) ignored; "
            "export the column as text"
        )
        result.add_problem(RowProblem(result.path, line, reason, dropped=False))
    return usable


def _people(values, names_field, ids_field, line, result) -> tuple[Person, ...]:
    """Pair the names and ID numbers of a ;-joined owner list by position."""
    names = [n.strip() for n in _NAME_SEPARATORS.split(values.get(names_field, ""))]
    names = [name for name in names if name]
    ids = list(split_id_field(values.get(ids_field, "")))
    if names and ids and len(names) != len(ids):
        reason = (
            f"{UNIT_COLUMNS[names_field][0]} lists {len(names)} names but "
            f"{UNIT_COLUMNS[ids_field][0]} lists {len(ids)} ID numbers; "
            "they are paired by position"
        )
        result.add_problem(RowProblem(result.path, line, reason, dropped=False))
    count = max(len(names), len(ids))
    names += [""] * (count - len(names))
    ids += [""] * (count - len(ids))
    return tuple(
        Person(name, id_number) for name, id_number in zip(names, ids, strict=True)
    )


def _area(text: str, column: str, line: int, result) -> float | None:
    """Parse an area in square metres. An unreadable area is reported and ignored."""
    cleaned = fold_width(text).replace(" ", "").removesuffix("㎡").removesuffix("m2")
    if not cleaned:
        return None
    try:
        area = float(cleaned)
    except ValueError:
        area = -1.0
    if not 0 < area < 100_000:
        reason = f"{column} {text!r} is not an area in square metres; ignored"
        result.add_problem(RowProblem(result.path, line, reason, dropped=False))
        return None
    return area
