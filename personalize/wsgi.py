import os

from django.core.wsgi import get_wsgi_application

from personalize.malloc import keep_freed_memory

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "personalize.settings")
keep_freed_memory()  # no page faults per request for the upload's buffers (personalize/malloc.py)
application = get_wsgi_application()
