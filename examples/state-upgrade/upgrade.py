"""Upgrades a savepoint of the counter from version 1 (``count``, an io.statefun.types/int) to version 2
(``tally``, a JSON com.example/Tally)::

    pystatefun savepoint transform v1.savepoint v2.savepoint --with upgrade:upgrade
"""

from pystatefun.savepoints.transform import SavedState


def upgrade(address, states):
    if address.typename == "com.example/counter" and "count" in states:
        count = states.pop("count")
        # the last amount added is not known: version 1 did not keep it
        states["tally"] = SavedState.of_json("com.example/Tally", {"count": count.as_int(), "last": None},
                                             count.expire_at)
    return states
