import gc
import os
from importlib import import_module

from django.conf import settings
from django.core.wsgi import get_wsgi_application

from rlcore.malloc import keep_freed_memory

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "personalize.settings")
keep_freed_memory()  # no page faults per request for the upload's buffers (rlcore/malloc.py)
application = get_wsgi_application()
# Import every view now (and with them torch and the model code), not in the first request, then move all
# objects that exist at this point out of the garbage collector's sight: they live as long as the process,
# and each full collection walked all ~250,000 of them (~0.5 ms of every prediction's CPU on average).
# With gunicorn --preload this also keeps the forked workers from touching, and so copying, those pages.
import_module(settings.ROOT_URLCONF)
gc.freeze()
