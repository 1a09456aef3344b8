"""Refuse oversized request bodies from their Content-Length, before Django reads a byte of them."""

from django.conf import settings
from django.http import JsonResponse


class RequestSizeLimitMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        limit = self.limit_for(request.path)
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > limit:
            return JsonResponse(
                {
                    "detail": f"the request body is {length} bytes; the limit for {request.path} is {limit} bytes"
                },
                status=413,
            )
        return self.get_response(request)

    @staticmethod
    def limit_for(path: str) -> int:
        if path.rstrip("/").endswith("/pairs/bulk"):
            return settings.MAX_BULK_UPLOAD_BYTES
        # before + after + mask, plus room for the multipart framing
        return 3 * settings.MAX_UPLOAD_BYTES + 64 * 1024
