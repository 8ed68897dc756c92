"""The utilities (服务机构) of Jinan's joint-handling scheme."""

from dataclasses import dataclass


@dataclass(frozen=True)
class UtilityInfo:
    code: str
    service_org: str
    kind: str
    # "system" takes HTTP pushes; "channel" collects its transfers from an export.
    connection: str


UTILITIES = (
    UtilityInfo("water", "济南水务集团有限公司", "water", "system"),
    UtilityInfo("power", "国网济南供电公司", "power", "system"),
    UtilityInfo("laiwu-power", "国网莱芜供电公司", "power", "system"),
    UtilityInfo("gas", "济南能源集团有限公司燃气", "gas", "system"),
    UtilityInfo("heat", "济南能源集团有限公司热力", "heat", "system"),
    UtilityInfo("tv", "中国广电济南市分公司", "tv", "channel"),
)

# The unit each metered kind of utility reads; cable TV has no meter.
METER_UNITS = {"water": "m³", "power": "kWh", "gas": "m³", "heat": "GJ"}

KIND_LABELS = {
    "water": "供水",
    "power": "供电",
    "gas": "燃气",
    "heat": "供热",
    "tv": "有线电视",
}
