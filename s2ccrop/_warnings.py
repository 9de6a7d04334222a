"""Warnings noted per thread. Inside `noted(notes)` the warnings this thread raises go into `notes`
(their text) instead of stderr; other threads' warnings are unaffected. It changes no warning filter
and installs its hook once, where `warnings.catch_warnings` swaps the process-wide filters and hook in
and out for every thread at once: decode and write threads noting a photo's warnings while the model
loads on another thread would then lose them, or print them without the photo's name."""

from __future__ import annotations

import contextlib
import threading
import warnings

_sink = threading.local()  # .block: this thread's innermost noted() block, (notes, categories, outer), or None
_lock = threading.Lock()


def note(message, category) -> bool:
    """Take a warning into this thread's noted() blocks: the innermost one whose categories it is of
    notes it; none of them: dropped. False when this thread is in no block (it is shown as usual)."""
    block = getattr(_sink, "block", None)
    if block is None:
        return False
    while block is not None:
        notes, categories, block = block
        if issubclass(category, categories):
            notes.append(str(message))
            break
    return True


def _show(message, category, filename, lineno, file=None, line=None) -> None:
    if not note(message, category):
        _show.previous(message, category, filename, lineno, file, line)


_show.previous = warnings.showwarning


@contextlib.contextmanager
def noted(notes: list, categories: "type[Warning] | tuple[type[Warning], ...]" = Warning):
    """Warnings of `categories` that this thread raises in the block are appended to `notes`; its other
    warnings go to the enclosing block, and are dropped where none takes them. `noted([])` silences
    this thread's warnings."""
    with _lock:
        if warnings.showwarning is not _show:
            _show.previous = warnings.showwarning
            warnings.showwarning = _show
    outer = getattr(_sink, "block", None)
    _sink.block = (notes, categories, outer)
    try:
        yield notes
    finally:
        _sink.block = outer
