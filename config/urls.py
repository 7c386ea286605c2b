from django.contrib import admin
from django.urls import include, path

from foundation.env import env_bool
from native_api import metrics_view

urlpatterns = [
    path("api/native/", include("native_api.urls")),  # first: the hot paths resolve in one step
    path("admin/", admin.site.urls),
    path("metrics", metrics_view.metrics, name="metrics"),
]

if env_bool("NATIVE_BENCH_BASELINES", False):  # benchmark baselines (bench/); never in production
    from bench import baselines

    urlpatterns += baselines.urlpatterns()
