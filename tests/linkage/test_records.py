import pytest

from linkage.records import (
    RecordsError,
    UnsupportedEncoding,
    read_roster,
    read_roster_bytes,
    read_units,
)

ROSTER_HEADER = (
    "服务机构名称,用户号,用户名称,用户证件号码,房屋地址,"
    "不动产权证号,房屋权利人名称,房屋面积"
)
UNITS_HEADER = (
    "不动产单元代码,不动产权证号,坐落,用途,建筑面积,套内面积,"
    "权利人名称,权利人证件号码,原权利人名称,原权利人证件号码"
)
WATER = "济南水务集团有限公司"
ROSTER_ROWS = [
    f"{WATER},SW001,张伟,37010219840108008X,燕子山小区3-2-501,,,",
    f"{WATER},SW002,李娜,370102198401080024;370102840108002,燕子山小区3-2-502,,,98.5",
]
UNIT_CODE = "370102005006GB00001F00030064"


def _write(path, lines, encoding):
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode(encoding))
    return path


@pytest.mark.parametrize(
    ("encoding", "name"),
    [("utf-8", "UTF-8"), ("utf-8-sig", "UTF-8 with BOM"), ("gbk", "GBK")],
)
def test_read_roster_encodings(tmp_path, encoding, name):
    path = _write(tmp_path / "roster.csv", [ROSTER_HEADER, *ROSTER_ROWS], encoding)

    roster = read_roster(path)

    assert roster.encoding == name
    assert [a.account_no for a in roster.records] == ["SW001", "SW002"]
    assert roster.records[0].holder_name == "张伟"
    assert roster.records[0].address == "燕子山小区3-2-501"
    assert roster.problems == []


def test_read_roster_typed_fields(tmp_path):
    path = _write(tmp_path / "roster.csv", [ROSTER_HEADER, *ROSTER_ROWS], "utf-8")

    account = read_roster(path).records[1]

    assert account.line == 3
    assert account.service_org == WATER
    assert account.holder_ids == ("370102198401080024", "370102840108002")
    assert account.area == 98.5


def test_read_roster_bytes_upload():
    data = "\n".join([ROSTER_HEADER, *ROSTER_ROWS]).encode("gbk")

    roster = read_roster_bytes(data, "upload.csv")

    assert roster.path == "upload.csv"
    assert roster.encoding == "GBK"
    assert len(roster.records) == 2


def test_read_roster_bytes_names_upload_in_error():
    with pytest.raises(UnsupportedEncoding, match="upload.csv"):
        read_roster_bytes("\n".join(ROSTER_ROWS).encode("utf-16"), "upload.csv")


def test_read_roster_missing_file(tmp_path):
    with pytest.raises(RecordsError, match="cannot be read"):
        read_roster(tmp_path / "absent.csv")


def test_read_roster_latin1_rejected(tmp_path):
    path = tmp_path / "roster-latin1.csv"
    path.write_bytes("Name,Adresse\nMüller,Café Straße 3\n".encode("latin-1"))

    with pytest.raises(UnsupportedEncoding) as caught:
        read_roster(path)

    assert "roster-latin1.csv" in str(caught.value)
    assert "Latin-1" in str(caught.value)


def test_read_roster_latin1_that_decodes_as_gbk_rejected(tmp_path):
    # "Müller" is FC 6C in Latin-1, which also happens to be valid GBK.
    path = tmp_path / "roster-latin1.csv"
    path.write_bytes("Name,Ort\nMüller,Köln\n".encode("latin-1"))

    with pytest.raises(UnsupportedEncoding) as caught:
        read_roster(path)

    assert "roster-latin1.csv" in str(caught.value)
    assert caught.value.encoding == "Latin-1 or Windows-1252"


@pytest.mark.parametrize(
    ("encoding", "seen"),
    [("utf-16", "UTF-16 LE"), ("utf-16-be", "UTF-16 or UTF-32")],
)
def test_read_roster_utf16_rejected(tmp_path, encoding, seen):
    path = _write(
        tmp_path / "roster-utf16.csv", [ROSTER_HEADER, *ROSTER_ROWS], encoding
    )

    with pytest.raises(UnsupportedEncoding) as caught:
        read_roster(path)

    assert "roster-utf16.csv" in str(caught.value)
    assert caught.value.encoding == seen


