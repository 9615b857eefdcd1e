"""One background job of a widget: run it in a napari worker thread, bring its progress reports
to the main thread, let the user cancel it, and turn the errors a user can fix into one line.

A job is ``job(report, cancelled) -> result``: ``report(value)`` may be called from the worker
thread (it reaches ``on_progress`` in the main thread, through superqt's ``ensure_main_thread``),
and the job checks the ``cancelled`` event where it can stop (raising
:class:`~unetkit.napari.jobs.Cancelled`). ``on_done`` receives a :class:`Outcome` in the main
thread. Bad input (:class:`~unetkit.errors.UnetkitError`) becomes ``Outcome.error``, one line; any
other exception (a bug, or the machine running out of memory) too, shown once like the others,
and its traceback goes to the ``unetkit`` logger (the terminal napari was started from) for a bug
report.
"""

from __future__ import annotations

import functools
import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable, Optional

from superqt.utils import ensure_main_thread

from ..errors import UnetkitError
from .jobs import Cancelled


@dataclass
class Outcome:
    """How a job ended: ``result`` when it finished, else ``cancelled`` or ``error`` (one line)."""

    result: Any = None
    cancelled: Optional[str] = None
    error: Optional[str] = None


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (the first line, whitespace collapsed)."""
    text = str(exc).strip().splitlines()
    return " ".join(text[0].split()) if text else type(exc).__name__


def tell(status: Any, message: str, error: bool = False) -> None:
    """Show one line in a widget's status label and as a napari notification: an error as an
    error (no traceback), a finished step as information; a line ending in "…" (work under
    way) only in the label."""
    from napari.utils.notifications import show_error, show_info

    status.value = message
    if error:
        show_error(message)
    elif not message.endswith("…"):
        show_info(message)


class BackgroundTask:
    """At most one job at a time for a widget (module docstring).

    Args:
        on_progress: called in the main thread with each value the job reports.
        on_done: called in the main thread with the :class:`Outcome`.
        owner: the widget's Qt widget: when it is destroyed (its dock removed, the viewer
            closed), the running job is cancelled and its progress and outcome go nowhere
            (the widgets they would update are gone).
    """

    def __init__(
        self,
        on_progress: Callable[[Any], None],
        on_done: Callable[[Outcome], None],
        owner: Any = None,
    ):
        self._on_progress = on_progress
        self._to_main_thread = ensure_main_thread(self._progress)
        self._on_done = on_done
        self.cancelled = threading.Event()
        self.worker = None
        self.closed = False
        self._owner = owner
        self._watched: set = set()  # the Qt objects whose destruction ends the job
        self._watch(owner)

    def _watch(self, widget: Any) -> None:
        """Cancel the job when ``widget`` or any of its ancestors is destroyed: napari removes a
        dock by deleting the dock and unparenting the widget inside, which lives on."""
        while widget is not None and hasattr(widget, "destroyed"):
            key = id(widget)
            if key not in self._watched:
                self._watched.add(key)
                widget.destroyed.connect(functools.partial(self._owner_gone, key))
            widget = widget.parent() if hasattr(widget, "parent") else None

    def _owner_gone(self, key: int, *_) -> None:
        """A watched widget was destroyed: the running job (if any) is cancelled and reports
        nowhere. A widget docked again later starts its next job afresh (:meth:`start`)."""
        self._watched.discard(key)  # its id may name a new dock later
        if self.busy:
            self.closed = True
            self.cancel()

    def _report(self, value: Any) -> None:
        """A job's progress report, from its worker thread: to the widget in the main thread,
        unless the widget or the application is gone (a report would then crash the process)."""
        from qtpy.QtCore import QCoreApplication

        if not self.closed and QCoreApplication.instance() is not None:
            self._to_main_thread(value)

    def _progress(self, value: Any) -> None:
        if not self.closed:
            self._on_progress(value)

    @property
    def busy(self) -> bool:
        """Whether a job is running (until its outcome has been handled)."""
        return self.worker is not None

    def start(self, job: Callable[[Callable[[Any], None], threading.Event], Any]) -> None:
        """Run ``job(report, cancelled)`` in a worker thread."""
        from napari.qt.threading import create_worker

        if self.busy:
            raise RuntimeError("a job is already running")
        self._watch(self._owner)  # docked now (it may not have been when the task was made)
        self.closed = False
        self.cancelled = threading.Event()
        cancelled, report = self.cancelled, self._report

        def run() -> Outcome:
            try:
                return Outcome(result=job(report, cancelled))
            except Cancelled as exc:
                return Outcome(cancelled=one_line(exc))
            except UnetkitError as exc:
                return Outcome(error=one_line(exc))

        # errors are this task's to show (one line in the widget and one notification), not
        # also re-raised into napari's traceback dialog
        self.worker = create_worker(run, _start_thread=False, _ignore_errors=True)
        self.worker.returned.connect(self._done)
        self.worker.errored.connect(self._failed)
        self.worker.start()

    def cancel(self) -> None:
        """Ask the running job to stop (it stops at its next check)."""
        self.cancelled.set()

    def _failed(self, exc: BaseException) -> None:
        logging.getLogger("unetkit").error(
            "napari job failed", exc_info=(type(exc), exc, exc.__traceback__)
        )
        self._done(Outcome(error=f"{type(exc).__name__}: {one_line(exc)}"))

    def _done(self, outcome: Outcome) -> None:
        self.worker = None
        if not self.closed:
            self._on_done(outcome)
