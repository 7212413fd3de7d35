"""The runtime's kernel.log: what the runtime puts up with is written there at DEBUG, nothing at
the default level, and never to the notebook's root logger."""

import logging
import os
import stat

import pytest

from pyspark_kernel.runtime import log, progress


@pytest.fixture
def package_logger():
    """The runtime package's logger, as it was before the test."""
    logger = logging.getLogger(log.PACKAGE)
    handlers, level, propagate = list(logger.handlers), logger.level, logger.propagate
    yield logger
    for handler in logger.handlers:
        if handler not in handlers:
            logger.removeHandler(handler)
            handler.close()
    logger.setLevel(level)
    logger.propagate = propagate
    log._handler = None


class SessionGone:
    """A Spark Connect session that has gone with the cell."""

    def removeProgressHandler(self, handler):
        raise ConnectionError("the session is closed")


def test_the_package_logger_is_named_after_the_package_wherever_it_is_loaded():
    assert log.PACKAGE == "pyspark_kernel.runtime"
    package = logging.getLogger(log.PACKAGE)
    assert logging.getLogger(progress.__name__).parent is package


def test_at_debug_a_swallowed_failure_is_written_with_its_traceback(tmp_path, package_logger, caplog):
    caplog.set_level(logging.DEBUG)
    log.setup(str(tmp_path), {log.LEVEL_VARIABLE: "debug"})
    progress.ConnectProgress(SessionGone()).stop()  # as a cell's end does
    text = (tmp_path / "kernel.log").read_text()
    assert "DEBUG pyspark_kernel.runtime.progress: removing a cell's progress handler" in text, text
    assert "ConnectionError: the session is closed" in text and "Traceback" in text
    assert caplog.records == []  # the root logger, which IPython prints into cells, never sees it
    assert stat.S_IMODE(os.stat(tmp_path / "kernel.log").st_mode) == 0o600


def test_at_the_default_level_nothing_is_written(tmp_path, package_logger):
    log.setup(str(tmp_path), {})
    progress.ConnectProgress(SessionGone()).stop()
    assert (tmp_path / "kernel.log").read_text() == ""
    assert stat.S_IMODE(os.stat(tmp_path / "kernel.log").st_mode) == 0o600


def test_an_unknown_level_is_the_default_and_is_said(tmp_path, package_logger):
    log.setup(str(tmp_path), {log.LEVEL_VARIABLE: "chatty"})
    assert package_logger.level == log.DEFAULT_LEVEL
    assert "PYSPARK_KERNEL_LOG_LEVEL is 'chatty', not one of DEBUG, INFO, WARNING, WARN, ERROR: logging at WARNING" in (tmp_path / "kernel.log").read_text()


def test_a_second_setup_replaces_the_first(tmp_path, package_logger):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = log.setup(str(tmp_path / "a"), {})
    second = log.setup(str(tmp_path / "b"), {})
    assert first not in package_logger.handlers and second in package_logger.handlers


def test_without_a_directory_the_kernel_runs_on_without_a_log(tmp_path, package_logger):
    assert log.setup(str(tmp_path / "missing"), {}) is None
