"""Reading a user's text file (RR intervals, SmO2 exports) with errors that say what to do."""

from __future__ import annotations

from pathlib import Path


def read_text(path: Path, error: type[Exception], expected: str) -> str:
    """The UTF-8 text of ``path`` (a BOM is dropped).

    Raises ``error`` naming the file when it cannot be read, or when it is not UTF-8 text;
    ``expected`` says what the file should hold (e.g. "one RR interval per line").
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise error(f"{path}: cannot read the file ({exc.strerror or exc})") from exc
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(
            f"{path}: not a text file (byte {exc.start} is not UTF-8); expected {expected}"
        ) from exc
