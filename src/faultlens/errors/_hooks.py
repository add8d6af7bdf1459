"""Hooks that capture exceptions nothing caught: in the main thread, threads, asyncio.

``faultlens.configure(capture_unhandled=True)`` installs :func:`sys.excepthook`
and :func:`threading.excepthook` wrappers, and the asyncio exception handler on
the running loop when it is called from inside one; :func:`install_asyncio_handler`
installs the handler on another loop (``asyncio.run`` makes a new loop: call it
first thing in your ``async def main()``); on Python 3.11 it also sets a task
factory so a failed task is reported with the correlation it ran in (3.12+
tasks tell it through ``Task.get_context()``).  Each hook

1. captures the exception as an ``error`` event (``mechanism`` says which hook,
   ``handled`` is false), in the context it escaped from when that can be found,
2. logs one structured ERROR line, ``unhandled exception``, on the logger
   ``faultlens.errors`` with the correlation id, the event id and the stack
   (unless an operation already logged that stack),
3. then calls the hook that was installed before it, so the interpreter's
   traceback on stderr, or another tool's hook, still runs.

``SystemExit``, ``KeyboardInterrupt`` and ``asyncio.CancelledError`` are passed
on without being captured: they end programs, they are not errors.  Installing
twice changes nothing; ``faultlens.shutdown()`` or ``configure()`` without
``capture_unhandled`` removes the hooks (a hook another tool has wrapped since
is switched off in place instead, so the other tool's chain stays intact).
A hook never raises because of faultlens.
"""

from __future__ import annotations

import contextvars
import functools
import sys
import threading
import weakref
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from faultlens._metrics import counters, report_once
from faultlens.context import RequestContext, _current, current_operation, use
from faultlens.errors._base import ConfigurationError
from faultlens.errors._capture import (
    CONTEXT_STAMP,
    captured_context,
    captured_event_id,
    record_exception,
)
from faultlens.logs import get_logger

if TYPE_CHECKING:
    import asyncio

__all__ = [
    "install_asyncio_handler",
    "install_unhandled_hooks",
    "uninstall_asyncio_handler",
    "uninstall_unhandled_hooks",
]

_log = get_logger("faultlens.errors")
_LOGGED_MARK = "__faultlens_logged__"  # set by operations on exceptions whose stack they logged
_NOT_ERRORS = (SystemExit, KeyboardInterrupt, GeneratorExit)
_lock = threading.RLock()


def _is_error(exc: object) -> bool:
    if not isinstance(exc, BaseException) or isinstance(exc, _NOT_ERRORS):
        return False
    asyncio = sys.modules.get("asyncio")
    return asyncio is None or not isinstance(exc, asyncio.CancelledError)


def report_unhandled(
    exc: BaseException,
    mechanism: str,
    *,
    context: RequestContext | None = None,
    operation: Any = None,
    ambient: bool = True,
    **fields: Any,
) -> str | None:
    """Capture ``exc`` as unhandled and log it once; return the event id.  Never raises.

    Without ``context``, the current context is used (unless ``ambient`` is
    false: the exception is known to come from outside any correlation), else
    the one ``exc`` was captured in or stamped with.
    """
    try:
        if context is None and ambient:
            context = _current.get() or captured_context(exc)
            if operation is None:
                operation = current_operation.get()
        event_id = record_exception(
            exc,
            fields=fields,
            mechanism=mechanism,
            handled=False,
            context=context,
            operation=operation,
            ambient=ambient,
        )
        event_id = event_id or captured_event_id(exc)
        _log_unhandled(exc, mechanism, event_id, context, fields, ambient=ambient)
    except Exception as failure:
        counters.incr("errors.hook_failures")
        report_once(
            "errors.hooks",
            f"reporting an unhandled exception failed inside faultlens "
            f"({type(failure).__name__}); counted in faultlens.stats()['errors.hook_failures']",
        )
        return None
    return event_id


def _log_unhandled(
    exc: BaseException,
    mechanism: str,
    event_id: str | None,
    context: RequestContext | None,
    fields: dict[str, Any],
    *,
    ambient: bool = True,
) -> None:
    try:
        logged = bool(getattr(exc, _LOGGED_MARK, False))
    except Exception:
        logged = False
    line: dict[str, Any] = {"mechanism": mechanism, **fields}
    if event_id is not None:
        line["event_id"] = event_id
    if logged:  # an operation logged this stack already: say what, not the stack again
        line["error_type"] = type(exc).__qualname__
    if context is not None and _current.get() is not context:
        with use(context):
            _log.error("unhandled exception", exc_info=None if logged else exc, **line)
    elif context is None and not ambient and _current.get() is not None:
        # From outside any correlation: the line must not carry the current one.
        token = _current.set(None)
        try:
            _log.error("unhandled exception", exc_info=None if logged else exc, **line)
        finally:
            _current.reset(token)
    else:
        _log.error("unhandled exception", exc_info=None if logged else exc, **line)


# --- sys.excepthook and threading.excepthook ----------------------------------------------


