"""CSV files that people open in a spreadsheet program.

Excel and WPS run a cell that starts with `=`, `+`, `-` or `@` as a formula,
and free text such as a utility's return reason can start that way. Such a
cell is written with a leading apostrophe, which the programs show as text.
The files start with a byte order mark, without which Excel on Chinese
Windows reads UTF-8 as the local code page.
"""

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
BYTE_ORDER_MARK = "\ufeff"


def as_text(value):
    """Return a cell value that a spreadsheet program shows as it is."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value
