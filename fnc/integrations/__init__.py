"""Adapters that let other libraries use fnc-reid models.

- :mod:`fnc.integrations.boxmot`: ``AppearanceModel``, an appearance (re-ID) model for boxmot's
  trackers (``BotSort(reid_model=AppearanceModel(...))``).

Nothing here imports the library it adapts: an adapter only implements the interface that
library calls, so fnc-reid carries none of its dependencies (or its license).
"""