class _SysHook:
    """The :func:`sys.excepthook` faultlens installs; chains to ``previous``."""

    faultlens_hook = True

    def __init__(self, previous: Callable[..., Any]) -> None:
        self.previous = previous
        self.active = True

    def __call__(
        self, exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
    ) -> None:
        if self.active and _is_error(exc):
            report_unhandled(exc, "sys.excepthook")
        self.previous(exc_type, exc, tb)


class _ThreadHook:
    """The :func:`threading.excepthook` faultlens installs; chains to ``previous``."""

    faultlens_hook = True

    def __init__(self, previous: Callable[[Any], Any]) -> None:
        self.previous = previous
        self.active = True

    def __call__(self, args: Any) -> None:
        exc = args.exc_value
        if self.active and _is_error(exc):
            thread = args.thread
            report_unhandled(exc, "threading.excepthook", thread=getattr(thread, "name", None))
        self.previous(args)


_sys_hook: _SysHook | None = None
_thread_hook: _ThreadHook | None = None


def install_unhandled_hooks() -> None:
    """Install the ``sys``/``threading`` hooks, and the asyncio one on the running loop.

    Idempotent.  The running loop is only looked for when asyncio is already
    imported (faultlens does not import it for you).
    """
    global _sys_hook, _thread_hook
    with _lock:
        if _sys_hook is None or sys.excepthook is not _sys_hook:
            _switch_off(_sys_hook)
            _sys_hook = _SysHook(sys.excepthook)
            sys.excepthook = _sys_hook
        if _thread_hook is None or threading.excepthook is not _thread_hook:
            _switch_off(_thread_hook)
            _thread_hook = _ThreadHook(threading.excepthook)
            threading.excepthook = _thread_hook
    asyncio = sys.modules.get("asyncio")
    if asyncio is not None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not called from inside a loop
            return
        install_asyncio_handler(loop)


def _switch_off(hook: _SysHook | _ThreadHook | None) -> None:
    if hook is not None:
        hook.active = False


def uninstall_unhandled_hooks() -> None:
    """Remove every hook faultlens installed (also the asyncio handlers); idempotent."""
    global _sys_hook, _thread_hook
    with _lock:
        if _sys_hook is not None:
            _sys_hook.active = False
            if sys.excepthook is _sys_hook:
                sys.excepthook = _sys_hook.previous
            _sys_hook = None
        if _thread_hook is not None:
            _thread_hook.active = False
            if threading.excepthook is _thread_hook:
                threading.excepthook = _thread_hook.previous
            _thread_hook = None
    uninstall_asyncio_handler()


# --- asyncio --------------------------------------------------------------------------------


class _AsyncioHandler:
    """A loop exception handler that captures, logs, then calls the previous handler."""

    faultlens_hook = True

    def __init__(self, previous: Callable[..., Any] | None) -> None:
        self.previous = previous
        self.active = True

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if self.active and _is_error(exc):
            assert isinstance(exc, BaseException)
            fields: dict[str, Any] = {}
            message = context.get("message")
            if isinstance(message, str) and message:
                fields["asyncio_message"] = message
            # Who the exception belongs to, most precise first: the context it was
            # captured in or stamped with (the innermost scope it escaped), then the
            # contextvars of the task or callback that failed.  A task's exception is
            # reported when the task is collected, in whatever context is current
            # then, so that one is used only when the task's own is unknown.
            request_ctx = captured_context(exc)
            run: Any = None
            known = request_ctx is not None
            if request_ctx is None:
                request_ctx, run, known = _origin(context)
            report_unhandled(
                exc,
                "asyncio",
                context=request_ctx,
                operation=run,
                ambient=not known,
                **fields,
            )
        if self.previous is not None:
            self.previous(loop, context)
        else:
            loop.default_exception_handler(context)


def _origin(context: dict[str, Any]) -> tuple[RequestContext | None, Any, bool]:
    """The faultlens context and operation of the task or callback that failed.

    The third value says whether the contextvars of the failed task or callback
    were found at all: when they were and hold no faultlens context, it ran
    outside any correlation.
    """
    found = False
    for key in ("task", "future", "handle"):
        source = context.get(key)
        if source is None:
            continue
        # Task.get_context() is 3.12+ (on 3.11 faultlens's task factory gives its tasks
        # one); callbacks (Handle) keep theirs in _context.
        getter = getattr(source, "get_context", None)
        try:
            cv_context = getter() if getter is not None else getattr(source, "_context", None)
        except Exception:
            cv_context = None
        if isinstance(cv_context, contextvars.Context):
            found = True
            request_ctx = cv_context.get(_current)
            if request_ctx is not None:
                return request_ctx, cv_context.get(current_operation), True
    return None, None, found


# --- Python 3.11: a task factory that keeps each task's contextvars ------------------------
# The C Task of 3.11 hides the contextvars.Context it runs in (Task.get_context() is 3.12+),
# so the handler could not tell which correlation a failed task belonged to.  The factory
# creates tasks of a Task subclass that keeps the Context it was given: the handler reads
# it through the same get_context() as on 3.12.  The class is named ``Task`` so the reprs
# in asyncio's own messages (``<Task finished ...>``) are unchanged.