def test_read_roster_account_number_header_variant(tmp_path):
    header = ROSTER_HEADER.replace("用户号", "用户编号")
    path = _write(tmp_path / "roster.csv", [header, *ROSTER_ROWS], "utf-8")

    assert [a.account_no for a in read_roster(path).records] == ["SW001", "SW002"]


def test_read_roster_columns_in_any_order(tmp_path):
    header = "房屋地址,用户号,服务机构名称,用户名称,用户证件号码"
    row = f"燕子山小区3-2-501,SW001,{WATER},张伟,37010219840108008X"
    path = _write(tmp_path / "roster.csv", [header, row], "utf-8")

    account = read_roster(path).records[0]

    assert account.account_no == "SW001"
    assert account.address == "燕子山小区3-2-501"
    assert account.certificate_no == ""
    assert account.area is None


def test_read_roster_marked_required_headers(tmp_path):
    header = ROSTER_HEADER.replace("用户号", "*用户号").replace(
        "房屋地址", "房屋地址(必填)"
    )
    path = _write(tmp_path / "roster.csv", [header, *ROSTER_ROWS], "utf-8")

    assert len(read_roster(path).records) == 2


def test_read_roster_missing_column(tmp_path):
    header = ROSTER_HEADER.replace("房屋地址", "地址")
    path = _write(tmp_path / "roster.csv", [header, *ROSTER_ROWS], "utf-8")

    with pytest.raises(RecordsError) as caught:
        read_roster(path)

    assert "房屋地址" in str(caught.value)
    assert "roster.csv" in str(caught.value)


def test_read_roster_empty_file(tmp_path):
    path = tmp_path / "roster.csv"
    path.write_bytes(b"")

    with pytest.raises(RecordsError, match="empty"):
        read_roster(path)


def test_read_roster_bad_rows_with_line_numbers(tmp_path):
    lines = [
        ROSTER_HEADER,
        ROSTER_ROWS[0],  # line 2
        f"{WATER},,王芳,,燕子山小区3-2-601,,,",  # line 3: no account number
        f"{WATER},SW003,王芳,燕子山小区3-2-601",  # line 4: too few columns
        f"{WATER},SW001,张伟,,燕子山小区3-2-501,,,",  # line 5: repeats line 2
        ",SW004,赵磊,,燕子山小区3-2-701,,,",  # line 6: no service organisation
        "",  # line 7: blank, skipped silently
        f"{WATER},SW005,刘洋,,燕子山小区3-2-801,,,十平米",  # line 8: area ignored
        ROSTER_ROWS[1],  # line 9
    ]
    path = _write(tmp_path / "roster.csv", lines, "utf-8")

    roster = read_roster(path)

    assert [a.account_no for a in roster.records] == ["SW001", "SW005", "SW002"]
    assert [(p.line, p.dropped) for p in roster.problems] == [
        (3, True),
        (4, True),
        (5, True),
        (6, True),
        (8, False),
    ]
    assert "account number" in roster.problems[0].reason
    assert "4 columns" in roster.problems[1].reason
    assert "duplicate account SW001" in roster.problems[2].reason
    assert "line 2" in roster.problems[2].reason
    assert "服务机构名称" in roster.problems[3].reason
    assert "房屋面积" in roster.problems[4].reason
    assert roster.rows_read == 7
    assert len(roster.bad_rows) == 4


def test_read_roster_trailing_empty_cells(tmp_path):
    lines = [
        ROSTER_HEADER,
        ROSTER_ROWS[0] + ",,",
        f"{WATER},SW002,李娜,,燕子山小区3-2-502,东户,,,98.5",
    ]
    path = _write(tmp_path / "roster.csv", lines, "utf-8")

    roster = read_roster(path)

    assert [a.account_no for a in roster.records] == ["SW001"]
    assert roster.problems[0].line == 3
    assert "9 columns" in roster.problems[0].reason


def test_read_roster_header_trailing_empty_cells(tmp_path):
    lines = [ROSTER_HEADER + ",,", ROSTER_ROWS[0], ROSTER_ROWS[1] + ",,"]
    path = _write(tmp_path / "roster.csv", lines, "utf-8")

    roster = read_roster(path)

    assert [a.account_no for a in roster.records] == ["SW001", "SW002"]
    assert roster.problems == []


