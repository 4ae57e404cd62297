"""Per-stage timers: GL timer queries where available, else wall clock (with a sync per stage).

    timer = StageTimer(ctx, mode="auto")      # ctx: a moderngl context, or None for CPU/torch work
    with timer.stage("project"):
        ...
    timer.results()                           # {"project": 1.23, ...} milliseconds

"wall" calls ctx.finish() at the end of each stage so the GPU's work is charged to the stage
that issued it; "gl" uses GL_TIME_ELAPSED queries (no stall inside the frame, one at the end);
"off" measures nothing. "auto" picks "wall" on software rasterizers (whose queries measure the
dispatch call, not the work) and "gl" elsewhere.
"""

from __future__ import annotations

import time
from contextlib import contextmanager


class StageTimer:
    """Accumulates milliseconds per named stage; a stage entered twice adds up."""

    def __init__(self, ctx=None, mode: str = "wall", query_pool: dict | None = None):
        if mode == "auto":
            from .gl_backend.context import is_software

            mode = "wall" if ctx is None or is_software(ctx) else "gl"
        if mode == "gl" and ctx is None:
            mode = "wall"
        self.ctx = ctx
        self.mode = mode
        self._ms: dict[str, float] = {}
        self._pending: list[tuple[str, object]] = []
        # Queries are GL objects: reuse them across frames (pool owned by the caller) so timing
        # a frame does not allocate.
        self._pool = query_pool if query_pool is not None else {}
        self._used: dict[str, int] = {}

    def _query(self, name: str):
        k = self._used.get(name, 0)
        self._used[name] = k + 1
        key = (name, k)
        q = self._pool.get(key)
        if q is None:
            q = self._pool[key] = self.ctx.query(time=True)
        return q

    @contextmanager
    def stage(self, name: str):
        if self.mode == "off":
            yield
            return
        if self.mode == "gl":
            q = self._query(name)
            with q:
                yield
            self._pending.append((name, q))
            return
        t0 = time.perf_counter()
        try:
            yield
        finally:
            if self.ctx is not None:
                self.ctx.finish()
            self._add(name, (time.perf_counter() - t0) * 1e3)

    def add(self, name: str, ms: float) -> None:
        """Charge `ms` to a stage measured elsewhere."""
        self._add(name, ms)

    def _add(self, name: str, ms: float) -> None:
        self._ms[name] = self._ms.get(name, 0.0) + ms

    def results(self) -> dict[str, float]:
        """Milliseconds per stage (reads pending GL queries, which waits for the GPU)."""
        for name, q in self._pending:
            self._add(name, q.elapsed / 1e6)
        self._pending.clear()
        return dict(self._ms)


def release_query_pool(pool: dict) -> None:
    for q in pool.values():
        try:
            q.release()
        except Exception:  # noqa: BLE001 - best effort at teardown
            pass
    pool.clear()