@functools.cache
def _context_task_type() -> type[Any]:
    import asyncio

    class Task(asyncio.Task[Any]):
        """An asyncio Task that answers get_context() on Python 3.11."""

        __slots__ = ("_faultlens_context",)
        _faultlens_context: contextvars.Context

        def get_context(self) -> contextvars.Context:
            """The contextvars.Context the task runs in (as Task.get_context() on 3.12+)."""
            return self._faultlens_context

    return Task


def _tasks_hide_their_context() -> bool:
    import asyncio

    return not hasattr(asyncio.Task, "get_context")


class _TaskFactory:
    """The task factory faultlens installs on 3.11; chains to ``previous``.

    Without a previous factory it creates the tasks itself, keeping their
    Context.  With one, it lets that factory create the task and, when the task
    was created inside a correlation, stamps the task's exception with that
    correlation when it finishes (unless a scope inside the task stamped it
    already) -- the handler reads the stamp.
    """

    faultlens_hook = True

    def __init__(self, previous: Callable[..., Any] | None) -> None:
        self.previous = previous
        self.active = True

    def __call__(
        self, loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any
    ) -> asyncio.Future[Any]:
        previous = self.previous
        if previous is None:
            context = kwargs.pop("context", None)
            if context is None:
                context = contextvars.copy_context()
            task = _context_task_type()(coro, loop=loop, context=context, **kwargs)
            # Set after __init__: a Python __init__ would triple the factory's cost.  The
            # task's first step runs later, from the loop.
            task._faultlens_context = context
            return task  # type: ignore[no-any-return]
        task = previous(loop, coro, **kwargs)
        if self.active and getattr(task, "get_context", None) is None:
            context = kwargs.get("context")
            origin = _current.get() if context is None else context.get(_current)
            if origin is not None:
                task.add_done_callback(_ExceptionStamp(origin))
        return task  # type: ignore[no-any-return]


class _ExceptionStamp:
    """A done callback: stamp a failed task's exception with the task's correlation."""

    __slots__ = ("context",)

    def __init__(self, context: RequestContext) -> None:
        self.context = context

    def __call__(self, task: Any) -> None:
        try:
            if task.cancelled():
                return
            # Reading _exception, unlike task.exception(), leaves the exception
            # "never retrieved", so asyncio still reports it to the handler.
            exc = getattr(task, "_exception", None)
            if isinstance(exc, BaseException) and not hasattr(exc, CONTEXT_STAMP):
                setattr(exc, CONTEXT_STAMP, self.context)
        except Exception:  # an exception that refuses attributes; a foreign task type
            counters.incr("errors.hook_failures")


_loops: weakref.WeakKeyDictionary[Any, tuple[_AsyncioHandler, _TaskFactory | None]] = (
    weakref.WeakKeyDictionary()
)


def install_asyncio_handler(loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Capture exceptions that reach ``loop``'s exception handler (default: the running loop).

    That is where asyncio reports a task whose exception was never retrieved and
    a callback that raised.  The handler that was set before is called after
    faultlens's (or the loop's default one).  On Python 3.11 it also sets a task
    factory (chaining the loop's previous one) so a failed task is reported with
    the correlation it ran in; 3.12+ tasks tell it themselves.  Idempotent per
    loop; removed by :func:`uninstall_asyncio_handler` and
    ``faultlens.shutdown()``.  Without ``loop`` and outside a running loop it
    raises :class:`~faultlens.errors.ConfigurationError`.
    """
    if loop is None:
        import asyncio

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise ConfigurationError(
                "install_asyncio_handler() without loop= must be called from inside a "
                "running event loop (first thing in your async main), or pass loop=..."
            ) from None
    with _lock:
        current = loop.get_exception_handler()
        if isinstance(current, _AsyncioHandler) and current.active:
            return
        handler = _AsyncioHandler(current)
        factory: _TaskFactory | None = None
        if _tasks_hide_their_context():
            existing = loop.get_task_factory()
            if isinstance(existing, _TaskFactory) and existing.active:
                factory = existing
            else:
                factory = _TaskFactory(existing)
                loop.set_task_factory(factory)
        loop.set_exception_handler(handler)
        _loops[loop] = (handler, factory)


def uninstall_asyncio_handler(loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Remove faultlens's handler (and task factory) from ``loop`` (default: every loop).

    Idempotent.  A handler or factory another tool has wrapped since is switched
    off in place, so that tool's chain keeps working.
    """
    with _lock:
        if loop is None:
            targets = list(_loops.items())
        else:
            found = _loops.get(loop)
            targets = [] if found is None else [(loop, found)]
        for target, (handler, factory) in targets:
            handler.active = False
            try:
                if target.get_exception_handler() is handler:
                    target.set_exception_handler(handler.previous)
                if factory is not None:
                    factory.active = False
                    if target.get_task_factory() is factory:
                        target.set_task_factory(factory.previous)
            except Exception:  # a closed loop
                counters.incr("errors.hook_failures")
            _loops.pop(target, None)
