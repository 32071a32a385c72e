"""Opening and creating files safely, also as root: every file fleet writes or reads for the
operator (pid files, log files, multi.toml, the SQLite broker, the dashboard's history) goes
through here.

The rules, and why:
* Nothing is opened through a symbolic link (O_NOFOLLOW): a user who can write a directory
  cannot point one of our names at /etc/shadow and have root truncate, chown or print it.
  Special files are refused too (a FIFO planted as a log file would hang whoever reads it).
* Temporary files get an unpredictable name and are created with O_EXCL, never reused.
* As root, fleet refuses to write into a directory that another user can write (owned by
  someone else, or writable by a group other than root's, or by everyone). That user could
  replace any name in it between our check and our use; no flag closes that race, refusing
  does. The rule is logrotate's for its log directories. Ancestors are checked more loosely:
  owned by root (or us), and not writable by everyone unless sticky (/tmp).
* Ownership is handed over with fchown on an open descriptor, never chown by path.

Every refusal is a `FleetError` naming the path and the fix: 77 (EX_NOPERM) for a directory
we may not write into, 73 (EX_CANTCREAT) for a name that is a link or not a regular file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

from fleet.operator_errors import EXIT_CANT_CREATE, FleetError, PermissionProblem

#: Flags for every open: never through a symbolic link, never inherited by a program we run,
#: never blocking on a FIFO (cleared again once the file is known to be a regular one).
SAFE_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


def _name_of_user(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _name_of_group(gid: int) -> str:
    import grp

    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def others_who_can_write(info: os.stat_result, me: int = 0) -> str | None:
    """Who besides root (and `me`) can write a directory with this stat: "user alice",
    "group staff", "every user"; None when nobody else can."""
    if info.st_uid not in (0, me):
        return f"user {_name_of_user(info.st_uid)}"
    if info.st_mode & stat.S_IWOTH:
        return "every user"
    if info.st_mode & stat.S_IWGRP and info.st_gid != 0:
        return f"group {_name_of_group(info.st_gid)}"
    return None


def _unsafe_ancestor(directory: Path) -> tuple[Path, str] | None:
    """An ancestor of `directory` (resolved) that another user could rename things in."""
    for ancestor in directory.parents:
        try:
            info = os.stat(ancestor)
        except OSError:
            continue
        if info.st_uid not in (0, os.geteuid()):
            return ancestor, f"user {_name_of_user(info.st_uid)}"
        if info.st_mode & stat.S_IWOTH and not info.st_mode & stat.S_ISVTX:
            return ancestor, "every user"
    return None


def check_directory(directory: Path | str, what: str) -> None:
    """As root: refuse (exit 77) to write `what` into `directory` when another user can write
    it or rename it away. Anyone else writes only where they may, so nothing is checked."""
    if os.geteuid() != 0:
        return
    path = Path(os.path.realpath(directory))
    try:
        info = os.stat(path)
    except OSError:
        return  # missing: whoever creates it checks its parent
    who = others_who_can_write(info)
    where = path
    if who is None:
        found = _unsafe_ancestor(path)
        if found is None:
            return
        where, who = found
    owner = _name_of_user(info.st_uid) if info.st_uid else None
    run_as = f"run this as {owner} (`sudo -u {owner} ...`) or " if owner else ""
    raise PermissionProblem(
        f"refusing to write {what} as root: {where} can be written by {who}, who could "
        "replace it with a link to any file",
        f"{run_as}make {where} root's alone (`chown root: {where}; chmod go-w {where}`), "
        "or choose a path in a root-owned directory",
    )


def _refuse_link(path: Path, what: str, exc: OSError) -> FleetError:
    if exc.errno == errno.ELOOP:
        return FleetError(f"{what} {path} is a symbolic link; fleet never opens files "
                          "through one", f"remove the link (`rm {path}`) or give the real path",
                          exit_code=EXIT_CANT_CREATE)
    return FleetError(f"{what} {path} is not a regular file", "remove it or choose another "
                      "path", exit_code=EXIT_CANT_CREATE)


def open_regular(path: Path | str, flags: int, mode: int = 0o600, what: str = "file") -> int:
    """`os.open` without following a symbolic link, refusing anything but a regular file;
    returns a blocking descriptor. Writing (`O_WRONLY`/`O_RDWR`/`O_CREAT`) checks the
    directory first (`check_directory`). OSErrors other than those refusals pass through."""
    target = Path(path)
    if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
        check_directory(target.parent, f"{what} {target}")
    try:
        fd = os.open(target, flags | SAFE_FLAGS, mode)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO):  # a link; a FIFO nobody reads
            raise _refuse_link(target, what, exc) from None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _refuse_link(target, what, OSError(errno.EINVAL, "not regular"))
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def existing_regular(path: Path | str, what: str = "file") -> bool:
    """True if `path` is a regular file, False if nothing is there; a link or anything else
    is refused like `open_regular` refuses it. Opens nothing: for files another library
    opens itself (closing any descriptor of a SQLite database would drop its POSIX locks)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(info.st_mode):
        raise _refuse_link(Path(path), what, OSError(errno.ELOOP, "link"))
    if not stat.S_ISREG(info.st_mode):
        raise _refuse_link(Path(path), what, OSError(errno.EINVAL, "not regular"))
    return True


