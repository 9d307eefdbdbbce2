"""A results directory kept safe: its store checked when opened, one writer at a time, a damaged store
diagnosed (``store check``) and rebuilt from what is intact (``store rebuild``).

- :mod:`~harness.storage.lock`: the directory's lock file, one writing process at a time;
- :mod:`~harness.storage.claim`: what ``run`` does before writing into ``--out`` (resume, overwrite);
- :mod:`~harness.storage.health`: a store's integrity when it is opened, and the advice for a damaged one;
- :mod:`~harness.storage.full`: writes that fail for lack of space, told as such;
- :mod:`~harness.storage.salvage`: the rows of a damaged store that still read;
- :mod:`~harness.storage.check`: every finding about a results directory (``store check``);
- :mod:`~harness.storage.rebuild`: a new store from results.json, the saved models and the salvage.
"""
