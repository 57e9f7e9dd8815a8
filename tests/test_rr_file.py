"""Reading RR files: units, PhysioNet start-time lines, refusals that name the line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streamer.files.rr import RrFileError, read_rr_file


def write(tmp_path: Path, text: str, name: str = "rr.txt") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_physionet_export_with_start_time_line(recordings: Path) -> None:
    f = read_rr_file(recordings / "nsr2db" / "nsr001_rr_secs.txt", first_line_is_start=True)
    assert f.unit == "s"
    assert f.unit_detected
    assert f.start_s == pytest.approx(225.796875)
    assert f.rr_ms.size == 106_459
    assert f.rr_ms[0] == pytest.approx(695.3125)
    assert f.lines[0] == 2


def test_physionet_export_without_the_option_is_refused_with_the_hint(recordings: Path) -> None:
    with pytest.raises(RrFileError, match=r"line 1: .*--first-line-is-start"):
        read_rr_file(recordings / "nsr2db" / "nsr001_rr_secs.txt")


def test_milliseconds_are_detected(tmp_path: Path) -> None:
    f = read_rr_file(write(tmp_path, "812\n790.5\n805\n"))
    assert f.unit == "ms"
    np.testing.assert_array_equal(f.rr_ms, [812.0, 790.5, 805.0])


def test_seconds_are_detected_and_converted(tmp_path: Path) -> None:
    f = read_rr_file(write(tmp_path, "0.812\n0.79\n0.805\n"))
    assert f.unit == "s"
    np.testing.assert_allclose(f.rr_ms, [812.0, 790.0, 805.0])


def test_explicit_unit_overrides_detection(tmp_path: Path) -> None:
    path = write(tmp_path, "0.812\n0.79\n")
    with pytest.raises(RrFileError, match=r"line 1: 0.812 ms \(given unit\)"):
        read_rr_file(path, unit="ms")
    assert not read_rr_file(path, unit="s").unit_detected


def test_blank_lines_and_comments_are_skipped_and_lines_kept(tmp_path: Path) -> None:
    f = read_rr_file(write(tmp_path, "# strap export\n\n800\n  810  \n\n# note\n790\n"))
    np.testing.assert_array_equal(f.rr_ms, [800.0, 810.0, 790.0])
    assert f.lines == (3, 4, 7)


def test_empty_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RrFileError, match="no RR intervals found"):
        read_rr_file(write(tmp_path, ""))
    with pytest.raises(RrFileError, match="no RR intervals found"):
        read_rr_file(write(tmp_path, "# only a comment\n\n"))


def test_start_time_alone_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RrFileError, match="no RR intervals found"):
        read_rr_file(write(tmp_path, "225.8\n"), first_line_is_start=True)


def test_text_line_is_refused_naming_the_line(tmp_path: Path) -> None:
    with pytest.raises(RrFileError, match=r"line 3: 'eighty' is not a number"):
        read_rr_file(write(tmp_path, "800\n810\neighty\n"))


def test_csv_header_is_refused(recordings: Path) -> None:
    with pytest.raises(RrFileError, match=r"line 1: 'time,ecg,hr,rr' is not a number"):
        read_rr_file(recordings / "polar_h10" / "polar_h10.csv")


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("800\n0\n", r"line 2: interval 0 is zero"),
        ("800\n-790\n", r"line 2: interval -790 is negative"),
        ("800\nnan\n", r"line 2: 'nan' is not a finite number"),
        ("800\ninf\n", r"line 2: 'inf' is not a finite number"),
    ],
)
def test_impossible_numbers_are_refused(tmp_path: Path, text: str, pattern: str) -> None:
    with pytest.raises(RrFileError, match=pattern):
        read_rr_file(write(tmp_path, text))


def test_values_no_interval_can_have_are_refused(tmp_path: Path) -> None:
    with pytest.raises(RrFileError, match=r"line 3: 20 ms .* not a possible RR interval"):
        read_rr_file(write(tmp_path, "800\n810\n20\n"))
    with pytest.raises(RrFileError, match=r"line 2: 95000 ms .* check the unit"):
        read_rr_file(write(tmp_path, "800\n95000\n810\n"))


def test_long_pause_inside_the_limits_is_kept_for_cleaning(tmp_path: Path) -> None:
    f = read_rr_file(write(tmp_path, "800\n7476.5\n810\n"))
    assert f.rr_ms[1] == 7476.5


def test_binary_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "rr.bin"
    path.write_bytes(b"\x80\x81\xfe\xff")
    with pytest.raises(RrFileError, match="not a text file"):
        read_rr_file(path)


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RrFileError, match="cannot read the file"):
        read_rr_file(tmp_path / "absent.txt")
