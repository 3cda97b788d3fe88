"""What the MQTT sink publishes, as plain data: topics, state messages and Home Assistant discovery.

No broker here (`agent.sinks.mqtt` sends what these functions build). The state message carries
the InfluxDB field names; discovery gives Home Assistant one device per meter and one sensor per
reading, with the device_class, state_class and unit its Energy dashboard accepts, taken from the
field's unit suffix (`_kwh` → energy, kWh, total_increasing), plus link-health sensors. A meter
that disappears is removed with an empty retained config, as Home Assistant's discovery documents.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from agent.core.fields import FieldValue
from agent.core.pipeline import Result
from agent.core.points import mbus_points

Payload = dict[str, object]
_NOT_ID = re.compile(r"[^A-Za-z0-9_-]")


def topic_id(meter: str) -> str:
    """The meter's name as one topic level and discovery id: Home Assistant allows only
    `[A-Za-z0-9_-]` in node and object ids, and `/`, `+`, `#` would change what a topic means."""
    return _NOT_ID.sub("_", meter) or "_"


@dataclass(frozen=True, slots=True)
class Topics:
    prefix: str  # PREFIX/<meter>/state, PREFIX/status
    discovery_prefix: str  # Home Assistant's, `homeassistant`

    @property
    def status(self) -> str:
        return f"{self.prefix}/status"

    @property
    def birth(self) -> str:
        """Where Home Assistant says `online` when it (re)starts: discovery is sent again."""
        return f"{self.discovery_prefix}/status"

    def meter(self, meter: str, leaf: str) -> str:
        """PREFIX/<meter>/state, …/link, …/<field>."""
        return f"{self.prefix}/{topic_id(meter)}/{leaf}"

    def config(self, meter: str, object_id: str) -> str:
        return f"{self.discovery_prefix}/sensor/p1_{topic_id(meter)}/{topic_id(object_id)}/config"


@dataclass(frozen=True, slots=True)
class Entity:
    device_class: str | None
    state_class: str | None
    unit: str | None


# By unit suffix, longest first: what Home Assistant's sensor rules accept together.
_BY_SUFFIX = (
    ("_kvarh", Entity(None, "total_increasing", "kvarh")),
    ("_kwh", Entity("energy", "total_increasing", "kWh")),
    ("_gj", Entity("energy", "total_increasing", "GJ")),
    ("_kvar", Entity(None, "measurement", "kvar")),
    ("_kva", Entity(None, "measurement", "kVA")),
    ("_kw", Entity("power", "measurement", "kW")),
    ("_hz", Entity("frequency", "measurement", "Hz")),
    ("_m3", Entity(None, "total_increasing", "m³")),  # gas or water: by the name, below
    ("_v", Entity("voltage", "measurement", "V")),
    ("_a", Entity("current", "measurement", "A")),
    ("_s", Entity("duration", "measurement", "s")),
)
_VOLUME_CLASSES = {"gas": "gas", "water": "water"}
# Counts the meter keeps (power failures, sags, swells): only ever grow.
_COUNTS = ("power_failures", "voltage_sags", "voltage_swells")


def entity(field: str, value: FieldValue) -> Entity:
    """Home Assistant's classes for a field; text (tariff, breaker state) gets none."""
    if not isinstance(value, float):
        return Entity(None, None, None)
    for suffix, found in _BY_SUFFIX:
        if field.endswith(suffix):
            if suffix == "_m3":
                kind = field.partition("_")[0]
                return Entity(_VOLUME_CLASSES.get(kind), found.state_class, found.unit)
            return found
    if field.startswith("power_factor"):
        return Entity("power_factor", "measurement", None)
    if field.startswith(_COUNTS):
        return Entity(None, "total_increasing", None)
    return Entity(None, "measurement", None)


def entity_name(field: str) -> str:
    """`energy_import_t1_kwh` → `Energy import T1`: the entity's own name, which Home Assistant
    shows after the device's."""
    words = field.split("_")
    if any(field.endswith(suffix) for suffix, _ in _BY_SUFFIX):
        words = words[:-1]
    words = [w.upper() if re.fullmatch(r"[lt]\d|q\d", w) else w for w in words]
    text = " ".join(words)
    return text[:1].upper() + text[1:]


# DLMS UA manufacturer codes (the header's first three letters) of meters with a P1 port.
_MANUFACTURERS = {
    "AUX": "Ningbo Sanxing (AUX)",
    "EST": "Sagemcom",
    "Ene": "Sagemcom",
    "ELS": "Elster",
    "ESY": "EasyMeter",
    "FLU": "Fluvius",
    "HLY": "Holley",
    "ISK": "Iskraemeco",
    "KAM": "Kamstrup",
    "KFM": "Kaifa",
    "KMP": "Kamstrup",
    "LGF": "Landis+Gyr",
    "SAG": "Sagemcom",
    "XMX": "Xemex",
}


