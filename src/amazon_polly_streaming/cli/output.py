"""Where ``polly-stream say`` puts audio: a file that only appears complete, or stdout; and its status line."""

from __future__ import annotations

import contextlib
import os
import sys
import time

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs milliseconds
if TYPE_CHECKING:
    from typing import BinaryIO

__all__ = ["AudioOutput", "OutputError", "Progress"]


class OutputError(Exception):
    """The audio could not be written; the message names the user's path (or stdout)."""

    def __init__(self, message: str, *, stdout: bool = False) -> None:
        super().__init__(message)
        #: True when stdout failed (a closed pipe), so the caller can silence it.
        self.stdout = stdout


class AudioOutput:
    """Audio bytes to ``path`` (None: stdout), committed whole or not at all.

    A file is written under a hidden temporary name in the same folder and
    renamed over ``path`` by :meth:`commit`, so an interrupted or failed
    stream never leaves a partial file. A device or a named pipe
    (``/dev/null``, a FIFO) is written in place, as stdout is. Problems with
    ``path`` raise :class:`OutputError` at construction, before any network I/O.
    """

    def __init__(self, path: str | None, fmt: str, sample_rate: int) -> None:
        self.path = path
        self.fmt = fmt
        self.sample_rate = sample_rate
        self.size = 0
        self.shown = path if path is not None else "stdout"
        self._temp: str | None = None
        self._in_place = False  # a device or a FIFO, written as it is
        self._file: BinaryIO
        if path is None:
            self._file = sys.stdout.buffer
        elif _is_special(path):
            self._file = self._open_in_place(path)
        else:
            self._file = self._open_temp(path)
        if fmt == "wav":
            from .wav import wav_header

            # A pipe cannot be rewound: stream the "unknown length" header.
            self._write(wav_header(sample_rate, None))

    def _open_temp(self, path: str) -> BinaryIO:
        if os.path.isdir(path):
            raise OutputError(f"cannot write {path}: it is a folder")
        folder = os.path.dirname(path) or "."
        if not os.path.isdir(folder):
            raise OutputError(f"cannot write {path}: the folder {folder} does not exist")
        import tempfile

        # A random name created exclusively, never through a link (O_EXCL,
        # O_NOFOLLOW): a predictable name in a shared folder lets anyone who
        # can write there plant a symlink to another file under it, which a
        # plain open would truncate and overwrite (CWE-59, CWE-377).
        try:
            fd, temp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".partial", dir=folder)
        except OSError as exc:
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
        try:
            # mkstemp makes it 0600: the file gets the mode it would have had if written in place.
            os.fchmod(fd, _mode(path))
        except OSError as exc:
            os.close(fd)
            os.unlink(temp)
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
        self._temp = temp
        return os.fdopen(fd, "wb")

    def _open_in_place(self, path: str) -> BinaryIO:
        # Renaming a temporary file over a device or a FIFO would replace the
        # node itself with a regular file (as root, -o /dev/null replaced
        # /dev/null), and as anyone else fail to create one in /dev. Such an
        # output cannot be all or nothing; it is written as stdout is.
        import errno

        try:
            # O_NONBLOCK: a FIFO that nobody reads fails at once (ENXIO) instead
            # of blocking the loop, and its signal handlers, in open().
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY)
        except OSError as exc:
            reason = "nothing reads from it" if exc.errno == errno.ENXIO else exc.strerror or exc
            raise OutputError(f"cannot write {path}: {reason}") from None
        os.set_blocking(fd, True)
        self._in_place = True
        return os.fdopen(fd, "wb")

    def _write(self, data: bytes) -> None:
        try:
            self._file.write(data)
            if self._temp is None:  # stdout, a pipe, a device: the audio goes on at once
                self._file.flush()
        except OSError as exc:
            raise OutputError(f"cannot write {self.shown}: {exc.strerror or exc}", stdout=self.path is None) from None

    def write(self, chunk: bytes) -> None:
        self._write(chunk)
        self.size += len(chunk)

    def commit(self) -> None:
        """Finish: flush stdout, or complete the file and move it into place."""
        if self._temp is None:
            self._write(b"")
            if self._in_place:
                self._close_in_place()
            return
        try:
            if self.fmt == "wav":
                from .wav import wav_header

                self._file.seek(0)
                self._file.write(wav_header(self.sample_rate, self.size))
            self._file.close()
            assert self.path is not None
            os.replace(self._temp, self.path)
        except OSError as exc:
            self.discard()
            raise OutputError(f"cannot write {self.shown}: {exc.strerror or exc}") from None
        self._temp = None

    def _close_in_place(self) -> None:
        self._in_place = False
        try:
            self._file.close()
        except OSError as exc:
            raise OutputError(f"cannot write {self.shown}: {exc.strerror or exc}") from None

    def discard(self) -> None:
        """Remove the temporary file, if any (idempotent)."""
        if self._in_place:
            with contextlib.suppress(OutputError):
                self._close_in_place()
        if self._temp is not None:
            temp, self._temp = self._temp, None
            # Closing flushes what the buffer holds, which fails again when the
            # write failed for a full disk or a file size limit: the file goes all the same.
            with contextlib.suppress(OSError):
                self._file.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)


def _is_special(path: str) -> bool:
    """Whether ``path`` is there and is neither a regular file nor a folder: a device, a FIFO, a socket."""
    import stat

    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def _mode(path: str) -> int:
    """An existing file's permissions (``curl -o``, the shell's ``>`` and ``sed -i`` keep them), else the umask's."""
    import stat

    try:
        existing = os.stat(path)  # through a link, as sed -i does: the mode of the file it points to
    except OSError:
        existing = None
    if existing is not None and stat.S_ISREG(existing.st_mode):
        return stat.S_IMODE(existing.st_mode) & 0o777
    return 0o666 & ~_umask()


def _umask() -> int:
    """The process's umask, read without changing it.

    ``os.umask`` reads it only by setting it, and a moment's other umask
    applies to files that other threads create meanwhile; Linux shows it in
    /proc. Elsewhere the set-and-restore runs before the CLI starts any thread.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class Progress:
    """The status line on stderr (a terminal only) and the closing summary."""

    def __init__(self, enabled: bool, fmt: str, sample_rate: int) -> None:
        from .audio_clock import AudioClock

        self.enabled = enabled
        self.clock = AudioClock(fmt, sample_rate)
        self.started = time.monotonic()
        self.first_audio: float | None = None
        self.size = 0
        self._last_draw = 0.0

    def update(self, chunk: bytes) -> None:
        now = time.monotonic()
        if self.first_audio is None:
            self.first_audio = now - self.started
        self.size += len(chunk)
        self.clock.feed(chunk)
        if self.enabled and now - self._last_draw > 0.1:
            self._last_draw = now
            sys.stderr.write("\r" + self.line() + "\033[K")
            sys.stderr.flush()

    def line(self) -> str:
        first = f"{self.first_audio * 1000:.0f} ms" if self.first_audio is not None else "-"
        return f"{_size(self.size)}, {self.clock.seconds:.1f} s of audio, first audio after {first}"

    def finish(self) -> None:
        if self.enabled:
            sys.stderr.write("\r\033[K")


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KB"
    return f"{n / 1024 / 1024:.2f} MB"
