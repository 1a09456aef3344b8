"""Keep freed memory for reuse in the web processes, instead of handing it back to the kernel per request.

A full-file prediction allocates a few buffers of the upload's size (2.2 MB for a 12-megapixel JPEG: the
multipart parser's copy, the bytes read from it) and of the decoded image, and frees them at the end of the
request. With glibc's defaults such buffers are mapped fresh from the kernel (mmap above a threshold that
adapts only up to a point, and the top of the heap is trimmed once more than twice that is free), so every
request page-faults them in again: ~1,300 minor faults and ~2 ms of CPU per prediction, as much as the
rest of the request's parsing. With a fixed mmap threshold of 32 MB and a trim threshold of 128 MB, freed
buffers stay in the process and the next request reuses them: no page faults in steady state. The price is
that a web process keeps its peak heap (up to 128 MB above what is in use) instead of shrinking back.

Called by personalize/wsgi.py (every web process) and by bench/bench_api.py's decode-only ceiling, so that
the ceiling decodes under the same allocator settings as the server. A no-op where the C library is not
glibc (mallopt missing) or PERSONALIZE_MALLOC_TUNING=0.
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