def device(meter: str, header: str, equipment_id: str | None) -> Payload:
    """One device per meter: identified by its equipment id, make and model from the header
    (`ISK5\\2M550T-1012`: code `ISK`, model after the `\\`)."""
    code = header[:3]
    model = header.partition("\\")[2][1:].strip() if "\\" in header else header[5:].strip()
    found: Payload = {
        "identifiers": [f"p1_{topic_id(equipment_id or meter)}"],
        "name": f"P1 meter {meter}",
        "manufacturer": _MANUFACTURERS.get(code, _MANUFACTURERS.get(code.upper(), code or "?")),
    }
    if model:
        found["model"] = model
    return found


def state_fields(result: Result) -> dict[str, FieldValue]:
    """The readings of an accepted telegram by InfluxDB field name: `p1`'s and the M-Bus
    devices' (`gas_m3`); a second device of a kind gets its channel (`gas_2_m3`)."""
    assert result.telegram is not None
    fields = dict(result.fields)
    for point, mbus in zip(mbus_points(result.telegram, "_"), result.telegram.mbus, strict=False):
        for name, value in point.fields.items():
            if name in fields:
                kind, _, unit = name.rpartition("_")
                name = f"{kind}_{mbus.channel}_{unit}"
            fields[name] = value
    return fields


def state_message(result: Result, fields: Mapping[str, FieldValue]) -> Payload:
    """`{"meter_time": …, "repaired": …, <field>: value, …}`, meter time as ISO 8601 or null."""
    assert result.telegram is not None
    meter_time = result.telegram.meter_time
    return {
        "meter_time": meter_time.isoformat() if meter_time is not None else None,
        "repaired": result.status == "repaired",
        **fields,
    }


# Link health: (key in the link message, name, device_class, state_class, unit).
_LINK = (
    ("crc_failure_percent", "CRC failure rate", None, "measurement", "%"),
    ("repaired", "Repaired telegrams", None, "total_increasing", None),
    ("rejected", "Rejected frames", None, "total_increasing", None),
    ("last_telegram", "Last telegram", "timestamp", None, None),
)


def link_message(telegrams: Mapping[str, int], crc_failures: int, last: float | None) -> Payload:
    """The link's health since the agent started: frames by result, the share of them whose
    checksum failed on arrival, and when the last telegram was accepted (host time)."""
    frames = sum(telegrams.values())
    return {
        "valid": telegrams.get("valid", 0),
        "repaired": telegrams.get("repaired", 0),
        "rejected": telegrams.get("rejected", 0),
        "crc_failure_percent": round(100 * crc_failures / frames, 3) if frames else 0.0,
        "last_telegram": datetime.fromtimestamp(last, UTC).isoformat() if last else None,
    }


def _config(
    topics: Topics,
    meter: str,
    object_id: str,
    key: str,  # in the state or link message
    name: str,
    found: Entity,
    state_topic: str,
    owner: Payload,
    origin: Payload,
) -> tuple[str, Payload]:
    config: Payload = {
        "name": name,
        "unique_id": f"p1_{topic_id(meter)}_{topic_id(object_id)}",
        "state_topic": state_topic,
        "value_template": f"{{{{ value_json[{json.dumps(key)}] }}}}",
        "availability_topic": topics.status,
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": owner,
        "origin": origin,
    }
    if found.device_class:
        config["device_class"] = found.device_class
    if found.state_class:
        config["state_class"] = found.state_class
    if found.unit:
        config["unit_of_measurement"] = found.unit
    return topics.config(meter, object_id), config


def configs(
    topics: Topics,
    meter: str,
    fields: Mapping[str, FieldValue],
    owner: Payload,
    origin: Payload,
    *,
    link: bool,
) -> Iterator[tuple[str, Payload]]:
    """Discovery configs: one sensor per field (on the state topic), and with `link` the
    link-health sensors (on the link topic, as diagnostics)."""
    state = topics.meter(meter, "state")
    for key, value in fields.items():
        found = entity(key, value)
        yield _config(topics, meter, key, key, entity_name(key), found, state, owner, origin)
    if link:
        link_topic = topics.meter(meter, "link")
        for key, name, device_class, state_class, unit in _LINK:
            found = Entity(device_class, state_class, unit)
            topic, config = _config(
                topics, meter, f"link_{key}", key, name, found, link_topic, owner, origin
            )
            config["entity_category"] = "diagnostic"
            yield topic, config


def encode(payload: Payload) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
