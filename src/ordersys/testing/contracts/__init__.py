"""The contract suite of each port, for adapters' own tests (pytest).

An adapter passes when a ``Test...`` subclass of its port's contract, which
implements the contract's one factory method, passes::

    from ordersys.testing.contracts.cache import ReadModelCacheContract

    class TestMyCache(ReadModelCacheContract):
        def cache(self) -> ReadModelCache:
            return MyCache(...)

- :mod:`ordersys.testing.contracts.event_store`: what every persistence
  adapter of an :class:`ordersys.Application` must do;
- :mod:`ordersys.testing.contracts.transport`: request/reply and topic events;
- :mod:`ordersys.testing.contracts.readmodels`: read-model stores;
- :mod:`ordersys.testing.contracts.records`: consumers' record stores;
- :mod:`ordersys.testing.contracts.cache`: read-model caches;
- :mod:`ordersys.testing.contracts.records`: consumers' record stores.
"""
