import pytest

from domain.masking import (
    is_organisation_name,
    mask_address,
    mask_id_number,
    mask_name,
    mask_phone,
)


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("37010219900101123X", "370102********123X"),
        ("11010519491231002X", "110105********002X"),
        ("91370102MA3C4X5Y1A", "913701********5Y1A"),
        ("370102850716123", "37***********23"),
        ("E12345678", "E*******8"),
        ("USA110082010101", "US***********01"),
        ("H1234", "*****"),
        ("AB12", "****"),
        ("", ""),
        (None, None),
    ],
)
def test_mask_id_number(value, masked):
    assert mask_id_number(value) == masked


@pytest.mark.parametrize(
    "value",
    ["E12345678", "USA110082010101", "370102850716123", "H1234", "AB1234", "A" * 32],
)
def test_mask_id_number_shows_at_most_third(value):
    masked = mask_id_number(value)
    visible = sum(1 for char in masked if char != "*")
    assert len(masked) == len(value)
    assert visible * 3 <= len(value)


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("张三", "张*"),
        ("欧阳娜娜", "欧***"),
        ("王", "*"),
        ("买买提·吐尔逊", "买******"),
        ("John Smith", "J*** S****"),
        ("Mary-Jane O'Neil", "M***-J*** O'N***"),
        ("济南水务集团有限公司", "济南水务集团有限公司"),
        ("国网济南供电公司", "国网济南供电公司"),
        ("济南市自然资源和规划局", "济南市自然资源和规划局"),
        ("中国工商银行济南分行", "中国工商银行济南分行"),
        ("燕子山社区居民委员会", "燕子山社区居民委员会"),
        ("Acme Co., Ltd.", "Acme Co., Ltd."),
        ("", ""),
        (None, None),
    ],
)
def test_mask_name(value, masked):
    assert mask_name(value) == masked


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("济南能源集团", True),
        ("历下区政务服务中心", True),
        ("张三", False),
        ("Li Lei", False),
    ],
)
def test_is_organisation_name(value, expected):
    assert is_organisation_name(value) is expected


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("13800000000", "138****0000"),
        ("13812345678", "138****5678"),
        ("138-1234-5678", "138-****-5678"),
        ("+86 138 1234 5678", "+86 138 **** 5678"),
        ("0531-88881234", "0531-****1234"),
        ("88881234", "******34"),
        ("", ""),
        (None, None),
    ],
)
def test_mask_phone(value, masked):
    assert mask_phone(value) == masked


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        (
            "历下区燕子山路2号燕子山小区3号楼2单元501",
            "历下区燕子山路2号燕子山小区3号楼2单元***",
        ),
        ("燕子山小区3-2-501", "燕子山小区3-2-***"),
        ("济南市历下区燕子山小区3栋2单元501室", "济南市历下区燕子山小区3栋2单元***室"),
        ("山大北路小区3号楼2单元602号", "山大北路小区3号楼2单元***号"),
        ("郭店小区３栋２单元９０２室", "郭店小区３栋２单元***室"),
        ("清河小区1号楼1单元101 ", "清河小区1号楼1单元*** "),
        ("燕子山路2号", "燕子山路2号"),
        ("经十路17703号", "经十路17703号"),
        ("历下区燕子山小区", "历下区燕子山小区"),
        ("", ""),
        (None, None),
    ],
)
def test_mask_address(value, masked):
    assert mask_address(value) == masked
