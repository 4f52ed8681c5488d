"""TEMPORARY diagnostic (not to be committed)."""
import json
import os
import sys
import time

from qgis.PyQt.QtCore import QTimer

from bfe_plugin import tasks

from .conftest import wait_for
from .test_dock import _quick_training, _select


def _profiled(monkeypatch, log):
    orig = tasks.CoreTask.run

    def run(self):
        stack = []

        def prof(frame, event, arg):
            now = time.monotonic()
            if event in ("call", "c_call"):
                name = (f"{frame.f_code.co_filename.split('/')[-1]}:{frame.f_code.co_name}"
                        if event == "call" else
                        f"C {getattr(arg, '__module__', '')}.{getattr(arg, '__qualname__', arg)}"
                        f" <- {frame.f_code.co_filename.split('/')[-1]}:{frame.f_lineno}")
                stack.append((name, now))
            elif event in ("return", "c_return", "c_exception") and stack:
                name, t0 = stack.pop()
                if now - t0 > 0.05:
                    log.append((t0, now, len(stack), name))
        sys.setprofile(prof)
        try:
            return orig(self)
        finally:
            sys.setprofile(None)
    monkeypatch.setattr(tasks.CoreTask, "run", run)


def test_diag(dock, layers, monkeypatch):
    raster, buildings = layers
    _select(dock, raster, buildings)
    _quick_training(dock)
    log, beats, marks = [], [], []
    if os.environ.get("DIAG_PROFILE"):
        _profiled(monkeypatch, log)
    last = [time.monotonic()]

    def beat():
        now = time.monotonic()
        beats.append((last[0], now))
        last[0] = now
    timer = QTimer()
    timer.timeout.connect(beat)
    timer.start(20)
    for name, button in (("finetune", dock.finetune_button), ("extract", dock.extract_button)):
        t0 = time.monotonic()
        button.click()
        marks.append((name, t0, time.monotonic()))
        wait_for(lambda: dock.task is None, timeout=300)
        marks.append((name + " done", time.monotonic(), time.monotonic()))
    timer.stop()
    T0 = marks[0][1]
    print()
    for m in marks:
        print(f"MARK {m[0]} {m[1]-T0:.3f}..{m[2]-T0:.3f}")
    for a, b in beats:
        if b - a > 0.1:
            print(f"GAP {a-T0:.3f}..{b-T0:.3f} = {b-a:.3f}")
            hits = [e for e in log if e[0] < b and e[1] > a and 'importlib' not in e[3]
                    and 'builtins.exec' not in e[3]]
            hits.sort(key=lambda e: -e[2])
            for t0, t1, d, name in hits[:6] + [h for h in hits if h[2] < 12][-8:]:
                print(f"    {t0-T0:.3f}..{t1-T0:.3f} ({t1-t0:.3f}) d{d} {name}")
    print("MAXGAP", max(b - a for a, b in beats))
