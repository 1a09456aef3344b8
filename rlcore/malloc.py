"""Keep freed memory in the process for reuse, instead of handing it back to the kernel and faulting it in again.

Every hot loop here allocates buffers of megabytes and frees them a moment later: the editor's tables and
the CIEDE2000 temporaries of a search's 2,048 edits at once, the batches of RL training, and in a web process
the upload's copies and the decoded image of a full-file prediction. With glibc's defaults such buffers are
mapped fresh from the kernel (mmap above a threshold that adapts only up to a point, and the top of the heap
is trimmed once more than twice that is free), so each one is page-faulted in again, page by page:

* a full-file prediction: ~1,300 minor faults and ~2 ms of CPU, as much as the rest of the request's parsing;
* the instant model on 200 pairs: 1.1-1.3 million faults and 2.6-2.8 s of system time, against 0.25-0.33
  million and 1.0 s with the settings below (``bench/bench_instant.py``; docs/agent.md, stop 43).

With a fixed mmap threshold of 32 MB and a trim threshold of 128 MB, freed buffers stay in the process and the
next allocation reuses them: no page faults in steady state. The price is that a process keeps its peak heap
(up to 128 MB above what is in use) instead of shrinking back.

Called once per process by every entry point that runs this work: ``personalize/wsgi.py`` (web processes),
``workers/tasks.py`` (Celery workers; prefork children inherit it), ``python -m rlcore`` and the benchmarks
that time them (``bench/bench_api.py``'s decode-only ceiling decodes under the same settings as the server).
A no-op where the C library is not glibc (mallopt missing) or PERSONALIZE_MALLOC_TUNING=0.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest allowed value on 64-bit
TRIM_THRESHOLD = 128 * 1024 * 1024


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds for this process; True when they were set."""
    if os.environ.get("PERSONALIZE_MALLOC_TUNING", "1") == "0":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt answers 1 on success; setting the mmap threshold also stops glibc from adapting it.
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