def test_read_roster_quoted_multiline_field(tmp_path):
    lines = [
        ROSTER_HEADER,
        f'{WATER},SW001,张伟,"37010219840108008X\n370102840108002",燕子山小区3-2-501,,,',
        f"{WATER},,王芳,,燕子山小区3-2-601,,,",
    ]
    path = _write(tmp_path / "roster.csv", lines, "utf-8")

    roster = read_roster(path)

    assert roster.records[0].holder_ids == ("37010219840108008X", "370102840108002")
    assert roster.problems[0].line == 4


def test_read_roster_same_account_at_two_utilities(tmp_path):
    lines = [
        ROSTER_HEADER,
        f"{WATER},001,张伟,,燕子山小区3-2-501,,,",
        "国网济南供电公司,001,张伟,,燕子山小区3-2-501,,,",
    ]
    path = _write(tmp_path / "roster.csv", lines, "utf-8")

    assert len(read_roster(path).records) == 2


def test_read_units_owners(tmp_path):
    row = (
        f"{UNIT_CODE},鲁(2023)济南市不动产权第0001234号,历下区燕子山路2号3号楼2单元501,"
        "住宅,98.50,80.10,张伟;李娜,37010219840108008X;370102198401080024,"
        "王芳;赵磊,370102840108002;370102198401080040"
    )
    path = _write(tmp_path / "units.csv", [UNITS_HEADER, row], "gbk")

    unit = read_units(path).records[0]

    assert unit.unit_code == UNIT_CODE
    assert unit.building_area == 98.5
    assert unit.inner_area == 80.1
    assert [(p.name, p.id_number) for p in unit.owners] == [
        ("张伟", "37010219840108008X"),
        ("李娜", "370102198401080024"),
    ]
    assert [p.name for p in unit.previous_owners] == ["王芳", "赵磊"]


def test_read_units_bad_rows(tmp_path):
    location = "历下区燕子山路2号3号楼2单元501"
    lines = [
        UNITS_HEADER,
        f"{UNIT_CODE},,{location},住宅,,,张伟,,,",  # line 2
        f",,{location},住宅,,,张伟,,,",  # line 3: no unit code
        f"370102005006GB00001X00030064,,{location},住宅,,,张伟,,,",  # line 4
        f"{UNIT_CODE},,{location},住宅,,,张伟,,,",  # line 5: repeats line 2
        f"{UNIT_CODE[:-1]}5,,{location},住宅,,,张伟;李娜,37010219840108008X,,",
    ]
    path = _write(tmp_path / "units.csv", lines, "utf-8")

    units = read_units(path)

    assert [u.line for u in units.records] == [2, 6]
    assert [(p.line, p.dropped) for p in units.problems] == [
        (3, True),
        (4, True),
        (5, True),
        (6, False),
    ]
    assert "position 20" in units.problems[1].reason
    assert "duplicate unit code" in units.problems[2].reason
    assert "paired by position" in units.problems[3].reason


def test_read_roster_spreadsheet_shortened_numbers(tmp_path):
    lines = [
        ROSTER_HEADER,
        f"{WATER},3.72155E+11,张伟,,燕子山小区3-2-501,,,",
        f"{WATER},SW002,李娜,3.70102E+17;370102198401080024,燕子山小区3-2-502,,,",
    ]
    path = _write(tmp_path / "roster.csv", lines, "utf-8")

    roster = read_roster(path)

    assert [a.account_no for a in roster.records] == ["SW002"]
    assert roster.records[0].holder_ids == ("370102198401080024",)
    assert [(p.line, p.dropped) for p in roster.problems] == [(2, True), (3, False)]
    assert "scientific notation" in roster.problems[0].reason
    assert "scientific notation" in roster.problems[1].reason


def test_read_roster_invalid_byte_line(tmp_path):
    path = tmp_path / "roster.csv"
    lines = [ROSTER_HEADER, *ROSTER_ROWS]
    data = ("\n".join(lines) + "\n").encode("gbk")
    path.write_bytes(data + f"{WATER},SW003,".encode("gbk") + b"\xff\n")

    with pytest.raises(UnsupportedEncoding) as caught:
        read_roster(path)

    assert "not GBK is on line 4" in str(caught.value)
