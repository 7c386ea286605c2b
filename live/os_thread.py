"""Name the current thread for the operating system too (Linux: what ``top -H``, ``ps -L`` and
/proc/<pid>/task/<tid>/comm show), so an operator, or bench enforce, can see what the
guarantee's threads cost apart from the rest of the server."""

import ctypes
import ctypes.util
import sys

_PR_SET_NAME = 15


def set_os_thread_name(name: str) -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(_PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0)
    except (OSError, AttributeError):
        pass  # a name is a convenience, never a reason to fail