def read_bytes(path: Path | str, limit: int = 1 << 20, what: str = "file") -> bytes:
    """The first `limit` bytes of a regular file, never through a link (OSError if missing)."""
    fd = open_regular(path, os.O_RDONLY, what=what)
    try:
        chunks, size = [], 0
        while size < limit and (chunk := os.read(fd, min(65536, limit - size))):
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def temporary_name(path: Path) -> Path:
    """A hidden, unpredictable sibling of `path` for writing it atomically."""
    return path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")


@contextlib.contextmanager
def new_temporary(path: Path, mode: int, what: str = "file") -> Iterator[tuple[int, Path]]:
    """Create `path`'s temporary sibling (O_EXCL: never an existing file or link) and yield
    (descriptor, name); the name is removed afterwards unless it was renamed away."""
    temporary = temporary_name(path)
    fd = open_regular(temporary, os.O_RDWR | os.O_CREAT | os.O_EXCL, mode, what)
    try:
        yield fd, temporary
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def write_atomically(path: Path | str, data: bytes, mode: int = 0o600,
                     what: str = "file") -> None:
    """Replace `path` with `data`: a new temporary file (`mode`, O_EXCL), written, synced and
    renamed over it, so readers see the old or the new file, never half of one."""
    target = Path(path)
    with new_temporary(target, mode, what) as (fd, temporary):
        os.fchmod(fd, mode)  # the umask may have taken bits off; never add any to `mode`
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
        os.replace(temporary, target)


def make_directory(path: Path | str, mode: int = 0o755, what: str = "",
                   owner: tuple[int | None, int | None] = (None, None)) -> list[Path]:
    """Create `path` and its missing parents (`mode`); return the ones created.

    As root, each is created only in a parent no other user can write; `path` itself, if it
    was created, is then given to `owner` (uid, gid) with fchown on a descriptor opened
    without following links (its parents stay root's, so nobody can swap it meanwhile)."""
    directory = Path(path)
    missing = []
    for candidate in (directory, *directory.parents):
        if candidate.is_dir():
            break
        missing.append(candidate)
    created = []
    for candidate in reversed(missing):
        check_directory(candidate.parent, f"the directory {candidate}" +
                        (f" for {what}" if what else ""))
        try:
            os.mkdir(candidate, mode)
        except FileExistsError:
            continue  # made meanwhile by someone else: checked like any existing one
        created.append(candidate)
    if owner != (None, None) and directory in created:
        hand_over(directory, owner)
    return created


def hand_over(directory: Path, owner: tuple[int | None, int | None]) -> None:
    """Give a directory we just created to `owner` (uid, gid), by descriptor."""
    uid, gid = owner
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.fchown(fd, -1 if uid is None else uid, -1 if gid is None else gid)
    finally:
        os.close(fd)
