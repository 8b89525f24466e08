"""ordersys' mapper (orjson, per-class facts) makes exactly the domain events the
library's mapper makes, from the same stored events; and it is what ordersys
applications on PostgreSQL use unless told otherwise."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from eventsourcing.domain import Snapshot
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    Mapper,
    MapperDeserialisationError,
    StoredEvent,
    UUIDAsHex,
)
from eventsourcing.utils import get_topic
from hypothesis import given, settings
from hypothesis import strategies as st

from ordersys import Aggregate, Application, event
from ordersys.persistence.mapper import FastMapper, OrjsonTranscoder
from ordersys.settings import Settings


def _registered(transcoder: JSONTranscoder) -> JSONTranscoder:
    for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
        transcoder.register(transcoding)
    return transcoder


LIBRARY: Mapper[Any] = Mapper(transcoder=_registered(JSONTranscoder()))
ORDERSYS: Mapper[Any] = FastMapper(transcoder=_registered(OrjsonTranscoder()))


class Shipment(Aggregate):
    @event("Created")
    def __init__(
        self,
        reference: uuid.UUID,
        value: Decimal,
        due: datetime,
        lines: list[Any],
        notes: dict[str, Any],
    ) -> None:
        self.reference = reference
        self.value = value
        self.due = due
        self.lines = lines
        self.notes = notes
        self.stops: list[Any] = []

    @event("Rerouted")
    def reroute(self, stops: list[Any], at: datetime) -> None:
        self.stops = stops
        self.rerouted_at = at

    @event("Revalued")
    def revalue(self, value: Decimal, reason: str | None) -> None:
        self.value = value
        self.reason = reason


class Parcel(Aggregate):
    @event("Registered")
    def __init__(self, weight: float, owner: uuid.UUID) -> None:
        self.weight = weight
        self.owner = owner

    @event("Weighed")
    def weigh(self, weight: float, readings: list[float]) -> None:
        self.weight = weight
        self.readings = readings


class Labelled(Aggregate):
    """An event class at version 2 reading states stored at version 1."""

    class Created(Aggregate.Created):
        class_version = 2

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["label"] = "(none)"

    @event(Created)
    def __init__(self, label: str) -> None:
        self.label = label


def outcome(mapper: Mapper[Any], stored: StoredEvent) -> tuple[str, Any]:
    """What ``mapper`` makes of ``stored``: the event's class and attributes
    (by ``repr``, which tells ``Decimal('1')`` from ``1`` and ``1.0``), or the
    class of the exception it raises."""
    try:
        domain_event = mapper.to_domain_event(stored)
    except Exception as e:
        return ("raises", type(e))
    return (type(domain_event).__qualname__, repr(vars(domain_event)))


scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**63, max_value=2**80)  # beyond orjson's integers
    | st.floats(allow_nan=False)
    | st.text()
    | st.uuids()
    | st.decimals(allow_nan=False)
    | st.datetimes(timezones=st.sampled_from([None, UTC, timezone(timedelta(hours=5))]))
)
# Keys that look like a transcoded value's, so that user data shaped like one
# is treated alike too.
keys = st.sampled_from(["_type_", "_data_", "a", "b\\u0041", "é"]) | st.text()
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4)
    ),
    max_leaves=12,
)
identifiers = st.dictionaries(st.text(), values, max_size=3)


@settings(max_examples=300, deadline=None)
@given(
    reference=st.uuids(),
    value=st.decimals(allow_nan=False, allow_infinity=False),
    due=st.datetimes(timezones=st.sampled_from([None, UTC])),
    lines=st.lists(values, max_size=4),
    notes=identifiers,
    stops=st.lists(values, max_size=3),
    at=st.datetimes(),
    new_value=st.decimals(allow_nan=False, allow_infinity=False),
    reason=st.none() | st.text(),
    weight=st.floats(allow_nan=False, allow_infinity=False),
    readings=st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=3),
)
def test_events_and_snapshots_of_several_classes_map_to_the_same_domain_events(
    reference: uuid.UUID,
    value: Decimal,
    due: datetime,
    lines: list[Any],
    notes: dict[str, Any],
    stops: list[Any],
    at: datetime,
    new_value: Decimal,
    reason: str | None,
    weight: float,
    readings: list[float],
) -> None:
    shipment = Shipment(reference, value, due, lines, notes)
    shipment.reroute(stops, at)
    shipment.revalue(new_value, reason)
    parcel = Parcel(weight, reference)
    parcel.weigh(weight * 2, readings)
    events = [*shipment.collect_events(), *parcel.collect_events()]
    events += [Snapshot.take(shipment), Snapshot.take(parcel)]

    for domain_event in events:
        stored = LIBRARY.to_stored_event(domain_event)
        assert ORDERSYS.to_stored_event(domain_event) == stored
        expected = outcome(LIBRARY, stored)
        assert outcome(ORDERSYS, stored) == expected
        if expected[0] != "raises":  # user data shaped like a transcoded value
            made = ORDERSYS.to_domain_event(stored)
            assert type(made) is type(domain_event)
            assert made == LIBRARY.to_domain_event(stored)


@settings(max_examples=500, deadline=None)
@given(values)
def test_any_stored_value_decodes_to_the_same_value(value: Any) -> None:
    data = LIBRARY.transcoder.encode({"value": value})

    for state in (data, data.replace(b'"_type_"', b'"\\u005ftype_"')):
        stored = StoredEvent(uuid.uuid4(), 1, get_topic(Parcel.Weighed), state)
        assert outcome(ORDERSYS, stored) == outcome(LIBRARY, stored)


@pytest.mark.parametrize(
    "state",
    [
        b'{"weight": NaN, "readings": [Infinity, -Infinity]}',
        b'{"weight": 1e400, "readings": [123456789012345678901234567890]}',
        b'{"weight": 1, "readings": ["\\ud800"]}',
        b'{"weight": {"_type_": "unknown", "_data_": "1"}, "readings": []}',
        b'{"weight": {"_type_": ["a"], "_data_": "1"}, "readings": []}',
        b'{"weight": {"_type_": "decimal_str", "_data_": 7}, "readings": []}',
        b'{"weight": {"_type_": "decimal_str"}, "readings": []}',
        b'{"_type_": "decimal_str", "_data_": "2.5"}',
        b'[{"_type_": "uuid_hex", "_data_": "00000000000000000000000000000001"}]',
        b'{"weight": 1, "readings": [{"_type_": "datetime_iso", "_data_": "x"}]}',
        b'{"weight": 1,',
        b"\xff",
    ],
)
def test_odd_and_broken_states_give_the_same_result(state: bytes) -> None:
    stored = StoredEvent(uuid.uuid4(), 1, get_topic(Parcel.Weighed), state)

    assert outcome(ORDERSYS, stored) == outcome(LIBRARY, stored)


def test_an_older_class_version_is_upcast_alike() -> None:
    stored = StoredEvent(
        originator_id=uuid.uuid4(),
        originator_version=1,
        topic=get_topic(Labelled.Created),
        state=LIBRARY.transcoder.encode(
            {"timestamp": datetime.now(UTC), "originator_topic": get_topic(Labelled)}
        ),
    )

    assert outcome(ORDERSYS, stored) == outcome(LIBRARY, stored)
    assert ORDERSYS.to_domain_event(stored).label == "(none)"  # type: ignore[attr-defined]


def test_string_originator_ids_are_converted_alike() -> None:
    parcel = Parcel(1.5, uuid.uuid4())
    stored = LIBRARY.to_stored_event(parcel.collect_events()[0])
    as_text = StoredEvent(str(stored.originator_id), 1, stored.topic, stored.state)

    assert outcome(ORDERSYS, as_text) == outcome(LIBRARY, as_text)
    assert ORDERSYS.to_domain_event(as_text).originator_id == parcel.id


def test_an_unknown_transcoding_is_reported_as_the_library_reports_it() -> None:
    stored = StoredEvent(
        uuid.uuid4(),
        1,
        get_topic(Parcel.Weighed),
        b'{"w": {"_type_": "x", "_data_": 1}}',
    )

    with pytest.raises(MapperDeserialisationError, match="is not deserializable"):
        ORDERSYS.to_domain_event(stored)


class Shipping(Application):
    aggregate_types = (Shipment, Parcel)


def test_ordersys_applications_on_postgres_use_the_ordersys_mapper(
    pg_settings: Settings,
) -> None:
    app = Shipping(pg_settings)
    try:
        shipment = Shipment(
            uuid.uuid4(), Decimal("9.90"), datetime.now(UTC), [1, "two"], {}
        )
        app.write(shipment)

        assert type(app.mapper) is FastMapper
        assert type(app.mapper.transcoder) is OrjsonTranscoder
        assert app.get(Shipment, shipment.id).value == Decimal("9.90")
        with app.recorder.subscribe(gt=0) as subscription:
            made = app.mapper.to_domain_event(next(iter(subscription)))
        assert made == LIBRARY.to_domain_event(
            app.recorder.select_notifications(start=None, limit=1)[0]
        )
    finally:
        app.close()


def test_a_mapper_topic_or_the_stock_event_store_keeps_the_library_mapper(
    pg_settings: Settings,
) -> None:
    stock = Shipping(pg_settings.model_copy(update={"event_store": "stock"}))
    named = Shipping(
        pg_settings,
        env={
            "MAPPER_TOPIC": get_topic(Mapper),
            "TRANSCODER_TOPIC": get_topic(JSONTranscoder),
        },
    )
    try:
        for app in (stock, named):
            assert type(app.mapper) is Mapper
            assert type(app.mapper.transcoder) is JSONTranscoder
    finally:
        stock.close()
        named.close()
