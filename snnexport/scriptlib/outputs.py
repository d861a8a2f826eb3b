"""How snnexport and every exported script write their output files: checked before any work,
written whole or not at all.

Embedded in every exported script (the rules are in :mod:`snnexport.scriptlib`).
"""

import os


# --- output files ----------------------------------------------------------------------------------
# One policy for every file that snnexport or an exported script writes. Before any work: refuse an
# output that is a directory, lies in a folder that does not exist, or is one of the inputs (the
# same device and inode, so links and other spellings count). When writing: a regular file (or a new
# one) is written to a temporary file beside it and renamed over it, so a failure or Ctrl-C leaves
# the old file or none, never a partial one; it gets the mode open() would give (0o666 less the
# umask), or the replaced file's mode. Devices and pipes (/dev/null, /dev/full, a FIFO,
# /proc/self/fd/1) are written as streams: never replaced by a regular file.

def check_output_path(path, inputs=(), what="output"):
    """Raise ValueError with one line unless ``path`` may be written as an output.

    ``inputs``: paths this run reads (None and paths that do not exist are ignored); ``what`` names
    the output in the message (e.g. "-o", "--out").
    """
    import stat
    text = os.fspath(path)
    if not text:
        raise ValueError(f"{what}: the file name is empty")
    try:
        st = os.stat(text)  # follows symbolic links
    except FileNotFoundError:  # a new file (or a link to one)
        st = None
    except OSError as e:
        raise ValueError(f"{what} {text}: {e.strerror or e}") from None
    if (st is not None and stat.S_ISDIR(st.st_mode)) or text.endswith(os.sep):
        raise ValueError(f"{what} {text} is a directory; give a file name")
    if st is not None and not stat.S_ISREG(st.st_mode):
        return  # a device or a pipe: written as a stream, it cannot destroy an input file
    folder = os.path.dirname(os.path.realpath(text))
    if not os.path.isdir(folder):
        shown = folder if os.path.islink(text) else os.path.dirname(text)
        raise ValueError(f"{what} {text}: the folder {shown} does not exist")
    if not os.access(folder, os.W_OK):
        raise ValueError(f"{what} {text}: cannot write into the folder {folder} (permission denied)")
    if st is None:
        return
    for source in inputs:
        if source is None:
            continue
        try:
            other = os.stat(source)
        except (OSError, ValueError):
            continue
        if (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino):
            raise ValueError(f"{what} {text} is the input file {os.fspath(source)}; "
                             "writing it would destroy that input")


def write_output(path, write):
    """Write one output file by calling ``write(fileobj)`` (binary), by the policy above.

    Raises ValueError (one line) when the file cannot be written; ``write``'s own exceptions (and
    KeyboardInterrupt) propagate after the temporary file is removed.
    """
    write_outputs({path: write})


def write_outputs(files):
    """Write several outputs, all or none: {path: write(fileobj)}; as :func:`write_output`.

    Every regular file is written to its temporary file first; the streams next; the renames last,
    so a failure before the renames leaves every existing file as it was.
    """
    import stat
    import tempfile
    temps, streams, current = [], [], None
    try:
        for path, write in files.items():
            current = os.fspath(path)
            try:
                st = os.stat(current)
            except FileNotFoundError:
                st = None
            if st is not None and stat.S_ISDIR(st.st_mode):
                raise IsADirectoryError(21, "is a directory", current)
            if st is not None and not stat.S_ISREG(st.st_mode):
                streams.append((current, write))
                continue
            real = os.path.realpath(current)  # through a symbolic link: the link stays, its target changes
            mode = stat.S_IMODE(st.st_mode) if st is not None else 0o666 & ~_umask()
            fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(real)}.", suffix=".part",
                                       dir=os.path.dirname(real))
            temps.append((tmp, real))
            with os.fdopen(fd, "wb") as f:
                os.fchmod(f.fileno(), mode)
                write(f)
        for current, write in streams:
            with open(current, "wb") as f:
                write(as_stream(f))
        while temps:
            tmp, current = temps[0]
            os.replace(tmp, current)
            temps.pop(0)
    except OSError as e:
        raise ValueError(f"cannot write {current}: {e.strerror or e}") from None
    finally:
        for tmp, _ in temps:
            try:
                os.unlink(tmp)
            except OSError:
                pass


class _Stream:
    """A device or pipe opened for writing, with no position: /dev/null's tell() says 0 whatever was
    written, which would make zipfile (np.savez) write wrong offsets; without tell() it writes sequentially."""

    def __init__(self, f):
        self._f = f

    def write(self, data):
        return self._f.write(data)

    def flush(self):
        self._f.flush()

    def seekable(self):
        return False

    def read(self, size=-1):  # np.savez takes only objects with read() for files
        raise OSError("a stream opened for writing cannot be read")

    def tell(self):
        raise OSError("a stream has no position")


def as_stream(f):
    """``f`` (a binary file object on a device or pipe, e.g. standard output) as a sequential stream."""
    return _Stream(f)


def _umask():
    """The process's umask, read without changing it where the system allows (threads may be creating files)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
