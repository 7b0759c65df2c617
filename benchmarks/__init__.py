"""The benchmark harness (``make bench`` = ``python -m benchmarks.run``).

Modules: ``data`` (synthetic contacts in DuckDB SQL), ``ours`` (the package's columnar path),
``baseline`` (the competent per-row Python way) and ``vectorized`` (pyarrow.compute + orjson),
``stats`` (wall and CPU time of a pass), ``throughput`` (the three paths on the same batches),
``stream`` (one real dlt sync in a child process, reporting its own memory), ``sync`` (the
parent side of those syncs, with the emulator), ``machine``, ``report``, ``chart`` and ``run``.
Every figure is a median of several runs; every speed comparison is a ratio against a
baseline measured in the same run, so a busy machine moves both sides alike.
"""
