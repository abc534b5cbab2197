"""Corporate actions: the user's actions file, adjustment factors, detection of unadjusted jumps, and
the policy for jumps nobody confirmed.

* :mod:`.actions` reads and validates the file a user brings (``ticker, ex_date, kind, ratio, amount``).
* :mod:`.factors` turns actions into cumulative price and volume factors (CRSP/Qlib style) and applies
  them to raw closes and volumes.
* :mod:`.detect` finds persistent price jumps and proposes an action for each, with evidence.
* :mod:`.policy` runs all of it at ingest: confirmed actions are applied, suspects are masked (a
  series break), applied, or fail the run, as configured.
"""
