"""SmO2 files: the Moxy PC-software export and plain CSVs are read; bad files are refused
with the line and what to do."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streamer.files.smo2 import MOXY_HEADER, SmO2FileError, read_smo2_file


def write(tmp_path: Path, text: str, name: str = "smo2.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_moxy_export_is_read_as_live_smo2_in_seconds_from_the_first_sample(
    recordings: Path,
) -> None:
    data = read_smo2_file(recordings / "moxy" / "moxy_intervals_full.csv")
    assert data.layout == "moxy"
    assert data.t_s.size == 931
    assert data.t_s[0] == 0.0
    assert data.t_s[-1] == pytest.approx(1860.0)
    np.testing.assert_array_equal(np.diff(data.t_s), 2.0)
    # The live column, not the device's trailing average (row 6: live 51, averaged 53).
    np.testing.assert_array_equal(data.smo2_pct[:6], [56, 55, 53, 54, 53, 51])
    assert data.lines[0] == 6  # after a blank line, two firmware lines, a blank one, the header
    assert data.power is None
    assert data.hr is None


def test_excerpt_csv_with_clock_times_and_a_comment_line_is_read(recordings: Path) -> None:
    data = read_smo2_file(recordings / "moxy" / "moxy_intervals_excerpt.csv")
    assert data.layout == "csv"
    assert data.t_s[:3].tolist() == [0.0, 2.0, 4.0]
    assert data.smo2_pct[:3].tolist() == [53.0, 52.0, 50.0]


def test_plain_csv_reads_time_smo2_and_optional_power_and_hr(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "time,smo2,power_w,hr_bpm\n10,60,100,90\n12,55,,95\n14,40,300,\n",
    )
    data = read_smo2_file(path)
    assert data.t_s.tolist() == [0.0, 2.0, 4.0]
    assert data.smo2_pct.tolist() == [60.0, 55.0, 40.0]
    assert data.power is not None
    assert data.hr is not None
    # Empty cells are missing samples, not zeros.
    assert data.power[0].tolist() == [0.0, 4.0]
    assert data.power[1].tolist() == [100.0, 300.0]
    assert data.hr[0].tolist() == [0.0, 2.0]


def test_moxy_rows_sharing_a_second_are_spread_over_it_and_midnight_adds_a_day(
    tmp_path: Path,
) -> None:
    header = ",".join(MOXY_HEADER)
    rows = [
        "01-Jan,23:59:59,50,50,12,1,1",
        "01-Jan,23:59:59,51,50,12,1,1",
        "02-Jan,00:00:00,52,51,12,1,1",
    ]
    data = read_smo2_file(write(tmp_path, "FW v1\n\n" + header + "\n" + "\n".join(rows) + "\n"))
    assert data.t_s.tolist() == [0.0, 0.5, 1.0]


@pytest.mark.parametrize(
    ("text", "fault"),
    [
        ("time,smo2\n0,50\n2,abc\n", "line 3: SmO2 'abc' is not a number"),
        ("time,smo2\n0,50\n2,120\n", "line 3: SmO2 120 is outside 0-100%"),
        ("time,smo2\n0,50\n0,51\n", "line 3: time does not increase"),
        ("time,smo2\n0,50\n", "1 sample(s)"),
        ("time,smo2,power_w\n0,50,10\n2,50,-5\n", "line 3: power_w -5 is negative"),
        ("time,smo2\n0,50\n2\n", "line 3: 1 cell(s)"),
        ("t,value\n0,50\n", "no header found"),
        ("time,smo2\n00:00:00,50\n00:00:xx,50\n", "line 3: time '00:00:xx' is not a clock"),
    ],
)
def test_bad_file_is_refused_naming_the_line_and_the_fault(
    tmp_path: Path, text: str, fault: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(SmO2FileError) as info:
        read_smo2_file(path)
    message = str(info.value)
    assert str(path) in message
    assert fault in message
    assert "\n" not in message


def test_binary_or_missing_file_is_refused(tmp_path: Path) -> None:
    binary = tmp_path / "x.csv"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(SmO2FileError, match="not a text file"):
        read_smo2_file(binary)
    with pytest.raises(SmO2FileError, match="cannot read"):
        read_smo2_file(tmp_path / "missing.csv")
