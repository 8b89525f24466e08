"""Turning stored events into domain events faster than the library does.

:class:`OrjsonTranscoder` decodes with ``orjson`` and then revives the values
the library's transcodings stored (``{"_type_": ..., "_data_": ...}``) in one
walk over the decoded data, instead of calling a Python ``object_hook`` for
every JSON object as ``json`` does. It encodes exactly as the library's
:class:`~eventsourcing.persistence.JSONTranscoder` (stored bytes do not
change). Whatever ``orjson`` refuses but ``json`` accepts (``NaN``,
``1e400``, lone surrogates) or reads otherwise (an integer beyond 64 bits
becomes a float: any float of 9.2e18 or more sends the state there too) is
decoded by the library's decoder, so both give the same values for every
state the library's encoder writes. (Only hand-written JSON with a key twice,
whose first value is a broken transcoded value, would differ: ``json`` raises
on the value ``orjson`` skips.)

:class:`FastMapper` is the library's :class:`~eventsourcing.persistence.Mapper`
with a leaner :meth:`~FastMapper.to_domain_event`: it resolves the facts about
an event class (how to convert its originator id, its class version) once per
class and builds the same domain event objects.

ordersys applications on PostgreSQL use both unless ``TRANSCODER_TOPIC`` or
``MAPPER_TOPIC`` name others (see :class:`ordersys.persistence.recorders.Factory`).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from datetime import datetime
from decimal import Decimal
from typing import Any, cast
from uuid import UUID

import orjson
from eventsourcing.domain import DomainEventProtocol, TAggregateID
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    Mapper,
    MapperDeserialisationError,
    StoredEvent,
    Transcoding,
    UUIDAsHex,
    find_id_convertor,
)
from eventsourcing.utils import resolve_topic

_STRING_DECODERS: dict[type[Transcoding], Callable[[str], Any]] = {
    UUIDAsHex: UUID,
    DecimalAsStr: Decimal,
    DatetimeAsISO: datetime.fromisoformat,
}
_BIG = 9.2e18
"""orjson reads an integer beyond 64 bits (json: an int) as a float; every
such float is at least this large."""
_loads = orjson.loads
_dict = dict
_list = list
_float = float
_new = object.__new__
_set = object.__setattr__


class OrjsonTranscoder(JSONTranscoder):
    """The library's JSON transcoder, decoding with ``orjson``."""

    def __init__(self) -> None:
        super().__init__()
        self._string_decoders: dict[str, Callable[[str], Any]] = {}

    def register(self, transcoding: Transcoding) -> None:
        super().register(transcoding)
        # The library's own transcodings of strings, without the method call
        # (and the assertion that the data is a string, checked before).
        self._string_decoders[transcoding.name] = _STRING_DECODERS.get(
            type(transcoding), transcoding.decode
        )

    def decode(self, data: bytes) -> Any:
        try:
            obj = _loads(data)
            if type(obj) is not _dict:
                return self._revive(obj)
            # The common case inline: an event's state is an object whose
            # values are scalars or transcoded values such as {"_type_":
            # "decimal_str", "_data_": "19.99"}, whose data is a string with
            # nothing inside to revive.
            decoders = self._string_decoders
            for key, value in obj.items():
                kind = type(value)
                if kind is _dict:
                    if (
                        len(value) == 2
                        and type(value.get("_data_")) is str
                        and value.get("_type_") in decoders
                    ):
                        obj[key] = decoders[value["_type_"]](value["_data_"])
                    else:
                        obj[key] = self._revive(value)
                elif kind is _list:
                    obj[key] = self._revive(value)
                elif kind is _float and not -_BIG < value < _BIG:
                    raise _NotAsJsonReadsIt
            return self._decode_obj(obj) if len(obj) == 2 else obj
        except (orjson.JSONDecodeError, _NotAsJsonReadsIt):
            # What json reads and orjson refuses or reads otherwise; json
            # also raises what both refuse, as the library would.
            return super().decode(data)

    def _revive(self, obj: Any) -> Any:
        """What ``json``'s ``object_hook`` would have made of ``obj``: every
        JSON object, innermost first, passed to the library's ``_decode_obj``
        (which only changes objects of two keys)."""
        if type(obj) is _dict:
            for key, value in obj.items():
                kind = type(value)
                if kind is _dict or kind is _list:
                    # Same keys, new values: safe while iterating.
                    obj[key] = self._revive(value)
                elif kind is _float and not -_BIG < value < _BIG:
                    raise _NotAsJsonReadsIt
            return self._decode_obj(obj) if len(obj) == 2 else obj
        if type(obj) is _list:
            for index, value in enumerate(obj):
                kind = type(value)
                if kind is _dict or kind is _list:
                    obj[index] = self._revive(value)
                elif kind is _float and not -_BIG < value < _BIG:
                    raise _NotAsJsonReadsIt
        elif type(obj) is _float and not -_BIG < obj < _BIG:
            raise _NotAsJsonReadsIt
        return obj


class _NotAsJsonReadsIt(Exception):
    """orjson may have read this differently from json (a float at least as
    large as an integer orjson reads as a float, beyond 64 bits)."""


class FastMapper(Mapper[TAggregateID]):
    """The library's mapper, with the per-class work of
    :meth:`to_domain_event` done once per class."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._classes: dict[
            tuple[type[Any], type[Any]], tuple[Callable[[Any], Any], int]
        ] = {}

    def _class_facts(
        self, cls: type[Any], id_type: type[Any]
    ) -> tuple[Callable[[Any], Any], int]:
        facts = self._classes.get((cls, id_type))
        if facts is None:
            # The library's own look-up (cached), as its mapper does.
            convertor = find_id_convertor(cast(Hashable, cls), cast(Hashable, id_type))
            facts = (convertor, getattr(cls, "class_version", 1))
            self._classes[(cls, id_type)] = facts
        return facts

    def to_domain_event(
        self, stored_event: StoredEvent
    ) -> DomainEventProtocol[TAggregateID]:
        """Converts the given :class:`StoredEvent` to a domain event object,
        exactly as :meth:`Mapper.to_domain_event` does."""
        # resolve_topic is a dictionary look-up once a topic is known, and it
        # follows topics registered later (renamed classes).
        cls = resolve_topic(stored_event.topic)
        stored_state = stored_event.state
        try:
            if self.cipher:
                stored_state = self.cipher.decrypt(stored_state)
            if self.compressor:
                stored_state = self.compressor.decompress(stored_state)
            event_state: dict[str, Any] = self.transcoder.decode(stored_state)
        except Exception as e:
            msg = (
                f"Failed to deserialise state of stored event with "
                f"topic '{stored_event.topic}', "
                f"originator_id '{stored_event.originator_id}' and "
                f"originator_version {stored_event.originator_version}: {e}"
            )
            raise MapperDeserialisationError(msg) from e
        originator_id: UUID | str = stored_event.originator_id
        facts = self._classes.get((cls, type(originator_id)))
        if facts is None:
            facts = self._class_facts(cls, type(originator_id))
        convertor, class_version = facts
        event_state["originator_id"] = convertor(originator_id)
        event_state["originator_version"] = stored_event.originator_version
        from_version = event_state.pop("class_version", 1)
        while from_version < class_version:
            getattr(cls, f"upcast_v{from_version}_v{from_version + 1}")(event_state)
            from_version += 1
        domain_event = _new(cls)
        _set(domain_event, "__dict__", event_state)
        return cast(DomainEventProtocol[TAggregateID], domain_event)
