"""Chinese wording of the engine's reasons, for the utility staff who read them.

The engine explains each decision in English, in a fixed set of phrases; the
service shows those phrases to utility staff in Chinese. A phrase this table
does not know is shown as it is.
"""

import re

# Each pattern matches one whole phrase; groups carry the values it names.
_LABELS = [
    (r"district differs \((.*) / (.*)\)", "区县不同（{0} / {1}）"),
    (r"address names no known road or community", "地址中没有可识别的道路或小区"),
    (r"road or community differs", "道路或小区不同"),
    (r"same road and community", "道路和小区相同"),
    (r"same road", "道路相同"),
    (r"same community", "小区相同"),
    (r"community name similar, not equal", "小区名称相近但不相同"),
    (
        r"community name is similar to the registry's, not equal",
        "小区名称与登记的相近但不相同",
    ),
    (r"(building|stair|room|floor) not given", "未写明{0}"),
    (r"same (building|stair|room|floor)", "{0}相同"),
    (r"(building|stair|room|floor) differs \((.*) / (.*)\)", "{0}不同（{1} / {2}）"),
    (r"holder ID is an owner's", "用户证件号为现权利人"),
    (r"holder ID is a previous owner's", "用户证件号为原权利人"),
    (r"same certificate number", "不动产权证号相同"),
    (
        r"certificate number differs \(perhaps an earlier one\)",
        "不动产权证号不同（可能是旧证）",
    ),
    (r"holder name is an owner's", "用户名称为现权利人"),
    (r"holder name is a previous owner's", "用户名称为原权利人"),
    (r"owner name on the account is an owner's", "户号上的房屋权利人为现权利人"),
    (r"area agrees", "面积相符"),
    (r"area differs \((.*) / (.*) m²\)", "面积不符（{0} / {1} 平方米）"),
    (
        r"no candidate agrees on place, building and room",
        "没有房屋在地点、楼号和房号上都一致",
    ),
    (
        r"no unit shares the address, an ID number or the certificate",
        "没有房屋与地址、证件号或权证号相符",
    ),
    (
        r"road or community name exists in more than one district",
        "该道路或小区名称在多个区县都有",
    ),
    (
        r"holder's ID or the certificate belongs to another unit",
        "用户证件号或权证号属于另一处房屋",
    ),
    (
        r"address gives no stair and the building has several",
        "地址未写单元，而该楼有多个单元",
    ),
    (
        r"holder is neither an owner nor a previous owner, and no name or area on "
        r"the account confirms the unit",
        "用户既非现权利人也非原权利人，户号上的姓名和面积也无法确认该房屋",
    ),
    (
        r"account (.*) of the same utility also fits this unit",
        "同一服务机构的户号 {0} 也对应该房屋",
    ),
]
_PARTS = {"building": "楼号", "stair": "单元", "room": "房号", "floor": "楼层"}
_COMPILED = [(re.compile(f"^{pattern}$"), text) for pattern, text in _LABELS]


def in_chinese(reason):
    """Return the Chinese wording of one engine reason, or the reason itself."""
    for pattern, text in _COMPILED:
        match = pattern.match(reason)
        if match:
            values = [_PARTS.get(value, value) for value in match.groups()]
            return text.format(*values)
    return reason
