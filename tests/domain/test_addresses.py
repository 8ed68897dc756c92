import pytest

from domain.addresses import same_flat, trailing_numbers


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("历下区汉峪金谷路1号5号楼1单元1201", "汉峪金谷5-1-1201"),
        (
            "历下区燕子山路2号燕子山小区3号楼2单元501",
            "济南市历下区燕子山小区3栋2单元501室",
        ),
        ("燕子山小区３号楼２单元５０１", "燕子山小区3-2-501"),
        ("燕子山小区3号楼2单元501", "501"),
    ],
)
def test_same_flat_matches(first, second):
    assert same_flat(first, second) is True


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("历下区汉峪金谷路1号5号楼1单元1201", "汉峪金谷路1号9号楼2单元2202"),
        ("燕子山小区3号楼2单元501", "燕子山小区3号楼2单元502"),
        ("燕子山小区3号楼2单元501", "燕子山小区4号楼2单元501"),
    ],
)
def test_same_flat_differs(first, second):
    assert same_flat(first, second) is False


def test_same_flat_without_numbers():
    assert same_flat("燕子山小区", "燕子山小区3-2-501") is None


def test_trailing_numbers_fold_width():
    assert trailing_numbers("３号楼２单元５０１") == (3, 2, 501)
