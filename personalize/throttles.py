from rest_framework.throttling import ScopedRateThrottle


class ScopedThrottle(ScopedRateThrottle):
    """ScopedRateThrottle that reads its rates from settings on every request, not once at import, so that
    an override (tests, a settings reload) takes effect."""

    def get_rate(self):
        from django.conf import settings

        rates = settings.REST_FRAMEWORK.get("DEFAULT_THROTTLE_RATES", {})
        return rates.get(self.scope)


class PhotoThrottle(ScopedThrottle):
    """The scope's budget counted per photo: a request for N photos (the view's `photos_in(request)`) uses
    N of it, all or none, so a batch endpoint is not a way around the per-photo rate.

    The same counter as ScopedThrottle's for the same scope and editor: single and batch predictions
    share one budget.
    """

    def allow_request(self, request, view):
        self.scope = getattr(view, self.scope_attr, None)
        self.rate = self.get_rate() if self.scope else None
        if self.rate is None:
            return True
        self.num_requests, self.duration = self.parse_rate(self.rate)
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        self.photos = max(1, view.photos_in(request))
        self.history = self.cache.get(self.key, [])
        self.now = self.timer()
        while self.history and self.history[-1] <= self.now - self.duration:
            self.history.pop()
        if len(self.history) + self.photos > self.num_requests:
            return self.throttle_failure()
        self.history[:0] = [self.now] * self.photos
        self.cache.set(self.key, self.history, self.duration)
        return True

    def wait(self):
        """Seconds until enough of the oldest counted photos expire for this request's photos to fit."""
        if self.photos > self.num_requests:
            return self.duration  # never fits: the client must send fewer photos per request
        must_expire = len(self.history) + self.photos - self.num_requests
        return max(0.0, self.history[-must_expire] + self.duration - self.now)
